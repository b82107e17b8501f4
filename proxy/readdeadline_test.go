package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/httpx/deadlinetest"
)

// TestLimitConnCoarseRead: the public listener's connections honour read
// deadlines lengthened after a shorter one (fasthttp's idle, then read
// timeout) at most the slack late, never early.
func TestLimitConnCoarseRead(t *testing.T) {
	inner, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ll := newLimitListener(inner, 0, 0, false)
	ll.readSlack = 40 * time.Millisecond
	t.Cleanup(func() { _ = ll.Close() })
	client, err := net.Dial("tcp4", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	c, err := ll.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	deadlinetest.Reads(t, client, c, ll.readSlack)
}
