package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/keygate/keygate/internal/echo"
)

// echoShutdownTimeout bounds the echo server's graceful stop.
const echoShutdownTimeout = 10 * time.Second

func init() {
	register(&command{name: "echo", summary: "run the echo upstream (answers every request with what it received)", run: runEcho})
}

func runEcho(ctx context.Context, e *env, args []string) int {
	fs := newFlagSet(e, "echo", "[--listen ADDR]")
	listen := fs.String("listen", "127.0.0.1:9000", "address to listen on")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(e.stderr, "keygate echo: cannot listen on %s: %v\n", printable(*listen), err)
		return exitFailure
	}
	srv := echo.NewServer()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Fprintf(e.stderr, "keygate echo: listening on %s\n", ln.Addr())

	select {
	case err := <-errc:
		fmt.Fprintf(e.stderr, "keygate echo: %v\n", err)
		return exitFailure
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), echoShutdownTimeout)
	defer cancel()
	if err := srv.ShutdownWithContext(sctx); err != nil {
		fmt.Fprintf(e.stderr, "keygate echo: shutdown: %v\n", err)
		return exitFailure
	}
	<-errc //nolint:errcheck // Serve returns after a clean shutdown: nothing more to say
	return exitOK
}
