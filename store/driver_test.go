package store_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// bare is a store with no capability beyond store.Store.
type bare struct{ store.Store }

// withRefresh adds refresh tokens and their purge to a bare store.
type withRefresh struct {
	store.Store
	store.RefreshStore
}

func (withRefresh) PurgeRefreshTokens(context.Context, time.Time) (int, error) { return 0, nil }

// TestAsDriver: a complete store passes as it is; an incomplete one is an
// error that names every capability it lacks, and only those.
func TestAsDriver(t *testing.T) {
	s, _ := newBolt(t)
	all := []string{"store.RefreshStore", "store.RefreshPurger", "store.Outbox", "store.Readiness", "store.Leaser", "store.UpstreamCredentials", "store.EndedSessions"}
	tests := []struct {
		name    string
		s       store.Store
		missing []string
	}{
		{"bolt", s, nil},
		{"bare", bare{s}, all},
		{"refresh only", withRefresh{Store: s, RefreshStore: s}, all[2:]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := store.AsDriver(tc.s)
			if len(tc.missing) == 0 {
				if err != nil || d != tc.s {
					t.Fatalf("AsDriver = %v, %v; want the store itself", d, err)
				}
				return
			}
			if err == nil || d != nil {
				t.Fatalf("AsDriver = %v, %v; want an error", d, err)
			}
			for _, c := range all {
				if want := slices.Contains(tc.missing, c); strings.Contains(err.Error(), c) != want {
					t.Errorf("error %q names %s: %v, want %v", err, c, !want, want)
				}
			}
		})
	}
}
