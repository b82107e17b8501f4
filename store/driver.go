package store

import (
	"fmt"
	"strings"
)

// Driver is a complete keygate store: the system of record with every
// capability serve wires, so that none is turned off by a missing method.
// Both drivers (boltstore, redisstore) implement it, guarded at compile time
// and exercised by storetest; serve requires it at start-up (AsDriver).
//
//   - Store: accounts, users, keys, and the invalidation Watch (with
//     Redis, replayed from the invalidation log after a lost subscription);
//   - RefreshStore and RefreshPurger: the token endpoint's refresh tokens,
//     and their purge (a no-op where records expire by themselves);
//   - Outbox: the external authorizer's lifecycle notifications;
//   - Readiness: the checks of GET /readyz;
//   - Leaser: one instance of those sharing the store purges keys per
//     interval (always granted where one process owns the store);
//   - UpstreamCredentials: the credentials keygate sends upstream (§12);
//   - EndedSessions: web UI sessions ended by a logout (§14).
type Driver interface {
	Store
	RefreshStore
	RefreshPurger
	Outbox
	Readiness
	Leaser
	UpstreamCredentials
	EndedSessions
}

// AsDriver returns s as a Driver, or an error naming every capability s
// lacks.
func AsDriver(s Store) (Driver, error) {
	if d, ok := s.(Driver); ok {
		return d, nil
	}
	var missing []string
	for _, c := range []struct {
		name string
		has  bool
	}{
		{"refresh tokens (store.RefreshStore)", is[RefreshStore](s)},
		{"refresh token purge (store.RefreshPurger)", is[RefreshPurger](s)},
		{"notification outbox (store.Outbox)", is[Outbox](s)},
		{"readiness checks (store.Readiness)", is[Readiness](s)},
		{"purge lease (store.Leaser)", is[Leaser](s)},
		{"upstream credentials (store.UpstreamCredentials)", is[UpstreamCredentials](s)},
		{"ended web UI sessions (store.EndedSessions)", is[EndedSessions](s)},
	} {
		if !c.has {
			missing = append(missing, c.name)
		}
	}
	return nil, fmt.Errorf("%T lacks %s", s, strings.Join(missing, ", "))
}

func is[T any](s Store) bool {
	_, ok := s.(T)
	return ok
}
