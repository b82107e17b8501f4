package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestClusterErrorClasses: which errors reload the slot map and which of
// those allow the one retry (the command cannot have run).
func TestClusterErrorClasses(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "connection refused"}}
	tests := []struct {
		name          string
		err           error
		reload, retry bool
	}{
		{"nil reply", redis.Nil, false, false},
		{"cancelled", context.Canceled, false, false},
		{"wrong type", errors.New("WRONGTYPE Operation against a key holding the wrong kind of value"), false, false},
		{"dial refused", fmt.Errorf("wrapped: %w", refused), true, true},
		{"ECONNREFUSED", fmt.Errorf("connect: %w", syscall.ECONNREFUSED), true, true},
		{"reset mid-reply", fmt.Errorf("read: %w", syscall.ECONNRESET), true, false},
		{"EOF", io.EOF, true, false},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: timeoutErr{}}, true, false},
		{"deadline", context.DeadlineExceeded, true, false},
		{"moved", redisError("MOVED 3999 127.0.0.1:6381"), true, true},
		{"ask", redisError("ASK 3999 127.0.0.1:6381"), true, true},
		{"clusterdown", redisError("CLUSTERDOWN The cluster is down"), true, true},
		{"tryagain", redisError("TRYAGAIN Multiple keys request during rehashing of slot"), true, true},
		{"masterdown", redisError("MASTERDOWN Link with MASTER is down"), true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := staleMapError(tc.err); got != tc.reload {
				t.Errorf("staleMapError = %v, want %v", got, tc.reload)
			}
			if got := tc.reload && neverRan(tc.err); got != tc.retry {
				t.Errorf("retry = %v, want %v", got, tc.retry)
			}
		})
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// redisError stands for a server error reply: go-redis' Is*Error helpers
// recognise one by its text as well as by its (internal) type.
func redisError(msg string) error { return errors.New(msg) }

// TestClusterReloadShared: a reload that finished after the failed call
// began is reused (retry, no new reload); one that finished before it but
// within reloadEvery is not repeated (no retry); otherwise one reload runs.
func TestClusterReloadShared(t *testing.T) {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}, DialTimeout: 100 * time.Millisecond})
	defer func() { _ = cc.Close() }()
	var reloads atomic.Int32
	r := &clusterReloader{cc: cc, timeout: time.Second, reloadEvery: time.Hour, onReload: func(error) { reloads.Add(1) }}
	ctx := context.Background()

	began := time.Now()
	if r.reload(ctx, began) {
		t.Error("a failed reload (nothing listens) reported a fresh map")
	}
	if n := reloads.Load(); n != 1 {
		t.Fatalf("%d reloads, want 1", n)
	}
	if r.reload(ctx, time.Now()) || reloads.Load() != 1 {
		t.Errorf("a second failure within reloadEvery reloaded again (%d reloads)", reloads.Load())
	}
	r.mu.Lock()
	r.lastOK = time.Now()
	r.mu.Unlock()
	if !r.reload(ctx, began) || reloads.Load() != 1 {
		t.Errorf("a call that began before the last good reload: want a retry on it, no new reload (%d reloads)", reloads.Load())
	}
	r.reloadEvery = 0
	r.reload(ctx, time.Now())
	if n := reloads.Load(); n != 2 {
		t.Errorf("%d reloads once reloadEvery has passed, want 2", n)
	}
}
