// Package cli is keygate's admin command line: `keygate account|user|key
// <verb>` against the admin API (DESIGN.md §6) of a running keygate.
//
// The admin URL comes from --admin-url, else KEYGATE_ADMIN_URL, else
// DefaultAdminURL. Credentials come from the environment (KEYGATE_USERNAME
// and KEYGATE_PASSWORD, or KEYGATE_API_KEY) or from a prompt on the
// terminal; never from a flag, where they would leak into shell history and
// process listings. New passwords (user create, user update --password,
// user password) are prompted for too, or read one line each from stdin
// when it is not a terminal.
//
// Exit codes: ExitOK, ExitAPI (the server refused or failed; its message is
// printed), ExitUsage (bad command line), ExitAuth (authentication failed).
package cli

import (
	"bufio"
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitAPI   = 1
	ExitUsage = 2
	ExitAuth  = 3
)

// DefaultAdminURL is the admin listener's default address.
const DefaultAdminURL = "http://127.0.0.1:8081"

// Environment variables the CLI reads.
const (
	EnvAdminURL = "KEYGATE_ADMIN_URL"
	EnvUsername = "KEYGATE_USERNAME"
	EnvPassword = "KEYGATE_PASSWORD"
	EnvAPIKey   = "KEYGATE_API_KEY" //nolint:gosec // a name, not a credential
)

// Command is one noun of the CLI, for the dispatcher's help.
type Command struct {
	Name, Summary string
}

// Commands are the nouns Main handles: main dispatches `keygate <name> …`
// to Main with args starting at the name.
var Commands = []Command{
	{"account", "manage accounts (list, get, create, update, delete)"},
	{"user", "manage users (list, get, create, update, delete, password)"},
	{"key", "manage API keys (list, get, create, revoke)"},
}

// verb is one subcommand of a noun.
type verb struct {
	name    string
	args    string // positional arguments, for usage
	summary string
	flags   func(fs *flag.FlagSet, o *opts)
	// nargs is the number of positional arguments: exactly, or at least
	// when minOnly.
	nargs   int
	minOnly bool
	run     func(s *session, args []string) error
}

// opts are the flags of every verb.
type opts struct {
	adminURL string
	output   string
	timeout  time.Duration

	account, user, name, description string
	state, typ, status, cursor       string
	expiresIn, expiresAt             string
	username                         string
	roles                            stringList
	rolesSet                         bool
	limit                            int
	password, bulk                   bool
	rateLimit, quota                 optString

	// Issue 18 (keys2.go): key metadata, allow-list, rotation grace,
	// expiring_within.
	keys2 keys2Opts
	uc    ucOpts // upstream-credential verbs
}

// stringList is a repeatable, comma-separable flag.
type stringList struct {
	vals []string
	set  *bool
}

func (s *stringList) String() string { return strings.Join(s.vals, ",") }

func (s *stringList) Set(v string) error {
	*s.set = true
	for r := range strings.SplitSeq(v, ",") {
		if r = strings.TrimSpace(r); r != "" {
			s.vals = append(s.vals, r)
		}
	}
	return nil
}

