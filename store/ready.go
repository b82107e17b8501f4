package store

import "context"

// Readiness is part of every Driver: Ready runs every check the store has
// (at least store_read; bounded by ctx) and returns one result per check, in
// a fixed order. GET /readyz reports them by name.
type Readiness interface {
	Ready(ctx context.Context) []Check
}

// Check is the result of one readiness check.
type Check struct {
	// Name is short snake_case, e.g. "store_read", "store_write",
	// "cluster_slots"; it appears in the /readyz JSON.
	Name string
	// Err is nil when the check passed. It is for logs only: it may name
	// an address or a path, so it never goes into a response.
	Err error
}
