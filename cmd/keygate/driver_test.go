package main

import (
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

// closeCounting is a store with no capability beyond store.Store.
type closeCounting struct {
	store.Store
	closed int
}

func (c *closeCounting) Close() error { c.closed++; return c.Store.Close() }

// TestRequireDriver: a store lacking a capability serve wires is a start-up
// error naming what it lacks, and is closed; a complete one passes.
func TestRequireDriver(t *testing.T) {
	st, err := boltstore.Open(filepath.Join(t.TempDir(), "kg.db"), boltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d, err := requireDriver(st); err != nil || d != store.Driver(st) {
		t.Fatalf("requireDriver(bolt) = %v, %v", d, err)
	}
	c := &closeCounting{Store: st}
	d, err := requireDriver(c)
	if err == nil || d != nil {
		t.Fatalf("requireDriver(incomplete) = %v, %v; want an error", d, err)
	}
	for _, want := range []string{"refresh tokens", "outbox", "readiness"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if c.closed != 1 {
		t.Errorf("the incomplete store was closed %d times, want 1", c.closed)
	}
}

// TestOpenStoreDrivers: bolt opens as a store.Driver (its directory
// created); an unknown driver is refused.
func TestOpenStoreDrivers(t *testing.T) {
	cfg := configs.Default()
	cfg.Store.Driver = configs.DriverBolt
	cfg.Store.Bolt.Path = filepath.Join(t.TempDir(), "sub", "kg.db")
	d, err := openStore(cfg, zap.NewNop())
	if err != nil {
		t.Fatalf("openStore(bolt) = %v", err)
	}
	_ = d.Close()

	cfg.Store.Driver = "mongo"
	if _, err := openStore(cfg, zap.NewNop()); err == nil || !strings.Contains(err.Error(), `unknown store.driver "mongo"`) {
		t.Errorf("openStore(mongo) = %v", err)
	}
}
