package boltstore

import "github.com/keygate/keygate/store"

// Publish delivers inv to the watchers as a write would, without the write.
func (s *Store) Publish(inv store.Invalidation) { s.publish(inv) }
