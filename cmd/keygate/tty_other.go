//go:build !linux

package main

import "io"

// isTerminal is false off Linux: the generated admin password goes to a
// file there, never to a stream that might be a log.
func isTerminal(io.Writer) bool { return false }
