//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package cli

import (
	"errors"
	"os"
)

// isTerminal reports false: without termios the CLI reads lines.
func isTerminal(*os.File) bool { return false }

func noEcho(*os.File) (func(), error) { return nil, errors.New("cannot turn off echo on this system") }
