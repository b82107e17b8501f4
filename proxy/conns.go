package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/internal/httpx"
)

// Connection policy of the public listener (issue 13 items 3, 4, 12).
//
//   - limits.concurrency bounds open connections. When a new connection
//     arrives at the bound, the connection that has been idle longest
//     (keep-alive, between requests) is closed to admit it; only with no
//     idle connection is the new one refused (JSON 503).
//   - Under pressure (3/4 of the bound open), a connection that goes idle
//     waits at most idle_timeout/4 (at most 5 s) for its next request
//     instead of idle_timeout.
//   - write_timeout bounds the whole response (fasthttp sets one deadline
//     per response). When it expires, the connection is reset (SO_LINGER 0)
//     so what is still queued in the kernel is dropped instead of trickling
//     out to a slow reader.
//   - A connection closed after an early answer with its request body
//     unread first sends its answer and FIN, then reads and discards up to
//     drainMax bytes for at most drainTime, so the client sees the status
//     rather than a reset.
const (
	pressureIdleMax = 5 * time.Second
	drainMax        = 16 << 20
	drainTime       = 2 * time.Second
)

type limitListener struct {
	net.Listener
	// writeSlack: write deadlines are armed coarsely, up to this late
	// (write_timeout/16; httpx.CoarseDeadline). 0: exactly.
	writeSlack time.Duration
	// readSlack: read deadlines are armed coarsely, up to this late
	// (read_timeout/16; httpx.CoarseReadDeadline). 0: exactly.
	readSlack    time.Duration
	max          int64
	silent       bool
	pressureIdle time.Duration
	open         atomic.Int64
	evicted      atomic.Uint64

	mu   sync.Mutex
	head *limitConn // idle connections, oldest first
	tail *limitConn
}

func newLimitListener(ln net.Listener, limit int64, idle time.Duration, silent bool) *limitListener {
	pi := pressureIdleMax
	if idle > 0 {
		pi = min(pi, max(idle/4, 100*time.Millisecond))
	}
	return &limitListener{Listener: ln, max: limit, silent: silent, pressureIdle: pi}
}

var overloadedResponse = []byte("HTTP/1.1 503 Service Unavailable\r\n" +
	"Content-Type: application/json\r\nConnection: close\r\nContent-Length: " +
	itoa(len(overloadedBody)) + "\r\n\r\n" + overloadedBody)

const overloadedBody = `{"error":{"code":"overloaded","message":"too many concurrent connections"}}`

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.max <= 0 {
			return &limitConn{Conn: c, l: l}, nil
		}
		if l.open.Add(1) > l.max && !l.evictIdle() {
			l.open.Add(-1)
			if !l.silent {
				_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				_, _ = c.Write(overloadedResponse)
			}
			_ = c.Close()
			continue
		}
		return &limitConn{Conn: c, l: l}, nil
	}
}

// evictIdle closes the longest-idle connection; its Close frees its slot.
// The list also holds connections that went active since they were listed
// (connState does not take the lock for that): they are passed over.
func (l *limitListener) evictIdle() bool {
	l.mu.Lock()
	c := l.head
	for c != nil && !c.idle.Load() {
		c = c.next
	}
	if c != nil {
		l.unlink(c)
	}
	l.mu.Unlock()
	if c == nil {
		return false
	}
	l.evicted.Add(1)
	_ = c.Close()
	return true
}

func (l *limitListener) pressured() bool {
	return l.max > 0 && l.open.Load()*4 >= l.max*3
}

