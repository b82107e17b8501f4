package main

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
)

// openPTY returns the terminal side of a new pseudo-terminal, or skips.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { _ = master.Close() })
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Skipf("ptsname: %v", err)
	}
	tty, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pts: %v", err)
	}
	t.Cleanup(func() { _ = tty.Close() })
	return tty
}

// On a terminal, and with no file configured, the password is shown there
// (nothing on disk); a configured file wins even on a terminal.
func TestPasswordSinkTerminal(t *testing.T) {
	tty := openPTY(t)
	if !isTerminal(tty) {
		t.Fatal("a pseudo-terminal does not count as a terminal")
	}
	cfg := &configs.Config{}
	cfg.Store.Bolt.Path = "/nonexistent/keygate.db"
	if _, ok := passwordSink(cfg, tty).(*store.WriterSink); !ok {
		t.Error("on a terminal the password does not go to the terminal")
	}
	cfg.Admin.GeneratedPasswordFile = "/run/secrets/pw"
	if s, ok := passwordSink(cfg, tty).(*fileSink); !ok || s.path != "/run/secrets/pw" {
		t.Errorf("a configured file is not used on a terminal: %#v", s)
	}
}
