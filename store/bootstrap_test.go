package store_test

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/store"
)

// fakeHash stands in for argon2id: the test checks what was hashed.
func fakeHash(pw string) (string, error) { return "hashed:" + pw, nil }

func TestBootstrap(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		password string
	}{
		{"given password", "correct horse battery staple"},
		{"generated password", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newBolt(t)
			var out bytes.Buffer
			created, err := store.Bootstrap(ctx, s, fakeHash, tc.password, &out)
			if err != nil || !created {
				t.Fatalf("Bootstrap = %v, %v; want created", created, err)
			}
			a, err := s.GetAccount(ctx, store.AdminAccount)
			if err != nil || a.State != store.StateEnabled {
				t.Fatalf("admin account = %+v, %v", a, err)
			}
			u, err := s.GetUser(ctx, store.AdminUsername)
			if err != nil {
				t.Fatal(err)
			}
			if u.Type != store.TypeAdmin || u.Account != store.AdminAccount || !slices.Equal(u.Roles, []string{"admin"}) || u.State != store.StateEnabled {
				t.Errorf("admin user = %+v", u)
			}
			pw := tc.password
			if tc.password == "" {
				m := regexp.MustCompile(`\b[0-9A-Za-z]{20,}\b`).FindAllString(out.String(), -1)
				if len(m) != 1 {
					t.Fatalf("output does not show one generated password: %q", out.String())
				}
				pw = m[0]
				if !strings.Contains(out.String(), "Change it") {
					t.Errorf("output has no hint to change the password: %q", out.String())
				}
			} else if out.Len() != 0 {
				t.Errorf("output with a given password: %q", out.String())
			}
			if u.PasswordHash != "hashed:"+pw {
				t.Errorf("stored hash is not the hash of the password")
			}

			// Idempotent: nothing created, nothing printed, nothing changed.
			out.Reset()
			created, err = store.Bootstrap(ctx, s, fakeHash, "", &out)
			if err != nil || created || out.Len() != 0 {
				t.Errorf("second Bootstrap = %v, %v, output %q", created, err, out.String())
			}
			if u2, _ := s.GetUser(ctx, store.AdminUsername); u2.PasswordHash != u.PasswordHash || u2.Generation != 1 {
				t.Error("second Bootstrap changed the admin")
			}
		})
	}
}

func TestBootstrapGeneratedPasswordsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 3 {
		s, _ := newBolt(t)
		var out bytes.Buffer
		if _, err := store.Bootstrap(context.Background(), s, fakeHash, "", &out); err != nil {
			t.Fatal(err)
		}
		u, _ := s.GetUser(context.Background(), store.AdminUsername)
		pw := strings.TrimPrefix(u.PasswordHash, "hashed:")
		if len(pw) < 20 || !store.IsBase62ID(pw) || seen[pw] {
			t.Errorf("generated password of length %d, base62 %v, repeated %v", len(pw), store.IsBase62ID(pw), seen[pw])
		}
		seen[pw] = true
	}
}

func TestBootstrapExistingAccount(t *testing.T) {
	s, _ := newBolt(t)
	ctx := context.Background()
	if err := s.CreateAccount(ctx, &store.Account{Name: store.AdminAccount, State: store.StateDisabled}); err != nil {
		t.Fatal(err)
	}
	created, err := store.Bootstrap(ctx, s, fakeHash, "pw", nil)
	if err != nil || !created {
		t.Fatalf("Bootstrap = %v, %v", created, err)
	}
	if a, _ := s.GetAccount(ctx, store.AdminAccount); a.State != store.StateDisabled {
		t.Error("Bootstrap changed the existing admin account")
	}
}

