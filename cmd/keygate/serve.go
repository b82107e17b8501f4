// The serve command: flags, environment and configuration loading, the
// logger; runServe hands a gateway to run (lifecycle.go), which builds its
// components with build.go.

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/configs"
)

// Environment variables read by serve besides the KEYGATE_<PATH> config keys.
const (
	envConfig        = "KEYGATE_CONFIG"
	envAdminPassword = "KEYGATE_ADMIN_PASSWORD" //nolint:gosec // a name, not a credential
)

func init() {
	register(&command{name: "serve", summary: "run the gateway (public and admin listeners)", run: runServe})
}

func runServe(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "serve", "[--config FILE] [--demo]")
	configPath := fs.String("config", "", "YAML configuration file (default: $"+envConfig+", else built-in defaults)")
	demo := fs.Bool("demo", false, "start an in-process echo upstream; route /public to it openly and / behind authentication")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	path := *configPath
	if path == "" {
		path = e.getenv(envConfig)
	}

	// The demo upstream listens first: its address goes into the route
	// that the configuration is validated with.
	var demoLn net.Listener
	if *demo {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintf(e.stderr, "keygate: cannot start the demo upstream: %v\n", err)
			return exitFailure
		}
		demoLn = ln
		defer func() { _ = demoLn.Close() }() // no-op once the echo server owns and closes it
	}
	// Secrets are read once, from copies, then scrubbed from the process
	// environment: a child process, a later os.Getenv or a reader of
	// /proc/<pid>/environ finds none of them.
	rest, secrets := withoutSecrets(e.environ)
	adminPassword := (&env{environ: secrets}).getenv(envAdminPassword)
	cfg, err := loadConfig(path, append(slices.Clip(rest), secrets...), demoLn)
	e.environ = rest
	var scrubbed []string
	blockCleared := true
	if e.scrub != nil {
		scrubbed, blockCleared = e.scrub()
	}
	if err != nil {
		printConfigError(e.stderr, err)
		return exitUsage
	}
	log, err := newLogger(cfg.Log.Level, e.stderr)
	if err != nil {
		printConfigError(e.stderr, err)
		return exitUsage
	}
	defer func() { _ = log.Sync() }()
	if len(scrubbed) > 0 {
		log.Info("secret variables read and removed from the environment",
			zap.Strings("names", scrubbed), zap.Bool("proc_environ_cleared", blockCleared))
	}

	g := &gateway{cfg: cfg, log: log, e: e, demoLn: demoLn, adminPassword: adminPassword}
	return g.run(ctx)
}

// loadConfig loads path (no file when empty) with the environment on top.
// With a demo listener, the routes are replaced by the demo route to it (as
// a last KEYGATE_ROUTES, so the result is validated like any other).
func loadConfig(path string, environ []string, demoLn net.Listener) (*configs.Config, error) {
	environ = withoutServeEnv(environ, demoLn != nil)
	if demoLn != nil {
		routes, err := json.Marshal(demoRoutes(demoLn.Addr().String()))
		if err != nil {
			return nil, err
		}
		environ = append(environ, "KEYGATE_ROUTES="+string(routes))
	}
	return configs.Load(path, environ)
}

// demoRoute is the --demo route, in the shape of a YAML route.
type demoRoute struct {
	Name       string   `json:"name"`
	PathPrefix string   `json:"path_prefix"`
	Upstreams  []string `json:"upstreams"`
	Auth       string   `json:"auth"`
	Timeout    string   `json:"timeout"`
}

// demoRoutes are the --demo routes to the echo upstream: /public is open,
// everything else needs a credential (the bootstrap admin's, at first).
func demoRoutes(echoAddr string) []demoRoute {
	up := []string{"http://" + echoAddr}
	return []demoRoute{
		{Name: "demo-public", PathPrefix: "/public", Upstreams: up, Auth: configs.AuthNone, Timeout: "30s"},
		{Name: "demo", PathPrefix: "/", Upstreams: up, Auth: configs.AuthRequired, Timeout: "30s"},
	}
}

// withoutServeEnv drops the variables serve reads itself (so the admin
// password goes nowhere but the bootstrap) and, in demo mode, any
// KEYGATE_ROUTES the demo replaces.
func withoutServeEnv(environ []string, demo bool) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if k == envConfig || k == envAdminPassword || k == "KEYGATE_ROUTES" && demo {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// printConfigError prints "invalid configuration:" and every problem.
func printConfigError(w io.Writer, err error) {
	var ve *configs.ValidationError
	if errors.As(err, &ve) && len(ve.Problems) > 0 {
		fmt.Fprintln(w, "invalid configuration:")
		for _, p := range ve.Problems {
			fmt.Fprintf(w, "  - %s\n", p)
		}
		return
	}
	fmt.Fprintf(w, "invalid configuration: %v\n", err)
}

// newLogger returns a JSON zap logger at level writing to w. Sampling is off:
// audit events must never be dropped.
func newLogger(level string, w io.Writer) (*zap.Logger, error) {
	lvl := zapcore.InfoLevel
	if level != "" {
		l, err := zapcore.ParseLevel(level)
		if err != nil {
			return nil, fmt.Errorf("log.level: %w", err)
		}
		lvl = l
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core, zap.ErrorOutput(zapcore.Lock(zapcore.AddSync(w)))), nil
}
