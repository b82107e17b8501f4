package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/store"
)

// RunOutbox runs the conformance suite of store.Outbox against the stores
// newStore makes (which must implement it). Durability across a restart
// depends on how a store is restarted, so each store tests it itself.
func RunOutbox(t *testing.T, newStore Factory) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(e *outboxEnv)
	}{
		{"Order", testOutboxOrder},
		{"Validation", testOutboxValidation},
		{"Ack", testOutboxAck},
		{"Reschedule", testOutboxReschedule},
		{"HoldsBackName", testOutboxHoldsBackName},
		{"Lease", testOutboxLease},
		{"ConcurrentClaimers", testOutboxConcurrentClaimers},
		{"Cancelled", testOutboxCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock(time.Now().UTC().Truncate(time.Second))
			s := newStore(t, clock.Now)
			tc.fn(&outboxEnv{t: t, o: s, clock: clock, ctx: context.Background()})
		})
	}
}

type outboxEnv struct {
	t     *testing.T
	o     store.Outbox
	clock *Clock
	ctx   context.Context
}

// enqueue adds one entry per name (op create, kind principal) and returns
// them with their IDs.
func (e *outboxEnv) enqueue(names ...string) []store.OutboxEntry {
	e.t.Helper()
	var out []store.OutboxEntry
	for _, n := range names {
		x := store.OutboxEntry{Op: "create", Kind: "principal", Name: n}
		if err := e.o.EnqueueOutbox(e.ctx, &x); err != nil {
			e.t.Fatalf("EnqueueOutbox(%q): %v", n, err)
		}
		out = append(out, x)
	}
	return out
}

// next reads (owner "": without claiming) at the clock's time.
func (e *outboxEnv) next(limit int, owner string, lease time.Duration) []store.OutboxEntry {
	e.t.Helper()
	got, err := e.o.NextOutbox(e.ctx, store.OutboxClaim{Limit: limit, Now: e.clock.Now(), Owner: owner, Lease: lease})
	if err != nil {
		e.t.Fatalf("NextOutbox(%d, %q): %v", limit, owner, err)
	}
	return got
}

// Deliverable returns the IDs of the entries of a NextOutbox result that a
// caller may deliver at now: due, and behind no entry of the same kind and
// name that is not (the rule authz's Notifier applies).
func Deliverable(entries []store.OutboxEntry, now time.Time) []string {
	var ids []string
	blocked := map[string]bool{}
	for _, x := range entries {
		key := x.Kind + "\x00" + x.Name
		if blocked[key] || now.Before(x.NotBefore) {
			blocked[key] = true
			continue
		}
		ids = append(ids, x.ID)
	}
	return ids
}

func names(entries []store.OutboxEntry) []string {
	var out []string
	for _, x := range entries {
		out = append(out, x.Name)
	}
	return out
}

func ids(entries []store.OutboxEntry) []string {
	var out []string
	for _, x := range entries {
		out = append(out, x.ID)
	}
	return out
}

func testOutboxOrder(e *outboxEnv) {
	t := e.t
	if got := e.next(10, "", 0); len(got) != 0 {
		t.Fatalf("empty outbox: %+v", got)
	}
	// Enough to check numeric ordering past one digit.
	var want []string
	for i := range 12 {
		want = append(want, fmt.Sprintf("user-%c", 'a'+i))
	}
	added := e.enqueue(want...)
	for i, x := range added {
		if len(x.ID) != 20 || (i > 0 && x.ID <= added[i-1].ID) {
			t.Fatalf("IDs not increasing: %q after %q", x.ID, added[max(i-1, 0)].ID)
		}
		if !x.CreatedAt.Equal(e.clock.Now()) {
			t.Fatalf("CreatedAt = %v, want the store's clock %v", x.CreatedAt, e.clock.Now())
		}
	}
	nb := e.clock.Now().Add(-time.Minute)
	kept := store.OutboxEntry{Op: "delete", Kind: "domain", Name: "b/ob é", Attempts: 2, NotBefore: nb,
		CreatedAt: nb.Add(-time.Hour)}
	if err := e.o.EnqueueOutbox(e.ctx, &kept); err != nil {
		t.Fatal(err)
	}
	want = append(want, kept.Name)

	for _, tc := range []struct {
		limit int
		want  []string
	}{
		{0, nil},
		{-1, nil},
		{5, want[:5]},
		{13, want},
		{100, want},
	} {
		got := e.next(tc.limit, "", 0)
		if !slices.Equal(names(got), tc.want) {
			t.Errorf("NextOutbox(%d) = %q, want %q", tc.limit, names(got), tc.want)
		}
		if len(got) > 0 && got[0].ID != added[0].ID {
			t.Errorf("NextOutbox(%d)[0].ID = %q, want %q", tc.limit, got[0].ID, added[0].ID)
		}
	}
	last := e.next(100, "", 0)[12]
	if last.ID != kept.ID || last.Op != "delete" || last.Kind != "domain" || last.Attempts != 2 ||
		!last.NotBefore.Equal(nb) || !last.CreatedAt.Equal(kept.CreatedAt) {
		t.Errorf("entry not kept as enqueued: %+v, want %+v", last, kept)
	}
}

