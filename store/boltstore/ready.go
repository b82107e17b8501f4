package boltstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/store"
)

// Readiness of the bolt store. A full disk does not make every write fail
// at once: bbolt reuses freed pages of the file, so a small write may still
// commit while one that needs new pages fails with ENOSPC. Three signals
// together cover writes at a bounded cost:
//
//   - the last write: a write transaction that failed with an I/O error
//     (not a conflict, a missing record or a bad argument) makes the store
//     not ready until a later write, or a write probe, commits;
//   - a write probe: one tiny transaction (with its fsync), run by Ready at
//     most once per probeEvery, the result reused in between;
//   - free space on the file's filesystem: less than minFreeBytes available
//     is not ready (one statfs per Ready).

// probeEvery bounds the write probe's rate: /readyz polled in a tight loop
// costs at most one fsync per probeEvery.
const probeEvery = time.Second

// minFreeBytes is the free space under which the store is not ready: room
// for a few growth steps of a small file, not a quota.
const minFreeBytes = 1 << 20

var bMeta = []byte("meta")

type writeOutcome struct {
	err error
	at  time.Time
}

type probeResult struct {
	err error
	at  time.Time
}

// recordWrite remembers the outcome of a write transaction. Failures that
// are the caller's (ErrNotFound, ErrConflict, ErrInvalid, a context error)
// say nothing about the disk and are not recorded.
func (s *Store) recordWrite(err error) {
	switch {
	case err == nil:
		if s.lastWrite.Load() != nil {
			s.lastWrite.Store(nil)
		}
	case errors.Is(err, store.ErrUnavailable):
		s.lastWrite.Store(&writeOutcome{err: err, at: time.Now()})
	}
}

// Ready implements store.Readiness: store_read (a read transaction),
// store_write (the last write, the probe and free space; see above).
func (s *Store) Ready(ctx context.Context) []store.Check {
	return []store.Check{
		{Name: "store_read", Err: s.Ping(ctx)},
		{Name: "store_write", Err: s.writable(ctx)},
	}
}

func (s *Store) writable(ctx context.Context) error {
	select {
	case <-s.closed:
		return fmt.Errorf("boltstore: database closed: %w", store.ErrUnavailable)
	default:
	}
	if err := s.freeSpace(); err != nil {
		return err
	}
	perr := s.probeWrite(ctx)
	if perr != nil {
		return perr
	}
	if w := s.lastWrite.Load(); w != nil {
		return fmt.Errorf("boltstore: the last write failed %s ago: %w", time.Since(w.at).Round(time.Millisecond), w.err)
	}
	return nil
}

// freeSpace fails when the file's filesystem has less than minFreeBytes
// available to this process.
func (s *Store) freeSpace() error {
	var st unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(s.path), &st); err != nil {
		return fmt.Errorf("boltstore: statfs: %w: %w", store.ErrUnavailable, err)
	}
	if free := uint64(st.Bavail) * uint64(st.Bsize); free < minFreeBytes { //nolint:gosec,unconvert // statfs counts are not negative; Bavail is uint64 here, int64 on some platforms
		return fmt.Errorf("boltstore: %d bytes free on the filesystem of the database (under %d): %w",
			free, minFreeBytes, store.ErrUnavailable)
	}
	return nil
}

// probeWrite commits one tiny write, at most once per probeEvery; between
// probes it returns the last result. A successful probe clears the last
// write's failure.
func (s *Store) probeWrite(ctx context.Context) error {
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if !s.probe.at.IsZero() && time.Since(s.probe.at) < probeEvery {
		return s.probe.err
	}
	var stamp [8]byte
	now := time.Now()
	for i, v := 0, uint64(now.UnixNano()); i < 8; i, v = i+1, v>>8 {
		stamp[i] = byte(v)
	}
	err := s.update(ctx, "write probe", func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bMeta)
		if err != nil {
			return err
		}
		return b.Put([]byte("ready_probe"), stamp[:])
	})
	s.probe = probeResult{err: err, at: now}
	return err
}

var _ store.Readiness = (*Store)(nil)