func TestBootstrapRace(t *testing.T) {
	s, _ := newBolt(t)
	const n = 8
	var wg sync.WaitGroup
	created := make([]bool, n)
	errs := make([]error, n)
	outs := make([]bytes.Buffer, n)
	for i := range n {
		wg.Go(func() { created[i], errs[i] = store.Bootstrap(context.Background(), s, fakeHash, "", &outs[i]) })
	}
	wg.Wait()
	winners := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("instance %d: %v", i, errs[i])
		}
		if created[i] {
			winners++
		} else if outs[i].Len() != 0 {
			t.Errorf("instance %d printed a password it did not set: %q", i, outs[i].String())
		}
	}
	if winners != 1 {
		t.Errorf("%d instances created the admin, want 1", winners)
	}
}

func TestBootstrapHashError(t *testing.T) {
	s, _ := newBolt(t)
	secret := "do-not-leak-me"
	_, err := store.Bootstrap(context.Background(), s, func(pw string) (string, error) {
		return "", errors.New("hash failed for " + pw)
	}, secret, nil)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Errorf("err = %v: want an error without the password", err)
	}
	if _, err := s.GetUser(context.Background(), store.AdminUsername); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("admin created despite the hash error: %v", err)
	}
}

func TestBootstrapStoreClosed(t *testing.T) {
	s, _ := newBolt(t)
	_ = s.Close()
	_, err := store.Bootstrap(context.Background(), s, fakeHash, "pw", nil)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("Bootstrap on a closed store = %v, want ErrUnavailable", err)
	}
}

// recordingSink records the calls BootstrapTo makes.
type recordingSink struct {
	prepareErr error
	mu         sync.Mutex
	calls      []string
	pw         string
}

func (r *recordingSink) Prepare(pw string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls, r.pw = append(r.calls, "prepare"), pw
	return r.prepareErr
}
func (r *recordingSink) Commit() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "commit")
	return nil
}
func (r *recordingSink) Abort() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "abort")
}

// TestBootstrapToSink: the sink hears of the password before the user
// exists (a password it cannot keep creates no user), and after: commit for
// the winner, abort for every loser; a given password reaches no sink.
func TestBootstrapToSink(t *testing.T) {
	ctx := context.Background()
	t.Run("prepare fails", func(t *testing.T) {
		s, _ := newBolt(t)
		sink := &recordingSink{prepareErr: errors.New("read-only directory")}
		if _, err := store.BootstrapTo(ctx, s, fakeHash, "", sink); err == nil {
			t.Fatal("BootstrapTo succeeded although the password could not be delivered")
		}
		if _, err := s.GetUser(ctx, store.AdminUsername); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("admin created with an undeliverable password: %v", err)
		}
	})
	t.Run("given password", func(t *testing.T) {
		s, _ := newBolt(t)
		sink := &recordingSink{}
		if created, err := store.BootstrapTo(ctx, s, fakeHash, "pw", sink); err != nil || !created {
			t.Fatalf("BootstrapTo = %v, %v", created, err)
		}
		if len(sink.calls) != 0 {
			t.Errorf("sink calls %v for a given password, want none", sink.calls)
		}
	})
	t.Run("race", func(t *testing.T) {
		s, _ := newBolt(t)
		const n = 6
		sinks := make([]*recordingSink, n)
		created := make([]bool, n)
		var wg sync.WaitGroup
		for i := range n {
			sinks[i] = &recordingSink{}
			wg.Go(func() { created[i], _ = store.BootstrapTo(ctx, s, fakeHash, "", sinks[i]) })
		}
		wg.Wait()
		u, err := s.GetUser(ctx, store.AdminUsername)
		if err != nil {
			t.Fatal(err)
		}
		for i, sk := range sinks {
			want := []string{"prepare", "abort"}
			if created[i] {
				want = []string{"prepare", "commit"}
				if u.PasswordHash != "hashed:"+sk.pw {
					t.Errorf("the winner's sink got a password that is not the admin's")
				}
			}
			if len(sk.calls) > 0 && !slices.Equal(sk.calls, want) {
				t.Errorf("instance %d (created %v): sink calls %v, want %v", i, created[i], sk.calls, want)
			}
		}
	})
}