// connState is the Server.ConnState hook: it keeps the idle list, ordered
// by when each connection last went idle. Going active only clears the
// idle flag (no lock; evictIdle passes over connections not idle); going
// idle moves the connection to the tail: one lock per request.
func (l *limitListener) connState(nc net.Conn, st fasthttp.ConnState) {
	c := asLimitConn(nc)
	if c == nil {
		return
	}
	if st != fasthttp.StateIdle {
		c.idle.Store(false)
		return
	}
	l.mu.Lock()
	if !c.closed.Load() {
		if c.listed.Load() {
			l.unlink(c)
		}
		c.prev, c.next = l.tail, nil
		if l.tail != nil {
			l.tail.next = c
		} else {
			l.head = c
		}
		l.tail = c
		c.listed.Store(true)
	}
	c.idle.Store(true)
	l.mu.Unlock()
}

// unlink removes c from the idle list; l.mu is held.
func (l *limitListener) unlink(c *limitConn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		l.tail = c.prev
	}
	c.prev, c.next = nil, nil
	c.listed.Store(false)
}

type limitConn struct {
	net.Conn
	l      *limitListener
	closed atomic.Bool
	idle   atomic.Bool // between requests (ConnState idle)
	drain  atomic.Bool // request body left unread: drain before closing
	reset  atomic.Bool // a write timed out: drop unsent data on close

	prev, next *limitConn               // idle list, guarded by l.mu
	listed     atomic.Bool              // in the idle list: changed under l.mu
	wd         httpx.CoarseDeadline     // used by the connection's server goroutine only
	rd         httpx.CoarseReadDeadline // likewise
}

// SetWriteDeadline arms the write deadline coarsely (fasthttp sets one per
// response: write_timeout from now), see limitListener.writeSlack.
func (c *limitConn) SetWriteDeadline(t time.Time) error {
	if c.l.writeSlack <= 0 {
		return c.Conn.SetWriteDeadline(t)
	}
	return c.wd.Set(t, c.l.writeSlack, c.Conn.SetWriteDeadline)
}

// SetDeadline goes through both overrides (the coarse write deadline must
// know what is armed).
func (c *limitConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline shortens the keep-alive wait of an idle connection while
// the listener is under pressure (fasthttp sets the idle deadline right
// after the connection goes idle).
//
// Otherwise the deadline is armed coarsely (readSlack): fasthttp asks for
// idle_timeout before each keep-alive request and read_timeout after its
// first byte; Read retries a read whose armed deadline fired before the one
// asked for.
func (c *limitConn) SetReadDeadline(t time.Time) error {
	if c.idle.Load() && c.l.pressured() {
		if d := time.Now().Add(c.l.pressureIdle); t.IsZero() || d.Before(t) {
			return c.rd.SetExact(d, c.Conn.SetReadDeadline)
		}
	}
	if c.l.readSlack <= 0 {
		return c.Conn.SetReadDeadline(t)
	}
	return c.rd.Set(t, c.l.readSlack, c.Conn.SetReadDeadline)
}

// Read retries a read that timed out before the deadline asked for (see
// SetReadDeadline).
func (c *limitConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	for n == 0 && err != nil && c.l.readSlack > 0 && errors.Is(err, os.ErrDeadlineExceeded) &&
		c.rd.Retry(c.l.readSlack, c.Conn.SetReadDeadline) {
		n, err = c.Conn.Read(b)
	}
	return n, err
}

func (c *limitConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.reset.Store(true)
	}
	return n, err
}

func (c *limitConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return c.Conn.Close()
	}
	l := c.l
	l.mu.Lock()
	if c.listed.Load() {
		l.unlink(c)
	}
	l.mu.Unlock()
	if l.max > 0 {
		l.open.Add(-1)
	}
	tc, _ := c.Conn.(*net.TCPConn)
	switch {
	case c.reset.Load() && tc != nil:
		_ = tc.SetLinger(0)
	case c.drain.Load() && tc != nil:
		// The answer is flushed: send FIN, then discard what the client
		// still sends (bounded) so the close does not reset the answer.
		_ = tc.CloseWrite()
		_ = tc.SetReadDeadline(time.Now().Add(drainTime))
		_, _ = io.CopyN(io.Discard, tc, drainMax)
	}
	return c.Conn.Close()
}
