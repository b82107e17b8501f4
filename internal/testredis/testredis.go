// Package testredis starts private redis-server processes for tests: a single
// node on a free 127.0.0.1 port (Start, ports from internal/testport), a Sentinel (StartSentinel), or a
// cluster of masters (StartCluster). Every process writes only under
// t.TempDir() and is killed at test cleanup. Stop, Restart, Pause and Resume
// inject faults: a crash, a recovery, a hung server.
//
// Tests must never use a shared Redis (127.0.0.1:6379): each one gets its own.
package testredis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testport"
)

// skipMessage is shown when redis-server is missing.
const skipMessage = "redis-server not found: install it (apt-get install redis-server) to run Redis tests"

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 15 * time.Second

// Server is one private redis-server process.
type Server struct {
	t    testing.TB
	bin  string
	dir  string
	args []string
	port int
	// conf, when set, is a config file passed first (Sentinel needs one it
	// can rewrite); sentinel starts the process in Sentinel mode.
	conf     string
	sentinel bool

	mu   sync.Mutex
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// Start starts redis-server on a free 127.0.0.1 port with persistence off and
// its working directory under t.TempDir(), plus args (later args override
// earlier ones, e.g. "--appendonly", "yes"). It waits until PING answers and
// stops the server at cleanup. Without redis-server on PATH it skips the test,
// or fails it when CI=true.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin := lookBin(t, "redis-server")
	s := &Server{t: t, bin: bin, dir: t.TempDir(), args: args}
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		s.port, err = freePort(false)
		if err != nil {
			continue
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("testredis: start redis-server: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// PID is the redis-server process id (0 when it is not running), for
// benchmarks that read its CPU time from /proc.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Port is the server's TCP port.
func (s *Server) Port() int { return s.port }

// Dir is the server's working directory (AOF and cluster files live there).
func (s *Server) Dir() string { return s.dir }

// Output is what the running server has written to stdout and stderr
// (its log), for test diagnostics.
func (s *Server) Output() string {
	s.mu.Lock()
	out := s.out
	s.mu.Unlock()
	if out == nil {
		return ""
	}
	return out.String()
}

// Stop kills the server (SIGKILL: no shutdown save, as in a crash) and waits
// for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGCONT) // a paused process dies too
	_ = cmd.Process.Kill()
	<-done
}

// Pause freezes the server (SIGSTOP): connections stay open but nothing
// answers, as with a hung host or a network black hole. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a paused server (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		s.t.Fatalf("testredis: signal %v: server not running", sig)
		return
	}
	if err := cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("testredis: signal %v: %v", sig, err)
	}
}

// Restart starts the server again on the same port and directory (stopping
// it first if it runs) and waits until PING answers.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	deadline := time.Now().Add(startTimeout)
	for {
		if err = s.start(); err == nil {
			return
		}
		// The port may be briefly unavailable after a kill; retry.
		if time.Now().After(deadline) {
			s.t.Fatalf("testredis: restart redis-server on port %d: %v", s.port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) argv() []string {
	var a []string
	if s.conf != "" {
		a = append(a, s.conf)
	}
	if s.sentinel {
		return append(a, "--sentinel", "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
			"--dir", s.dir, "--protected-mode", "no")
	}
	a = append(a,
		"--port", strconv.Itoa(s.port),
		"--save", "",
		"--appendonly", "no",
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--protected-mode", "no",
	)
	return append(a, s.args...)
}

// start launches the process and waits for PING; on failure the process is
// gone and the error carries its output.
func (s *Server) start() error {
	out := &syncBuffer{}
	cmd := exec.Command(s.bin, s.argv()...) //nolint:gosec // runs the tool this harness is configured with; no client input
	cmd.Dir = s.dir
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	if err := waitPing(s.Addr(), done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%w; output: %s", err, tail(out.String()))
	}
	s.mu.Lock()
	s.cmd, s.out, s.done = cmd, out, done
	s.mu.Unlock()
	return nil
}

// waitPing waits until addr answers PING with PONG, or the process exits.
func waitPing(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("redis-server exited")
		default:
		}
		if last = ping(addr); last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("no PONG from %s within %s: %w", addr, startTimeout, last)
}

// ping sends one inline PING on a fresh connection. A server still loading
// its data answers -LOADING, which is not ready; one that wants a password
// answers -NOAUTH, which is.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	// A server with a password answers NOAUTH: it is up.
	if !bytes.HasPrefix(buf[:n], []byte("+PONG")) && !bytes.HasPrefix(buf[:n], []byte("-NOAUTH")) {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(string(buf[:n])))
	}
	return nil
}

