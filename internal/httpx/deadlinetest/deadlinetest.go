// Package deadlinetest checks a server connection whose read deadline is
// armed coarsely (httpx.CoarseReadDeadline) on a real connection: shared by
// the tests of every listener that arms them so (the public listener's
// limitConn, httpx.CoarseServerDeadlines).
package deadlinetest

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// Reads asks server for read deadlines as fasthttp's server does (a
// shorter one, then a longer one) and checks that a read waits until the
// deadline asked for last (the shorter armed one fires early and is
// retried), reads data arriving between the two, and times out no earlier
// than asked and at most slack late; and that a deadline asked for alone
// times out on time. client is the other end of server.
func Reads(t *testing.T, client, server net.Conn, slack time.Duration) {
	t.Helper()
	buf := make([]byte, 8)
	for _, tc := range []struct {
		name          string
		short, long   time.Duration // asked in this order; 0: not asked
		data          time.Duration // the client writes after this (0: never)
		wantTimeoutAt time.Duration // 0: the read succeeds
	}{
		{"one deadline: times out on time", 100 * time.Millisecond, 0, 0, 100 * time.Millisecond},
		{"lengthened: data after the short one is read", 80 * time.Millisecond, 400 * time.Millisecond, 250 * time.Millisecond, 0},
		{"lengthened: times out at the long one", 80 * time.Millisecond, 300 * time.Millisecond, 0, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			if err := server.SetReadDeadline(start.Add(tc.short)); err != nil {
				t.Fatal(err)
			}
			if tc.long > 0 {
				if err := server.SetReadDeadline(start.Add(tc.long)); err != nil {
					t.Fatal(err)
				}
			}
			if tc.data > 0 {
				time.AfterFunc(tc.data, func() { _, _ = client.Write([]byte("x")) })
			}
			n, err := server.Read(buf)
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