// usageError is a bad command line (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// Main runs `keygate <noun> <verb> [flags] [args]`; args starts with the
// noun (account, user or key). It returns the process exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) int {
	if len(args) == 0 {
		printNouns(stderr)
		return ExitUsage
	}
	noun := args[0]
	verbs, ok := nouns[noun]
	if !ok {
		fmt.Fprintf(stderr, "keygate: unknown command %q\n", noun)
		printNouns(stderr)
		return ExitUsage
	}
	if len(args) < 2 || args[1] == "-h" || args[1] == "--help" || args[1] == "help" {
		printVerbs(stderr, noun, verbs)
		if len(args) < 2 {
			return ExitUsage
		}
		return ExitOK
	}
	i := slices.IndexFunc(verbs, func(v verb) bool { return v.name == args[1] })
	if i < 0 {
		fmt.Fprintf(stderr, "keygate %s: unknown subcommand %q\n", noun, args[1])
		printVerbs(stderr, noun, verbs)
		return ExitUsage
	}
	v := verbs[i]
	fs := flag.NewFlagSet("keygate "+noun+" "+v.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o opts
	o.roles.set = &o.rolesSet
	o.keys2.cidrs.set = &o.keys2.cidrsSet
	fs.StringVar(&o.adminURL, "admin-url", "", "admin API base URL (env "+EnvAdminURL+", default "+DefaultAdminURL+")")
	fs.StringVar(&o.output, "o", "table", "output format: table or json")
	fs.StringVar(&o.output, "output", "table", "output format: table or json")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "timeout of each request")
	if v.flags != nil {
		v.flags(fs, &o)
	}
	usage := func() {
		fmt.Fprintf(stderr, "usage: keygate %s %s [flags] %s\n\n%s\n\nflags:\n", noun, v.name, v.args, v.summary)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	pos, err := parseInterspersed(fs, args[2:])
	if errors.Is(err, flag.ErrHelp) {
		usage()
		return ExitOK
	}
	if err == nil {
		switch {
		case o.output != "table" && o.output != "json":
			err = usagef("-o must be table or json")
		case len(pos) < v.nargs || (!v.minOnly && len(pos) > v.nargs):
			err = usagef("expected %s", cmp.Or(v.args, "no arguments"))
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "keygate %s %s: %v\n", noun, v.name, err)
		usage()
		return ExitUsage
	}
	s := &session{
		o: &o, stdout: stdout, stderr: stderr, environ: environ,
		in: bufio.NewReader(stdin), inFile: fileOf(stdin),
		base: strings.TrimRight(cmp.Or(o.adminURL, getenv(environ, EnvAdminURL), DefaultAdminURL), "/"),
	}
	s.http = &http.Client{Timeout: o.timeout}
	if err := s.checkBase(); err != nil {
		fmt.Fprintf(stderr, "keygate: %v\n", err)
		return ExitUsage
	}
	return s.exit(v.run(s, pos))
}

// parseInterspersed parses flags anywhere among the positional arguments
// ("user create carl --account acme"); "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		for _, a := range args {
			if a == "--secret" || a == "-secret" || strings.HasPrefix(a, "--secret=") || strings.HasPrefix(a, "-secret=") {
				return nil, usagef("secrets are never taken from flags (they leak into shell history and process lists): set %s, use --secret-file, or answer the prompt",
					EnvUpstreamSecret)
			}
			if a == "--password" || strings.HasPrefix(a, "--password=") || strings.HasPrefix(a, "-password=") ||
				a == "--api-key" || strings.HasPrefix(a, "--api-key=") {
				if !strings.Contains(a, "=") && a == "--password" && fs.Lookup("password") != nil {
					continue // the boolean "prompt for a new password" flag
				}
				return nil, usagef("secrets are never taken from flags (they leak into shell history and process lists): set %s/%s or %s, or answer the prompt",
					EnvUsername, EnvPassword, EnvAPIKey)
			}
		}
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func printNouns(w io.Writer) {
	fmt.Fprintln(w, "usage: keygate <account|user|key> <subcommand> [flags] [arguments]")
	for _, c := range Commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.Name, c.Summary)
	}
}

func printVerbs(w io.Writer, noun string, verbs []verb) {
	fmt.Fprintf(w, "usage: keygate %s <subcommand> [flags] [arguments]\n\nsubcommands:\n", noun)
	for _, v := range verbs {
		fmt.Fprintf(w, "  %-9s %-22s %s\n", v.name, v.args, v.summary)
	}
	fmt.Fprintf(w, "\nRun 'keygate %s <subcommand> -h' for its flags. Credentials: %s and %s, or %s, or a prompt.\n",
		noun, EnvUsername, EnvPassword, EnvAPIKey)
}

// getenv returns the last value of name in environ.
func getenv(environ []string, name string) string {
	v := ""
	for _, kv := range environ {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			v = val
		}
	}
	return v
}

// fileOf returns r as an *os.File when it is one (for terminal handling).
func fileOf(r io.Reader) *os.File {
	f, _ := r.(*os.File)
	return f
}