// StartSentinel starts one Sentinel monitoring the master at masterAddr
// under masterName (quorum 1, down after 1 s, failover timeout 5 s), and
// waits until it answers PING. Add replicas with Start(t, "--replicaof",
// host, port): Sentinel discovers them from the master.
func StartSentinel(t testing.TB, masterName, masterAddr string) *Server {
	t.Helper()
	bin := lookBin(t, "redis-server")
	host, port, err := net.SplitHostPort(masterAddr)
	if err != nil {
		t.Fatalf("testredis: master address %q: %v", masterAddr, err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), sentinel: true}
	s.conf = filepath.Join(s.dir, "sentinel.conf")
	conf := fmt.Sprintf("sentinel monitor %[1]s %[2]s %[3]s 1\n"+
		"sentinel down-after-milliseconds %[1]s 1000\n"+
		"sentinel failover-timeout %[1]s 5000\n", masterName, host, port)
	if err := os.WriteFile(s.conf, []byte(conf), 0o600); err != nil {
		t.Fatalf("testredis: write sentinel config: %v", err)
	}
	for attempt := 0; attempt < 10; attempt++ {
		if s.port, err = freePort(false); err != nil {
			continue
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("testredis: start sentinel: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Cluster is a set of private redis-server masters forming one cluster.
type Cluster struct {
	Servers []*Server
}

// StartCluster starts n (≥ 3) masters with cluster mode on, creates the
// cluster with redis-cli --cluster create (no replicas), and waits until
// every node reports cluster_state:ok.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return StartClusterOpts(t, ClusterOptions{Masters: n})
}

// ClusterOptions shape StartClusterOpts' cluster.
type ClusterOptions struct {
	Masters  int // ≥ 3
	Replicas int // per master
	// NodeTimeout is cluster-node-timeout (default 5 s): how long a master
	// must be unreachable before it is marked failed and a replica takes
	// over.
	NodeTimeout time.Duration
}

// StartClusterOpts starts Masters×(1+Replicas) nodes with cluster mode on,
// creates the cluster with redis-cli --cluster create --cluster-replicas,
// and waits until every node reports cluster_state:ok. Servers lists every
// node, masters first as created (redis-cli may pair them differently;
// ask CLUSTER NODES for roles).
func StartClusterOpts(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	if o.Masters < 3 {
		t.Fatalf("testredis: a cluster needs at least 3 masters, got %d", o.Masters)
	}
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = 5 * time.Second
	}
	n := o.Masters * (1 + o.Replicas)
	bin := lookBin(t, "redis-server")
	cli := lookBin(t, "redis-cli")
	c := &Cluster{}
	for i := 0; i < n; i++ {
		s := &Server{t: t, bin: bin, dir: t.TempDir()}
		s.args = []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.dir, fmt.Sprintf("nodes-%d.conf", i)),
			"--cluster-node-timeout", strconv.FormatInt(o.NodeTimeout.Milliseconds(), 10),
			// No diskless-sync delay: replicas sync at once.
			"--repl-diskless-sync-delay", "0",
		}
		var err error
		for attempt := 0; attempt < 10; attempt++ {
			if s.port, err = freePort(true); err != nil {
				continue
			}
			if err = s.start(); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("testredis: start cluster node %d: %v", i, err)
		}
		t.Cleanup(s.Stop)
		c.Servers = append(c.Servers, s)
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(o.Replicas), "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput() //nolint:gosec // runs the tool this harness is configured with; no client input
	if err != nil {
		t.Fatalf("testredis: redis-cli --cluster create: %v: %s", err, tail(string(out)))
	}
	if err := c.waitOK(30 * time.Second); err != nil {
		t.Fatalf("testredis: %v", err)
	}
	return c
}

// Addrs are the masters' host:port addresses.
func (c *Cluster) Addrs() []string {
	a := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		a[i] = s.Addr()
	}
	return a
}

