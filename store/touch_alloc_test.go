//go:build !race

package store_test

import (
	"testing"
	"time"
	"unsafe"

	"github.com/keygate/keygate/store"
)

func TestTouchSeenIDAllocatesNothing(t *testing.T) {
	s, clock := newBolt(t)
	b := store.NewTouchBatcher(s, time.Minute, nil)
	buf := []byte("0123456789ABCDEFGHIJ")
	id := unsafe.String(&buf[0], len(buf)) //nolint:gosec // audited: the test checks a zero-copy view
	at := clock.Now()
	b.Touch(id, at)
	allocs := testing.AllocsPerRun(1000, func() {
		at = at.Add(time.Millisecond)
		b.Touch(id, at)
	})
	if allocs != 0 {
		t.Errorf("Touch of a seen id: %v allocs, want 0", allocs)
	}
}
