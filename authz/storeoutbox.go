package authz

import (
	"context"
	"crypto/rand"
	"time"

	"github.com/keygate/keygate/store"
)

// StoreOutboxLease is how long a StoreOutbox's Next keeps other instances
// away from the notifications it returns as due. It bounds how late another
// instance takes over the notifications of one that died mid-batch; a batch
// that takes longer than this to deliver may be delivered twice (at least
// once).
const StoreOutboxLease = time.Minute

// storeOutbox is an Outbox (and Rescheduler) in the store: with Redis, one
// queue shared by every instance.
type storeOutbox struct {
	s     store.Outbox
	owner string
}

// NewStoreOutbox returns an Outbox, with a Rescheduler, kept in s. Several
// instances (each with its own NewStoreOutbox and Notifier) may share one
// store: Next claims the notifications it returns as due for
// StoreOutboxLease, and reports those another instance has claimed as not
// due until then, so the Notifier holds back their names. Order per (kind,
// name) holds as described on store.Outbox.
func NewStoreOutbox(s store.Outbox) Outbox {
	return &storeOutbox{s: s, owner: rand.Text()}
}

// Enqueue implements Outbox.
func (o *storeOutbox) Enqueue(ctx context.Context, n Notification) error {
	if err := n.validate(); err != nil {
		return err
	}
	return o.s.EnqueueOutbox(ctx, &store.OutboxEntry{Op: n.Op, Kind: n.Kind, Name: n.Name,
		Attempts: n.Attempts, NotBefore: n.NotBefore})
}

// Next implements Outbox. It returns pending notifications in enqueue order,
// due or not, like every Outbox; the due ones are claimed.
func (o *storeOutbox) Next(ctx context.Context, limit int) ([]Notification, error) {
	es, err := o.s.NextOutbox(ctx, store.OutboxClaim{Limit: limit, Now: time.Now(), Owner: o.owner, Lease: StoreOutboxLease})
	if err != nil || len(es) == 0 {
		return nil, err
	}
	out := make([]Notification, len(es))
	for i, e := range es {
		out[i] = Notification{ID: e.ID, Op: e.Op, Kind: e.Kind, Name: e.Name, Attempts: e.Attempts, NotBefore: e.NotBefore}
	}
	return out, nil
}

// Ack implements Outbox.
func (o *storeOutbox) Ack(ctx context.Context, ids ...string) error {
	return o.s.AckOutbox(ctx, ids...)
}

// Reschedule implements Rescheduler.
func (o *storeOutbox) Reschedule(ctx context.Context, id string, attempts int, notBefore time.Time) error {
	return o.s.RescheduleOutbox(ctx, id, attempts, notBefore)
}

var (
	_ Outbox      = (*storeOutbox)(nil)
	_ Rescheduler = (*storeOutbox)(nil)
)
