package main

import (
	"context"
	"os"

	"github.com/keygate/keygate/internal/tokencli"
)

func init() {
	register(&command{
		name:    "token",
		summary: "obtain an access token from the token endpoint (OAuth2 password grant)",
		run:     runToken,
	})
}

// runToken prints a token for --user; the password comes from
// KEYGATE_PASSWORD or a prompt, never from a flag.
func runToken(_ context.Context, e *env, args []string) int {
	return tokencli.Main(args, os.Stdin, e.stdout, e.stderr, e.environ)
}
