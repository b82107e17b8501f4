package main

import (
	"context"

	"github.com/keygate/keygate/authz/plugin"
)

func init() {
	register(&command{
		name:    "authz-plugin-example",
		summary: "run the reference external authorization plugin (--listen ADDR --rules FILE)",
		run:     runAuthzPlugin,
	})
}

// runAuthzPlugin serves the reference plugin until SIGTERM/SIGINT; SIGHUP
// reloads its rules. Its secret comes from --secret-file or
// KEYGATE_AUTHORIZATION_EXTERNAL_SECRET, never from a flag value.
func runAuthzPlugin(_ context.Context, e *env, args []string) int {
	return plugin.Main(args, e.stdout, e.stderr)
}
