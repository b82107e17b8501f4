package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

// Lifecycle notification outbox (store.Outbox).
//
//	outbox: ID (store.OutboxID of the bucket sequence) → JSON record
//
// Keys sort in enqueue order. Each write is one transaction, committed
// (fsync) before it returns. Claims are kept in memory, per Store: one
// process holds the file at a time, so claims only matter between claimers
// sharing this Store, and a reopened file (a restarted gateway) starts
// without any.

var bOutbox = []byte("outbox")

// outboxLease is a claim on one entry.
type outboxLease struct {
	owner string
	until time.Time
}

// outboxLeases holds each open Store's claims: entry id → claim. NextOutbox
// holds mu while it reads and claims, which makes a claim atomic.
type outboxLeases struct {
	mu sync.Mutex
	m  map[string]outboxLease
}

// leaseTables maps *Store → *outboxLeases; an entry goes when its Store is
// closed.
var leaseTables sync.Map

func (s *Store) outboxLeases() *outboxLeases {
	if l, ok := leaseTables.Load(s); ok {
		return l.(*outboxLeases)
	}
	l, loaded := leaseTables.LoadOrStore(s, &outboxLeases{m: map[string]outboxLease{}})
	if !loaded {
		go func() {
			<-s.closed
			leaseTables.Delete(s)
		}()
	}
	return l.(*outboxLeases)
}

type outboxRecord struct {
	Op        string    `json:"o"`
	Kind      string    `json:"k"`
	Name      string    `json:"n"`
	Attempts  int       `json:"a,omitempty"`
	NotBefore time.Time `json:"b,omitzero"`
	CreatedAt time.Time `json:"c"`
}

func decodeOutbox(k, v []byte) (*outboxRecord, error) {
	var r outboxRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("outbox entry %q: %w: %w", k, errCorrupt, err)
	}
	return &r, nil
}

// EnqueueOutbox implements store.Outbox.
func (s *Store) EnqueueOutbox(ctx context.Context, e *store.OutboxEntry) error {
	if err := store.ValidateOutboxEntry(e); err != nil {
		return err
	}
	created := e.CreatedAt
	if created.IsZero() {
		created = s.now()
	}
	r := outboxRecord{Op: e.Op, Kind: e.Kind, Name: e.Name, Attempts: e.Attempts,
		NotBefore: e.NotBefore.UTC(), CreatedAt: created.UTC()}
	v, err := json.Marshal(&r)
	if err != nil {
		return fmt.Errorf("boltstore: enqueue outbox: %w", err)
	}
	var id string
	err = s.update(ctx, "enqueue outbox", func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bOutbox)
		if err != nil {
			return err
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		id = store.OutboxID(seq)
		return b.Put([]byte(id), v)
	})
	if err != nil {
		return err
	}
	e.ID, e.CreatedAt = id, r.CreatedAt
	return nil
}

// NextOutbox implements store.Outbox: one read transaction; claims are
// made in memory.
func (s *Store) NextOutbox(ctx context.Context, c store.OutboxClaim) ([]store.OutboxEntry, error) {
	if c.Limit <= 0 {
		return nil, nil
	}
	now := c.Now
	if now.IsZero() {
		now = s.now()
	}
	claim := c.Owner != "" && c.Lease > 0
	leases := s.outboxLeases()
	leases.mu.Lock()
	defer leases.mu.Unlock()
	var out []store.OutboxEntry
	var claimed []string
	err := s.view(ctx, "next outbox", func(tx *bolt.Tx) error {
		out, claimed = out[:0], claimed[:0]
		b := tx.Bucket(bOutbox)
		if b == nil {
			return nil
		}
		blocked := map[string]bool{}
		cur := b.Cursor()
		for k, v := cur.First(); k != nil && len(out) < c.Limit; k, v = cur.Next() {
			r, err := decodeOutbox(k, v)
			if err != nil {
				return err
			}
			e := store.OutboxEntry{ID: string(k), Op: r.Op, Kind: r.Kind, Name: r.Name,
				Attempts: r.Attempts, NotBefore: r.NotBefore, CreatedAt: r.CreatedAt}
			key := r.Kind + "\x00" + r.Name
			l, held := leases.m[e.ID]
			switch {
			case held && l.owner != c.Owner && now.Before(l.until):
				if l.until.After(e.NotBefore) {
					e.NotBefore = l.until
				}
				blocked[key] = true
			case now.Before(r.NotBefore):
				blocked[key] = true
			case !blocked[key] && claim:
				claimed = append(claimed, e.ID)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, id := range claimed {
		leases.m[id] = outboxLease{owner: c.Owner, until: now.Add(c.Lease)}
	}
	return out, nil
}

// AckOutbox implements store.Outbox.
func (s *Store) AckOutbox(ctx context.Context, ids ...string) error {
	if len(ids) == 0 {
		return nil
	}
	err := s.update(ctx, "ack outbox", func(tx *bolt.Tx) error {
		b := tx.Bucket(bOutbox)
		if b == nil {
			return nil
		}
		for _, id := range ids {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	leases := s.outboxLeases()
	leases.mu.Lock()
	for _, id := range ids {
		delete(leases.m, id)
	}
	leases.mu.Unlock()
	return nil
}

// RescheduleOutbox implements store.Outbox.
func (s *Store) RescheduleOutbox(ctx context.Context, id string, attempts int, notBefore time.Time) error {
	return s.update(ctx, "reschedule outbox", func(tx *bolt.Tx) error {
		b := tx.Bucket(bOutbox)
		if b == nil {
			return nil
		}
		v := b.Get([]byte(id))
		if v == nil {
			return nil
		}
		r, err := decodeOutbox([]byte(id), v)
		if err != nil {
			return err
		}
		r.Attempts, r.NotBefore = attempts, notBefore.UTC()
		nv, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), nv)
	})
}

var _ store.Outbox = (*Store)(nil)
