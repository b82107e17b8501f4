//go:build race

package authn_test

// raceEnabled: under the race detector sync.Pool drops a quarter of its
// Puts, so per-state counters (hit sampling) rarely reach their period.
const raceEnabled = true
