package authz_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keygate/keygate/authz"
)

func openOutbox(t *testing.T, path string) *authz.BoltOutbox {
	t.Helper()
	o, err := authz.OpenBoltOutbox(path)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestBoltOutbox(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openOutbox(t, path)

	for _, bad := range []authz.Notification{
		{Op: "update", Kind: authz.KindPrincipal, Name: "a"},
		{Op: authz.OpCreate, Kind: "role", Name: "a"},
		{Op: authz.OpCreate, Kind: authz.KindDomain, Name: ""},
	} {
		if err := o.Enqueue(ctx, bad); !errors.Is(err, authz.ErrInvalidNotification) {
			t.Fatalf("Enqueue(%+v) = %v", bad, err)
		}
	}
	// Enough to check numeric ordering past one digit.
	var names []string
	for i := range 12 {
		n := authz.Notification{Op: authz.OpCreate, Kind: authz.KindPrincipal, Name: string(rune('a' + i))}
		if err := o.Enqueue(ctx, n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n.Name)
	}
	got, err := o.Next(ctx, 5)
	if err != nil || len(got) != 5 {
		t.Fatalf("Next(5) = %d, %v", len(got), err)
	}
	for i, n := range got {
		if n.Name != names[i] || n.ID == "" || n.Attempts != 0 || !n.NotBefore.IsZero() {
			t.Fatalf("Next[%d] = %+v", i, n)
		}
	}
	nb := time.Unix(1_800_000_000, 0).UTC()
	if err := o.Reschedule(ctx, got[1].ID, 3, nb); err != nil {
		t.Fatal(err)
	}
	if err := o.Reschedule(ctx, "nope", 1, nb); err != nil {
		t.Fatal(err)
	}
	if err := o.Ack(ctx, got[0].ID, "unknown"); err != nil {
		t.Fatal(err)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened: still there, in order, retry state kept.
	o = openOutbox(t, path)
	defer func() { _ = o.Close() }()
	all, err := o.Next(ctx, 100)
	if err != nil || len(all) != 11 {
		t.Fatalf("after reopen Next = %d, %v", len(all), err)
	}
	for i, n := range all {
		if n.Name != names[i+1] {
			t.Fatalf("after reopen [%d] = %q, want %q", i, n.Name, names[i+1])
		}
	}
	if all[0].Attempts != 3 || !all[0].NotBefore.Equal(nb) {
		t.Fatalf("retry state lost: %+v", all[0])
	}
	// New IDs keep increasing after a reopen.
	if err := o.Enqueue(ctx, authz.Notification{Op: authz.OpDelete, Kind: authz.KindDomain, Name: "z"}); err != nil {
		t.Fatal(err)
	}
	all, _ = o.Next(ctx, 100)
	if last := all[len(all)-1]; last.Name != "z" || last.ID <= all[len(all)-2].ID {
		t.Fatalf("last = %+v", last)
	}
	if got, _ := o.Next(ctx, 0); len(got) != 0 {
		t.Fatal("Next(0) returned notifications")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := o.Enqueue(cctx, authz.Notification{Op: authz.OpCreate, Kind: authz.KindDomain, Name: "x"}); err == nil {
		t.Fatal("Enqueue with a cancelled ctx succeeded")
	}
}
