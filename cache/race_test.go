//go:build race

package cache

// raceEnabled: the race detector slows ristretto's admission policy ~10×;
// flood tests scale down (still many times the bound).
const raceEnabled = true
