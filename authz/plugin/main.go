package plugin

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// SecretEnv is the environment variable the example plugin reads its signing
// secret from when --secret-file is not given (the same variable keygate
// reads authorization.external.secret from).
const SecretEnv = "KEYGATE_AUTHORIZATION_EXTERNAL_SECRET" //nolint:gosec // a name, not a credential

const shutdownTimeout = 10 * time.Second

// Main runs `keygate authz-plugin-example`:
//
//	keygate authz-plugin-example --listen 127.0.0.1:8089 --rules rules.yaml [--secret-file FILE]
//
// It serves until SIGTERM or SIGINT, reloads the rules on SIGHUP (keeping the
// old ones if the file is invalid) and returns the exit code: 0 after a clean
// shutdown, 1 on a runtime error, 2 on a usage or rules error. The secret is
// never accepted on the command line (it would show in ps).
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	return run(ctx, args, stdout, stderr, hup, nil)
}

// run is Main with the signals and the listening address made testable.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, reload <-chan os.Signal, ready func(addr string)) int {
	fs := flag.NewFlagSet("authz-plugin-example", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8089", "address to listen on")
	rulesPath := fs.String("rules", "", "YAML rules file (required)")
	secretFile := fs.String("secret-file", "", "file holding the signing secret (default: $"+SecretEnv+"; none: signatures not checked)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0 // -h/--help asked for the usage: not a mistake
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "authz-plugin-example: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *rulesPath == "" {
		fmt.Fprintln(stderr, "authz-plugin-example: --rules is required")
		return 2
	}
	rules, err := LoadRules(*rulesPath)
	if err != nil {
		fmt.Fprintf(stderr, "authz-plugin-example: %v\n", err)
		return 2
	}
	secret := os.Getenv(SecretEnv)
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			fmt.Fprintf(stderr, "authz-plugin-example: secret file: %v\n", err)
			return 2
		}
		secret = strings.TrimSpace(string(b))
	}

	log := zap.New(zapcore.NewCore(
		zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(stderr), zap.InfoLevel))
	defer func() { _ = log.Sync() }()
	if secret == "" {
		log.Warn("no signing secret: requests are not authenticated")
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "authz-plugin-example: %v\n", err)
		return 1
	}
	srv := New(rules, secret, log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "authz-plugin-example listening on %s\n", ln.Addr())
	log.Info("listening", zap.String("addr", ln.Addr().String()), zap.Int("rules", len(rules.Rules)))
	if ready != nil {
		ready(ln.Addr().String())
	}

	for {
		select {
		case <-reload:
			r, err := LoadRules(*rulesPath)
			if err != nil {
				log.Error("reloading rules: keeping the previous ones", zap.Error(err))
				continue
			}
			srv.SetRules(r)
			log.Info("rules reloaded", zap.Int("rules", len(r.Rules)))
		case err := <-errc:
			log.Error("serving", zap.Error(err))
			return 1
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			err := srv.Shutdown(sctx)
			cancel()
			if serr := <-errc; serr != nil && !errors.Is(serr, net.ErrClosed) {
				err = errors.Join(err, serr)
			}
			if err != nil {
				log.Error("shutdown", zap.Error(err))
				return 1
			}
			log.Info("stopped")
			return 0
		}
	}
}
