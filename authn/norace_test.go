//go:build !race

package authn_test

const raceEnabled = false
