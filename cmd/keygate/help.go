package main

import (
	"context"
	"fmt"
)

func init() {
	register(&command{name: "help", summary: "show help for keygate or a subcommand", run: runHelp})
}

func runHelp(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		usage(e.stdout)
		return exitOK
	}
	c := lookup(args[0])
	if c == nil || c.name == "help" {
		fmt.Fprintf(e.stderr, "keygate: unknown subcommand %q\n\n", printable(args[0]))
		usage(e.stderr)
		return exitUsage
	}
	// Every subcommand prints its flags on -h (to stderr, as flag does).
	return c.run(ctx, e, []string{"-h"})
}