// StateOK reports whether every running node answers CLUSTER INFO with
// cluster_state:ok (stopped nodes are skipped), and the first running
// node's CLUSTER INFO first line otherwise.
func (c *Cluster) StateOK() (bool, string) {
	for _, s := range c.Servers {
		if s.PID() == 0 {
			continue
		}
		info, err := clusterInfo(s.Addr())
		if err != nil {
			return false, s.Addr() + ": " + err.Error()
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return false, s.Addr() + ": " + firstLine(info)
		}
	}
	return true, ""
}

// MasterOf returns the node that CLUSTER NODES, asked of a running node,
// names master of slot, or nil.
func (c *Cluster) MasterOf(slot int) *Server {
	for _, s := range c.Servers {
		if s.PID() == 0 {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: s.Addr(), DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1, DisableIdentity: true})
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		//lint:ignore SA1019 the same view as go-redis' map reload
		slots, err := cl.ClusterSlots(ctx).Result()
		cancel()
		_ = cl.Close()
		if err != nil {
			continue
		}
		for _, r := range slots {
			if slot >= r.Start && slot <= r.End && len(r.Nodes) > 0 {
				for _, m := range c.Servers {
					if m.Addr() == r.Nodes[0].Addr {
						return m
					}
				}
			}
		}
		return nil
	}
	return nil
}

// waitOK polls CLUSTER INFO on every node until each says cluster_state:ok
// and knows every other node.
func (c *Cluster) waitOK(d time.Duration) error {
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		ok := true
		for _, s := range c.Servers {
			info, err := clusterInfo(s.Addr())
			if err != nil {
				ok, last = false, err.Error()
				break
			}
			if !strings.Contains(info, "cluster_state:ok") ||
				!strings.Contains(info, fmt.Sprintf("cluster_known_nodes:%d", len(c.Servers))) {
				ok, last = false, s.Addr()+": "+firstLine(info)
				break
			}
		}
		if ok {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("cluster not ok within %s: %s", d, last)
}

func clusterInfo(addr string) (string, error) {
	cl := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1, DisableIdentity: true})
	defer func() { _ = cl.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return cl.ClusterInfo(ctx).Result()
}

// lookBin finds a binary on PATH, skipping the test (failing it on CI) when
// it is missing.
func lookBin(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := skipMessage
		if name != "redis-server" {
			msg = strings.Replace(skipMessage, "redis-server not found", name+" not found", 1)
		}
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// clusterBusOffset is the distance of a cluster node's bus port from its
// client port (redis-server's default).
const clusterBusOffset = 10000

// freePort returns a free 127.0.0.1 port for redis-server to bind, below
// the kernel's ephemeral range so that no parallel test or outgoing
// connection can take it first (testport). With bus, port+10000 (the
// cluster bus) is free too.
func freePort(bus bool) (int, error) {
	if bus {
		return testport.PortPair(clusterBusOffset)
	}
	return testport.Port()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[:i])
	}
	return s
}

// tail keeps the last part of a process's output for error messages.
func tail(s string) string {
	const max = 2000
	if len(s) > max {
		return "…" + s[len(s)-max:]
	}
	return s
}

// syncBuffer is a bytes.Buffer safe for the process's writer goroutine and
// the test reading it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
