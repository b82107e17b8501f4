//go:build !linux

package tokencli

import "os"

// isTerminal is not implemented here: the password is read like a pipe
// (with echo), without a prompt.
func isTerminal(*os.File) bool { return false }

func readNoEcho(f *os.File) (string, error) { return readLine(f) }
