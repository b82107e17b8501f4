package boltstore_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/storetest"
)

func TestEndedSessionsConformance(t *testing.T) {
	storetest.RunSessions(t, func(t *testing.T, now func() time.Time) store.EndedSessions {
		return open(t, filepath.Join(t.TempDir(), "kg.db"), now)
	})
}
