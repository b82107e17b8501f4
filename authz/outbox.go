package authz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/bbolt"
)

// Lifecycle notification operations and kinds.
const (
	OpCreate = "create"
	OpDelete = "delete"

	KindPrincipal = "principal"
	KindDomain    = "domain"
)

// ErrInvalidNotification: Enqueue was given an unknown op or kind, or an
// empty name.
var ErrInvalidNotification = errors.New("authz: invalid notification")

// Notification tells the plugin that a principal (user) or a domain (account)
// was created or deleted.
type Notification struct {
	// ID is assigned by the Outbox on Enqueue; IDs order notifications in
	// enqueue order.
	ID   string `json:"id"`
	Op   string `json:"op"`   // OpCreate | OpDelete
	Kind string `json:"kind"` // KindPrincipal | KindDomain
	Name string `json:"name"`
	// Attempts counts failed deliveries so far.
	Attempts int `json:"attempts,omitempty"`
	// NotBefore is when the next attempt is due (zero: now).
	NotBefore time.Time `json:"not_before,omitzero"`
}

func (n *Notification) validate() error {
	switch {
	case n.Op != OpCreate && n.Op != OpDelete:
		return fmt.Errorf("%w: op %q", ErrInvalidNotification, n.Op)
	case n.Kind != KindPrincipal && n.Kind != KindDomain:
		return fmt.Errorf("%w: kind %q", ErrInvalidNotification, n.Kind)
	case n.Name == "":
		return fmt.Errorf("%w: empty name", ErrInvalidNotification)
	}
	return nil
}

// Outbox is a durable queue of notifications. Implementations are safe for
// concurrent use.
type Outbox interface {
	// Enqueue stores n (its ID is assigned, Attempts and NotBefore kept)
	// durably before returning.
	Enqueue(ctx context.Context, n Notification) error
	// Next returns up to limit pending notifications in enqueue order,
	// whether due or not.
	Next(ctx context.Context, limit int) ([]Notification, error)
	// Ack removes delivered notifications; unknown ids are ignored.
	Ack(ctx context.Context, ids ...string) error
}

// Rescheduler is implemented by outboxes that persist retry state; the
// Notifier uses it when available (otherwise retry state is kept in memory
// and restarts with the process).
type Rescheduler interface {
	// Reschedule records a failed attempt of a pending notification.
	// Unknown ids are ignored.
	Reschedule(ctx context.Context, id string, attempts int, notBefore time.Time) error
}

var outboxBucket = []byte("authz_outbox")

// BoltOutbox is an Outbox in a bbolt file. Every write is committed (fsync)
// before the call returns, so notifications survive a crash or restart.
type BoltOutbox struct {
	db *bbolt.DB
}

// OpenBoltOutbox opens (creating if needed) the outbox file at path. It fails
// after a second if another process holds the file.
func OpenBoltOutbox(path string) (*BoltOutbox, error) {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("authz: open outbox: %w", err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(outboxBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("authz: open outbox: %w", err)
	}
	return &BoltOutbox{db: db}, nil
}

// Close closes the file.
func (o *BoltOutbox) Close() error { return o.db.Close() }

// outboxID formats a bucket sequence so that IDs sort like the numbers.
func outboxID(seq uint64) string {
	const width = 20
	s := strconv.FormatUint(seq, 10)
	if len(s) < width {
		s = "00000000000000000000"[:width-len(s)] + s
	}
	return s
}

// Enqueue implements Outbox.
func (o *BoltOutbox) Enqueue(ctx context.Context, n Notification) error {
	if err := n.validate(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return o.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(outboxBucket)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		n.ID = outboxID(seq)
		v, err := json.Marshal(&n)
		if err != nil {
			return err
		}
		return b.Put([]byte(n.ID), v)
	})
}

// Next implements Outbox.
func (o *BoltOutbox) Next(ctx context.Context, limit int) ([]Notification, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	var out []Notification
	err := o.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(outboxBucket).Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			var n Notification
			if err := json.Unmarshal(v, &n); err != nil {
				return fmt.Errorf("authz: outbox record %q: %w", k, err)
			}
			n.ID = string(k)
			out = append(out, n)
		}
		return nil
	})
	return out, err
}

// Ack implements Outbox.
func (o *BoltOutbox) Ack(ctx context.Context, ids ...string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	return o.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(outboxBucket)
		for _, id := range ids {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Reschedule implements Rescheduler.
func (o *BoltOutbox) Reschedule(ctx context.Context, id string, attempts int, notBefore time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return o.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(outboxBucket)
		v := b.Get([]byte(id))
		if v == nil {
			return nil
		}
		var n Notification
		if err := json.Unmarshal(v, &n); err != nil {
			return err
		}
		n.ID, n.Attempts, n.NotBefore = id, attempts, notBefore.UTC()
		nv, err := json.Marshal(&n)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), nv)
	})
}

var (
	_ Outbox      = (*BoltOutbox)(nil)
	_ Rescheduler = (*BoltOutbox)(nil)
)
