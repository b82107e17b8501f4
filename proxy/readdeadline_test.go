package proxy

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestLimitConnCoarseRead: on a real connection, with the read deadline
// asked for alternating as fasthttp's server does (a short one, then a
// longer one), a read waits until the deadline asked for (the armed, shorter
// one fires early and is retried), and times out at most the slack late; a
// read under a deadline that was never lengthened times out on time.
func TestLimitConnCoarseRead(t *testing.T) {
	inner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ll := newLimitListener(inner, 0, 0, false)
	const slack = 40 * time.Millisecond
	ll.readSlack = slack
	t.Cleanup(func() { _ = ll.Close() })
	client, err := net.Dial("tcp4", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = client.Close() }()
	c, err := ll.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	buf := make([]byte, 8)

	for _, tc := range []struct {
		name          string
		short, long   time.Duration // asked in this order; 0: not asked
		data          time.Duration // the client writes after this (0: never)
		wantTimeoutAt time.Duration // 0: the read succeeds
	}{
		{"short only: times out on time", 100 * time.Millisecond, 0, 0, 100 * time.Millisecond},
		{"lengthened: waits past the short one for data", 80 * time.Millisecond, 400 * time.Millisecond, 250 * time.Millisecond, 0},
		{"lengthened: times out at the long one", 80 * time.Millisecond, 300 * time.Millisecond, 0, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			if err := c.SetReadDeadline(start.Add(tc.short)); err != nil {
				t.Fatal(err)
			}
			if tc.long > 0 {
				if err := c.SetReadDeadline(start.Add(tc.long)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.data > 0 {
				time.AfterFunc(tc.data, func() { _, _ = client.Write([]byte("x")) })
			}
			n, err := c.Read(buf)
			took := time.Since(start)
			if tc.wantTimeoutAt == 0 {
				if err != nil || n != 1 {
					t.Fatalf("read %d, %v after %v: want the client's byte", n, err, took)
				}
				return
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read %d, %v: want a timeout", n, err)
			}
			if took < tc.wantTimeoutAt || took > tc.wantTimeoutAt+slack+150*time.Millisecond {
				t.Fatalf("timed out after %v: want %v, at most %v late", took, tc.wantTimeoutAt, slack)
			}
		})
	}
}
