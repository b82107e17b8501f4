// Command keygate is the reverse-proxy authentication gateway: `keygate serve`
// runs it, `keygate echo` runs the demo and test upstream, and the other
// subcommands manage it. Each subcommand lives in its own file and registers
// itself in init.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure: port busy, store unreachable, shutdown timed out
	exitUsage   = 2 // bad command line or invalid configuration
)

// env is what a subcommand may touch of the outside world, so that tests can
// run subcommands in-process.
type env struct {
	stdout, stderr io.Writer
	environ        []string
	// scrub removes the secret variables from the process environment
	// once serve has read them (scrubProcessEnv); nil in-process (tests).
	scrub func() (names []string, blockCleared bool)
}

// getenv returns the last value of name in e.environ (like os.Getenv).
func (e *env) getenv(name string) string {
	v := ""
	for _, kv := range e.environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			v = val
		}
	}
	return v
}

// command is one subcommand. run returns the process exit code; ctx is
// cancelled on SIGTERM/SIGINT.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) int
}

var commands []*command

// register adds a subcommand; called from the init of each subcommand's file.
func register(c *command) {
	if lookup(c.name) != nil {
		panic("keygate: duplicate subcommand " + c.name)
	}
	commands = append(commands, c)
	slices.SortFunc(commands, func(a, b *command) int { return strings.Compare(a.name, b.name) })
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	go func() {
		// After the first signal, restore the default handling: a second
		// SIGINT/SIGTERM ends the process at once.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr, environ: os.Environ(), scrub: scrubProcessEnv}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run dispatches args[0] to its subcommand.
func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		name = "help"
	case "-v", "-version", "--version":
		name = "version"
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(e.stderr, "keygate: unknown subcommand %q\n\n", printable(args[0]))
		usage(e.stderr)
		return exitUsage
	}
	return c.run(ctx, e, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprint(w, "Usage: keygate <subcommand> [flags]\n\nSubcommands:\n")
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'keygate help <subcommand>' or 'keygate <subcommand> -h' for its flags.\n")
}

// printable shortens s and replaces control characters, for echoing user
// input back in messages.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
