//go:build !race

package upstreamcred

const raceEnabled = false
