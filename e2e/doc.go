// Package e2e runs the built keygate binary end to end: real processes, real
// listeners on 127.0.0.1, real upstreams (the `keygate echo` subcommand and
// small fasthttp servers inside the test process). It has tests only.
package e2e
