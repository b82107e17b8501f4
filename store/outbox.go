package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// OutboxEntry is one queued lifecycle notification (authz: a principal or a
// domain was created or deleted). The store does not interpret Op, Kind or
// Name beyond validating them; authz does.
type OutboxEntry struct {
	// ID is assigned by EnqueueOutbox: 20 decimal digits, so IDs sort (as
	// strings) in enqueue order.
	ID   string
	Op   string
	Kind string
	Name string
	// Attempts counts failed deliveries so far.
	Attempts int
	// NotBefore is when the next attempt is due (zero: now). NextOutbox
	// reports, for an entry that another owner has claimed, the end of that
	// claim if it is later.
	NotBefore time.Time
	// CreatedAt is when the entry was enqueued (set by EnqueueOutbox when
	// zero).
	CreatedAt time.Time
}

// OutboxClaim is what NextOutbox reads and claims.
type OutboxClaim struct {
	// Limit is the most entries returned (≤ 0: none).
	Limit int
	// Now is the caller's clock (zero: the store's).
	Now time.Time
	// Owner names the claimer (e.g. one gateway instance's notifier). An
	// empty Owner, or Lease ≤ 0, claims nothing: NextOutbox only reads.
	Owner string
	// Lease is how long a claim keeps other owners away from an entry.
	Lease time.Duration
}

// Outbox is a durable queue of lifecycle notifications kept in the store, so
// that with a shared store (Redis) every instance of the gateway shares one
// queue and any of them can deliver. Both store implementations provide it (a
// type assertion on a store.Store finds it). Every method honours ctx; an
// unreachable store returns an error wrapping ErrUnavailable.
//
// # Order and claims
//
// Entries are kept in enqueue (ID) order. NextOutbox returns the first
// c.Limit pending entries in that order, due or not, and claims for c.Owner,
// for c.Lease, every returned entry that the owner may deliver now: one whose
// NotBefore has passed, that no other owner holds under an unexpired claim,
// and that no earlier entry of the same Kind and Name precedes which is not
// deliverable. The entries another owner holds are returned with NotBefore
// no earlier than the end of that claim, so two owners never both find the
// same entry due within a lease (delivery is still at least once: a claim
// that lapses before the entry is acknowledged lets another owner deliver it
// again).
//
// Delivery stays in order per Kind and Name when the caller delivers, in
// order, the returned entries that are due (NotBefore ≤ Now) and skips
// every entry behind a not-due entry of the same Kind and Name (authz's
// Notifier does exactly this): an entry that failed is rescheduled, which
// holds back its successors for every owner until it is acknowledged.
type Outbox interface {
	// EnqueueOutbox stores e durably and sets e.ID (and e.CreatedAt when
	// zero); Attempts and NotBefore are kept. ErrInvalid if Op, Kind or Name
	// is empty, not UTF-8, too long, or Op or Kind contains a control
	// character.
	EnqueueOutbox(ctx context.Context, e *OutboxEntry) error
	// NextOutbox returns up to c.Limit pending entries, oldest first, and
	// claims the deliverable ones for c.Owner (see the type's doc).
	NextOutbox(ctx context.Context, c OutboxClaim) ([]OutboxEntry, error)
	// AckOutbox removes delivered entries; unknown ids are ignored.
	AckOutbox(ctx context.Context, ids ...string) error
	// RescheduleOutbox records a failed attempt: the entry's Attempts and
	// NotBefore become attempts and notBefore (its claim, if any, is kept).
	// An unknown id is ignored.
	RescheduleOutbox(ctx context.Context, id string, attempts int, notBefore time.Time) error
}

// MaxOutboxField bounds the length in bytes of an OutboxEntry's Op, Kind and
// Name.
const MaxOutboxField = 1024

// ValidateOutboxEntry checks the fields EnqueueOutbox stores.
func ValidateOutboxEntry(e *OutboxEntry) error {
	for _, f := range []struct{ what, v string }{{"op", e.Op}, {"kind", e.Kind}, {"name", e.Name}} {
		switch {
		case f.v == "":
			return fmt.Errorf("outbox entry: empty %s: %w", f.what, ErrInvalid)
		case len(f.v) > MaxOutboxField:
			return fmt.Errorf("outbox entry: %s longer than %d bytes: %w", f.what, MaxOutboxField, ErrInvalid)
		case !utf8.ValidString(f.v):
			return fmt.Errorf("outbox entry: %s is not UTF-8: %w", f.what, ErrInvalid)
		case f.what != "name" && strings.ContainsFunc(f.v, func(r rune) bool { return r < 0x20 || r == 0x7f }):
			return fmt.Errorf("outbox entry: control character in %s: %w", f.what, ErrInvalid)
		}
	}
	if e.Attempts < 0 {
		return fmt.Errorf("outbox entry: negative attempts: %w", ErrInvalid)
	}
	return nil
}

// OutboxID formats the seq-th entry's ID: 20 decimal digits, so that IDs sort
// like the numbers.
func OutboxID(seq uint64) string {
	const width = 20
	s := strconv.FormatUint(seq, 10)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}