func testOutboxValidation(e *outboxEnv) {
	long := string(make([]byte, store.MaxOutboxField+1))
	for _, bad := range []store.OutboxEntry{
		{Kind: "principal", Name: "a"},
		{Op: "create", Name: "a"},
		{Op: "create", Kind: "principal"},
		{Op: "create", Kind: "princ\x00ipal", Name: "a"},
		{Op: "cre\nate", Kind: "principal", Name: "a"},
		{Op: "create", Kind: "principal", Name: "\xff"},
		{Op: "create", Kind: "principal", Name: long},
		{Op: "create", Kind: "principal", Name: "a", Attempts: -1},
	} {
		if err := e.o.EnqueueOutbox(e.ctx, &bad); !errors.Is(err, store.ErrInvalid) {
			e.t.Errorf("EnqueueOutbox(op %q, kind %q, name %.20q, attempts %d) = %v, want ErrInvalid",
				bad.Op, bad.Kind, bad.Name, bad.Attempts, err)
		}
	}
	if got := e.next(10, "", 0); len(got) != 0 {
		e.t.Errorf("invalid entries were stored: %+v", got)
	}
}

func testOutboxAck(e *outboxEnv) {
	t := e.t
	added := e.enqueue("a", "b", "c", "d")
	if err := e.o.AckOutbox(e.ctx); err != nil {
		t.Fatalf("AckOutbox(): %v", err)
	}
	if err := e.o.AckOutbox(e.ctx, added[0].ID, added[2].ID, "00000000000000099999", "nope"); err != nil {
		t.Fatal(err)
	}
	if got := names(e.next(10, "", 0)); !slices.Equal(got, []string{"b", "d"}) {
		t.Fatalf("after ack: %q", got)
	}
	if err := e.o.AckOutbox(e.ctx, added[0].ID); err != nil {
		t.Fatalf("acking twice: %v", err)
	}
	if err := e.o.AckOutbox(e.ctx, added[1].ID, added[3].ID); err != nil {
		t.Fatal(err)
	}
	if got := e.next(10, "", 0); len(got) != 0 {
		t.Fatalf("after acking everything: %+v", got)
	}
	// IDs keep increasing once the queue was emptied.
	if x := e.enqueue("e")[0]; x.ID <= added[3].ID {
		t.Fatalf("ID %q after %q", x.ID, added[3].ID)
	}
}

