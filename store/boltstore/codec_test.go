package boltstore

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/store"
)

var (
	t0      = time.Date(2030, 1, 2, 3, 4, 5, 123456789, time.UTC)
	fullKey = store.APIKey{ID: "abc123", Name: "ci ☃", Description: "d\nx", Account: "acme", Username: "alice",
		Roles: []string{"read", "write"}, Hash: []byte{0, 1, 0xff}, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour),
		RevokedAt: t0.Add(time.Minute), LastUsedAt: t0.Add(time.Second)}
	fullUser = store.User{Username: "alice", Account: "acme", Type: store.TypeAccountAdmin, Roles: []string{"a"}, //nolint:gosec // test data, not a real credential
		State: store.StateDisabled, PasswordHash: "$argon2id$x", Generation: 1 << 40, CreatedAt: t0, UpdatedAt: t0.Add(time.Hour)}
)

func TestCodecRoundTrip(t *testing.T) {
	far := fullKey
	far.ExpiresAt = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
	far.CreatedAt = time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)
	extras := fullKey
	extras.Metadata, extras.AllowedCIDRs, extras.RotatedTo = []byte(`{"a":1}`), []string{"10.0.0.0/8", "::1/128"}, "def456"
	onlyRotated := fullKey
	onlyRotated.RotatedTo = "def456"
	for _, k := range []store.APIKey{fullKey, far, extras, onlyRotated, {ID: "x", Name: "n", Username: "u", Account: "a", Roles: []string{}, Hash: []byte{1}, CreatedAt: t0}} {
		got, err := decodeKey(encodeKey(&k))
		if err != nil || !reflect.DeepEqual(*got, k) {
			t.Errorf("key round trip: %+v, %v; want %+v", got, err, k)
		}
	}
	for _, u := range []store.User{fullUser, {Username: "u", Account: "a", Type: store.TypeUser, State: store.StateEnabled, Roles: []string{}, Generation: 1}} {
		got, err := decodeUser(encodeUser(&u))
		if err != nil || !reflect.DeepEqual(*got, u) {
			t.Errorf("user round trip: %+v, %v; want %+v", got, err, u)
		}
	}
	a := store.Account{Name: "acme", State: store.StateEnabled, CreatedAt: t0}
	if got, err := decodeAccount(encodeAccount(&a)); err != nil || !reflect.DeepEqual(*got, a) {
		t.Errorf("account round trip: %+v, %v", got, err)
	}
}

func TestCodecRejectsCorrupt(t *testing.T) {
	good := encodeKey(&fullKey)
	for name, v := range map[string][]byte{
		"empty":          nil,
		"bad version":    append([]byte{9}, good[1:]...),
		"truncated":      good[:len(good)-1],
		"trailing":       append(bytes.Clone(good), 0),
		"huge length":    {codecV1, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"huge count":     {codecV1, 0, 0, 0, 0, 0, 0xff, 0xff, 0x7f},
		"varint overrun": {codecV1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01},
	} {
		if _, err := decodeKey(v); !errors.Is(err, errCorrupt) {
			t.Errorf("%s: decodeKey = %v, want errCorrupt", name, err)
		}
	}
	// The error never carries the record (it holds a hash).
	_, err := decodeUser(encodeUser(&fullUser)[:20])
	if err == nil || bytes.Contains([]byte(err.Error()), []byte("argon2id")) {
		t.Errorf("decodeUser error = %v", err)
	}
}

func FuzzDecodeRecords(f *testing.F) {
	f.Add(encodeKey(&fullKey))
	f.Add(encodeUser(&fullUser))
	f.Add(encodeAccount(&store.Account{Name: "a", State: store.StateEnabled, CreatedAt: t0}))
	f.Add([]byte{codecV1, 0xff})
	f.Fuzz(func(t *testing.T, v []byte) {
		if k, err := decodeKey(v); err == nil {
			if k2, err := decodeKey(encodeKey(k)); err != nil || !reflect.DeepEqual(k, k2) {
				t.Fatalf("key re-encode: %+v %+v %v", k, k2, err)
			}
		}
		if u, err := decodeUser(v); err == nil {
			if u2, err := decodeUser(encodeUser(u)); err != nil || !reflect.DeepEqual(u, u2) {
				t.Fatalf("user re-encode: %+v %+v %v", u, u2, err)
			}
		}
		if a, err := decodeAccount(v); err == nil {
			if a2, err := decodeAccount(encodeAccount(a)); err != nil || !reflect.DeepEqual(a, a2) {
				t.Fatalf("account re-encode: %+v %+v %v", a, a2, err)
			}
		}
	})
}

// TestCorruptRecordIsUnavailable: a damaged record is the store's fault (503),
// never "not found" (which a cache could remember as an invalid key).
func TestCorruptRecordIsUnavailable(t *testing.T) {
	s, err := Open(t.TempDir()+"/kg.db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	err = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bKeys).Put([]byte("abc"), []byte{codecV1, 0xff}) })
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.GetAPIKey(context.Background(), "abc")
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAPIKey of a corrupt record = %v, want ErrUnavailable", err)
	}
}
