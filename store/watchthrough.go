package store

import "context"

// Subscriber is one consumer of the store's invalidations besides the
// identity cache (which applies them last, in cache.Listen).
type Subscriber struct {
	// Name says what the subscriber holds, for tests and messages.
	Name string
	// Apply receives every invalidation Watch delivers.
	Apply func(Invalidation)
	// Reset, when set, runs when a subscription starts and again when it
	// ends: invalidations may have been missed around either, so the
	// subscriber drops what it cannot trust. Nil: the subscriber bounds a
	// missed invalidation otherwise (a TTL).
	Reset func()
	// Credentials marks the consumer of upstream-credential invalidations
	// (Invalidation.CredentialOnly); the others never receive those.
	Credentials bool
}

// WatchThrough returns s whose Watch hands every invalidation to subs, in
// their order, and only then to the caller's fn. Everything else is s's.
func WatchThrough(s Store, subs ...Subscriber) Store {
	if len(subs) == 0 {
		return s
	}
	return watchThrough{Store: s, subs: subs}
}

type watchThrough struct {
	Store
	subs []Subscriber
}

func (w watchThrough) Watch(ctx context.Context, fn func(Invalidation)) error {
	w.reset()
	err := w.Store.Watch(ctx, func(inv Invalidation) {
		credOnly := inv.CredentialOnly()
		for _, s := range w.subs {
			if !credOnly || s.Credentials {
				s.Apply(inv)
			}
		}
		if !credOnly {
			fn(inv)
		}
	})
	w.reset()
	return err
}

func (w watchThrough) reset() {
	for _, s := range w.subs {
		if s.Reset != nil {
			s.Reset()
		}
	}
}
