package main

import (
	"context"
	"os"

	"github.com/keygate/keygate/internal/cli"
)

// The admin CLI: keygate account|user|key <action> against the admin API
// (--admin-url or KEYGATE_ADMIN_URL; credentials from the environment or a
// prompt, never a flag).
func init() {
	for _, c := range cli.Commands {
		name := c.Name
		register(&command{name: name, summary: c.Summary, run: func(_ context.Context, e *env, args []string) int {
			return cli.Main(append([]string{name}, args...), os.Stdin, e.stdout, e.stderr, e.environ)
		}})
	}
}
