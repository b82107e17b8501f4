package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
)

// AdminUsername is the global admin Bootstrap creates.
const AdminUsername = "admin"

// GeneratedPasswordLen is the length of the password Bootstrap generates:
// 24 base62 characters from crypto/rand, about 143 bits.
const GeneratedPasswordLen = 24

// PasswordSink receives the password Bootstrap generates. It is told
// before the user exists, so that a password that cannot be delivered never
// becomes the only way in, and after, so that a password whose user was not
// created (another instance won the race) is never left behind.
type PasswordSink interface {
	// Prepare receives the generated password before the user is created;
	// an error stops Bootstrap with nothing written to the store.
	Prepare(password string) error
	// Commit is called once the user was created with that password.
	Commit() error
	// Abort is called instead of Commit when the user was not created.
	Abort()
}

// WriterSink is a PasswordSink that writes the password, with a hint to
// change it, to W on Commit (a terminal: see cmd/keygate).
type WriterSink struct {
	W  io.Writer
	pw string
}

// Prepare implements PasswordSink.
func (w *WriterSink) Prepare(password string) error { w.pw = password; return nil }

// Commit implements PasswordSink.
func (w *WriterSink) Commit() error {
	_, err := fmt.Fprintf(w.W, "keygate: created user %q (global admin) with the generated password:\n\n    %s\n\n"+
		"It is shown only this once. Change it now: PUT /v1/user/password on the admin listener.\n",
		AdminUsername, w.pw)
	w.pw = ""
	return err
}

// Abort implements PasswordSink.
func (w *WriterSink) Abort() { w.pw = "" }

// Bootstrap is BootstrapTo with the generated password written to out (nil:
// nowhere) through a WriterSink.
func Bootstrap(ctx context.Context, s Store, hash func(password string) (string, error), password string, out io.Writer) (created bool, err error) {
	var sink PasswordSink
	if out != nil {
		sink = &WriterSink{W: out}
	}
	return BootstrapTo(ctx, s, hash, password, sink)
}

// BootstrapTo makes sure account AdminAccount and the global admin user
// AdminUsername exist. The user is created with type admin, roles
// ["admin"] and hash(password); when password is "" a random one is
// generated and handed to sink (nil: nowhere): Prepare before the user is
// created, then Commit or Abort. Nothing is generated when the user already
// exists. created reports whether this call created the user.
//
// BootstrapTo is idempotent and safe when several instances sharing a store
// run it at once: a concurrent create's ErrConflict counts as "exists" (and
// aborts the sink).
func BootstrapTo(ctx context.Context, s Store, hash func(password string) (string, error), password string, sink PasswordSink) (created bool, err error) {
	if _, err := s.GetAccount(ctx, AdminAccount); errors.Is(err, ErrNotFound) {
		err = s.CreateAccount(ctx, &Account{Name: AdminAccount, State: StateEnabled})
		if err != nil && !errors.Is(err, ErrConflict) {
			return false, fmt.Errorf("bootstrap: create account %q: %w", AdminAccount, err)
		}
	} else if err != nil {
		return false, fmt.Errorf("bootstrap: read account %q: %w", AdminAccount, err)
	}

	if _, err := s.GetUser(ctx, AdminUsername); err == nil {
		return false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return false, fmt.Errorf("bootstrap: read user %q: %w", AdminUsername, err)
	}
	generated := password == ""
	if generated {
		if password, err = randomBase62(GeneratedPasswordLen); err != nil {
			return false, fmt.Errorf("bootstrap: generate password: %w", err)
		}
	}
	h, err := hash(password)
	if err != nil {
		// The hash function's error could in principle echo its input; do
		// not pass it on.
		return false, errors.New("bootstrap: hashing the admin password failed")
	}
	if !generated || sink == nil {
		sink = nopSink{}
	}
	if err := sink.Prepare(password); err != nil {
		return false, fmt.Errorf("bootstrap: cannot deliver the generated password: %w", err)
	}
	err = s.CreateUser(ctx, &User{Username: AdminUsername, Account: AdminAccount, Type: TypeAdmin,
		Roles: []string{"admin"}, State: StateEnabled, PasswordHash: h})
	switch {
	case errors.Is(err, ErrConflict):
		sink.Abort()
		return false, nil // another instance won the race
	case err != nil:
		sink.Abort()
		return false, fmt.Errorf("bootstrap: create user %q: %w", AdminUsername, err)
	}
	if err := sink.Commit(); err != nil {
		return true, fmt.Errorf("bootstrap: deliver the generated password: %w", err)
	}
	return true, nil
}

type nopSink struct{}

func (nopSink) Prepare(string) error { return nil }
func (nopSink) Commit() error        { return nil }
func (nopSink) Abort()               {}

const base62Digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// randomBase62 returns n uniformly random base62 characters from crypto/rand.
func randomBase62(n int) (string, error) {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if b < 248 && len(out) < n { // 248 = 4×62 keeps the digits uniform
				out = append(out, base62Digits[b%62])
			}
		}
	}
	return string(out), nil
}