func testOutboxReschedule(e *outboxEnv) {
	t := e.t
	added := e.enqueue("a", "b")
	nb := e.clock.Now().Add(90 * time.Second).Add(123 * time.Nanosecond)
	if err := e.o.RescheduleOutbox(e.ctx, added[0].ID, 3, nb); err != nil {
		t.Fatal(err)
	}
	if err := e.o.RescheduleOutbox(e.ctx, "00000000000000099999", 1, nb); err != nil {
		t.Fatalf("unknown id: %v", err)
	}
	got := e.next(10, "", 0)
	if len(got) != 2 || got[0].Attempts != 3 || !got[0].NotBefore.Equal(nb) || got[1].Attempts != 0 || !got[1].NotBefore.IsZero() {
		t.Fatalf("after reschedule: %+v", got)
	}
	if d := Deliverable(got, e.clock.Now()); !slices.Equal(d, []string{added[1].ID}) {
		t.Fatalf("deliverable = %q, want b only", d)
	}
	// Rescheduling into the past makes it due again.
	if err := e.o.RescheduleOutbox(e.ctx, added[0].ID, 4, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got = e.next(10, "", 0)
	if got[0].Attempts != 4 || !got[0].NotBefore.IsZero() {
		t.Fatalf("after second reschedule: %+v", got[0])
	}
	if d := Deliverable(got, e.clock.Now()); len(d) != 2 {
		t.Fatalf("deliverable = %q, want both", d)
	}
}

// testOutboxHoldsBackName: an entry not yet due holds back the later entries
// of its name (they are not claimed), not those of other names.
func testOutboxHoldsBackName(e *outboxEnv) {
	t := e.t
	const lease = time.Hour
	added := e.enqueue("x", "y", "x")
	if err := e.o.RescheduleOutbox(e.ctx, added[0].ID, 1, e.clock.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got := e.next(10, "A", lease)
	if d := Deliverable(got, e.clock.Now()); !slices.Equal(d, []string{added[1].ID}) {
		t.Fatalf("A may deliver %q, want y only", d)
	}
	// Once x's first entry is due, B (A's claim on y is still on) gets both
	// x entries: A never claimed the second.
	e.clock.Advance(2 * time.Minute)
	got = e.next(10, "B", lease)
	if d := Deliverable(got, e.clock.Now()); !slices.Equal(d, []string{added[0].ID, added[2].ID}) {
		t.Fatalf("B may deliver %q, want both x entries (all: %+v)", d, got)
	}
	got = e.next(10, "A", lease)
	if d := Deliverable(got, e.clock.Now()); !slices.Equal(d, []string{added[1].ID}) {
		t.Fatalf("A may deliver %q, want y only", d)
	}
}

func testOutboxLease(e *outboxEnv) {
	t := e.t
	const lease = 30 * time.Second
	added := e.enqueue("a", "b", "c")
	all := ids(added)
	t0 := e.clock.Now()
	steps := []struct {
		name    string
		advance time.Duration
		owner   string
		want    []string // deliverable for owner
	}{
		{"A claims", 0, "A", all},
		{"B inside A's lease", 0, "B", nil},
		{"A again", time.Second, "A", all},
		{"B just before the renewed lease ends", lease - time.Nanosecond, "B", nil},
		{"B after it", time.Nanosecond, "B", all},
		{"A inside B's lease", 0, "A", nil},
		{"a reader sees B's lease", 0, "", nil},
	}
	for _, s := range steps {
		e.clock.Advance(s.advance)
		got := e.next(10, s.owner, lease)
		if d := Deliverable(got, e.clock.Now()); !slices.Equal(d, s.want) {
			t.Fatalf("%s (t0+%v): deliverable %q, want %q (all: %+v)", s.name, e.clock.Now().Sub(t0), d, s.want, got)
		}
		if len(got) != 3 {
			t.Fatalf("%s: %d entries, want every pending one", s.name, len(got))
		}
		if s.want == nil && s.owner != "" {
			for _, x := range got {
				if x.NotBefore.Before(e.clock.Now()) || x.NotBefore.After(e.clock.Now().Add(lease)) {
					t.Fatalf("%s: held entry reports NotBefore %v, want the claim's end", s.name, x.NotBefore)
				}
			}
		}
	}
	// A reader claims nothing.
	e.clock.Advance(lease)
	e.next(10, "", lease)
	e.next(10, "A", 0)
	if d := Deliverable(e.next(10, "C", lease), e.clock.Now()); !slices.Equal(d, all) {
		t.Fatalf("C after reads: %q", d)
	}
	// A failed attempt keeps the claim: the owner retries, others wait.
	if err := e.o.RescheduleOutbox(e.ctx, added[0].ID, 1, e.clock.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Second)
	if d := Deliverable(e.next(10, "D", lease), e.clock.Now()); d != nil {
		t.Fatalf("D inside C's lease after a retry: %q", d)
	}
	if d := Deliverable(e.next(10, "C", lease), e.clock.Now()); !slices.Equal(d, all) {
		t.Fatalf("C after its retry delay: %q", d)
	}
}

// testOutboxConcurrentClaimers: claimers racing at the same instant never
// get the same entry.
func testOutboxConcurrentClaimers(e *outboxEnv) {
	t := e.t
	var want []string
	for i := range 40 {
		want = append(want, fmt.Sprintf("n%02d", i))
	}
	all := ids(e.enqueue(want...))
	now := e.clock.Now()
	const claimers = 8
	got := make([][]string, claimers)
	var wg sync.WaitGroup
	for i := range claimers {
		wg.Go(func() {
			x, err := e.o.NextOutbox(e.ctx, store.OutboxClaim{Limit: 100, Now: now, Owner: fmt.Sprint("c", i), Lease: time.Minute})
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = Deliverable(x, now)
		})
	}
	wg.Wait()
	var union []string
	for _, g := range got {
		union = append(union, g...)
	}
	slices.Sort(union)
	if !slices.Equal(union, all) {
		t.Fatalf("claimed %d entries (%q), want each of %d exactly once", len(union), union, len(all))
	}
}

func testOutboxCancelled(e *outboxEnv) {
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	x := store.OutboxEntry{Op: "create", Kind: "principal", Name: "a"}
	if err := e.o.EnqueueOutbox(ctx, &x); err == nil {
		e.t.Error("EnqueueOutbox with a cancelled ctx succeeded")
	}
	if _, err := e.o.NextOutbox(ctx, store.OutboxClaim{Limit: 1, Owner: "A", Lease: time.Minute}); err == nil {
		e.t.Error("NextOutbox with a cancelled ctx succeeded")
	}
	if err := e.o.AckOutbox(ctx, "1"); err == nil {
		e.t.Error("AckOutbox with a cancelled ctx succeeded")
	}
	if got := e.next(10, "", 0); len(got) != 0 {
		e.t.Errorf("stored despite the cancelled ctx: %+v", got)
	}
}
