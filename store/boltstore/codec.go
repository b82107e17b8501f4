package boltstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/store"
)

// Records are stored in a compact binary form: a version byte, then the
// fields in a fixed order. Strings and byte slices are a uvarint length and
// the bytes; a time is 0 for the zero time, or 1, varint Unix seconds and
// uvarint nanoseconds (any year); a list
// is a uvarint count and its elements. Decoding copies the value once into a
// string that every string field slices, so a record costs a handful of
// allocations whatever its size: the key lookup is a hot path.

const codecV1 = 1

var errCorrupt = errors.New("corrupt record")

type enc struct{ b []byte }

func (e *enc) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *enc) bytes(p []byte) {
	e.b = binary.AppendUvarint(e.b, uint64(len(p)))
	e.b = append(e.b, p...)
}

func (e *enc) strs(l []string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(l)))
	for _, s := range l {
		e.str(s)
	}
}

func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.b = binary.AppendVarint(e.b, t.Unix())
	e.b = binary.AppendUvarint(e.b, uint64(t.Nanosecond())) //nolint:gosec // Nanosecond is 0..999999999
}

// dec reads fields from s, a copy of the stored value. The first error
// sticks; every later read returns a zero value.
type dec struct {
	s   string
	off int
	err error
}

func newDec(v []byte, kind string) dec {
	d := dec{s: string(v)}
	if len(d.s) == 0 || d.s[0] != codecV1 {
		d.err = fmt.Errorf("boltstore: %s: unknown record version: %w", kind, errCorrupt)
		return d
	}
	d.off = 1
	return d
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("boltstore: truncated or malformed record: %w", errCorrupt)
	}
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := uvarintString(d.s[d.off:])
	if n <= 0 {
		d.fail()
		return 0
	}
	d.off += n
	return v
}

func (d *dec) varint() int64 {
	u := d.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

func (d *dec) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.s)-d.off) { //nolint:gosec // d.off <= len(d.s): the difference is not negative
		d.fail()
		return ""
	}
	s := d.s[d.off : d.off+int(n)] //nolint:gosec // n <= len(d.s)-d.off, checked above
	d.off += int(n)                //nolint:gosec // n <= len(d.s)-d.off, checked above
	return s
}

func (d *dec) bytes() []byte {
	s := d.str()
	if d.err != nil {
		return nil
	}
	return []byte(s)
}

func (d *dec) strs() []string {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n == 0 {
		return []string{} // non-nil: clients see "roles":[], not null
	}
	// Each element takes at least one byte, which bounds the allocation.
	if n > uint64(len(d.s)-d.off) { //nolint:gosec // d.off <= len(d.s): the difference is not negative
		d.fail()
		return nil
	}
	l := make([]string, n)
	for i := range l {
		l[i] = d.str()
	}
	if d.err != nil {
		return nil
	}
	return l
}

func (d *dec) time() time.Time {
	if d.err != nil {
		return time.Time{}
	}
	if d.off >= len(d.s) {
		d.fail()
		return time.Time{}
	}
	flag := d.s[d.off]
	d.off++
	switch flag {
	case 0:
		return time.Time{}
	case 1:
	default:
		d.fail()
		return time.Time{}
	}
	sec, nsec := d.varint(), d.uvarint()
	if d.err != nil || nsec >= 1e9 {
		d.fail()
		return time.Time{}
	}
	t := time.Unix(sec, int64(nsec)).UTC()
	if t.IsZero() { // the zero time has its own encoding
		d.fail()
		return time.Time{}
	}
	return t
}

func (d *dec) done() error {
	if d.err == nil && d.off != len(d.s) {
		d.err = fmt.Errorf("boltstore: trailing bytes in record: %w", errCorrupt)
	}
	return d.err
}

// uvarintString is binary.Uvarint over a string, without a copy.
func uvarintString(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s) && i < binary.MaxVarintLen64; i++ {
		b := s[i]
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				return 0, -1
			}
			return x | uint64(b)<<shift, i + 1
		}
		x |= uint64(b&0x7f) << shift
		shift += 7
	}
	return 0, 0
}

func encodeAccount(a *store.Account) []byte {
	e := enc{b: make([]byte, 0, 32+len(a.Name))}
	e.b = append(e.b, codecV1)
	e.str(a.Name)
	e.str(string(a.State))
	e.time(a.CreatedAt)
	return e.b
}

func decodeAccount(v []byte) (*store.Account, error) {
	d := newDec(v, "account")
	a := &store.Account{Name: d.str(), State: store.State(d.str()), CreatedAt: d.time()}
	if err := d.done(); err != nil {
		return nil, err
	}
	return a, nil
}

func encodeUser(u *store.User) []byte {
	e := enc{b: make([]byte, 0, 64+len(u.Username)+len(u.Account)+len(u.PasswordHash)+16*len(u.Roles))}
	e.b = append(e.b, codecV1)
	e.str(u.Username)
	e.str(u.Account)
	e.str(string(u.Type))
	e.strs(u.Roles)
	e.str(string(u.State))
	e.str(u.PasswordHash)
	e.b = binary.AppendUvarint(e.b, u.Generation)
	e.time(u.CreatedAt)
	e.time(u.UpdatedAt)
	return e.b
}

func decodeUser(v []byte) (*store.User, error) {
	d := newDec(v, "user")
	u := &store.User{}
	u.Username = d.str()
	u.Account = d.str()
	u.Type = store.UserType(d.str())
	u.Roles = d.strs()
	u.State = store.State(d.str())
	u.PasswordHash = d.str()
	u.Generation = d.uvarint()
	u.CreatedAt = d.time()
	u.UpdatedAt = d.time()
	if err := d.done(); err != nil {
		return nil, err
	}
	return u, nil
}

func encodeKey(k *store.APIKey) []byte {
	e := enc{b: make([]byte, 0, 96+len(k.Name)+len(k.Description)+len(k.Account)+len(k.Username)+len(k.Hash)+16*len(k.Roles)+
		len(k.Metadata)+48*len(k.AllowedCIDRs)+len(k.RotatedTo))}
	e.b = append(e.b, codecV1)
	e.str(k.ID)
	e.str(k.Name)
	e.str(k.Description)
	e.str(k.Account)
	e.str(k.Username)
	e.strs(k.Roles)
	e.bytes(k.Hash)
	e.time(k.CreatedAt)
	e.time(k.ExpiresAt)
	e.time(k.RevokedAt)
	e.time(k.LastUsedAt)
	// Fields added with issue 18, at the end: a record written before them
	// ends here and decodes with none.
	if len(k.Metadata) > 0 || len(k.AllowedCIDRs) > 0 || k.RotatedTo != "" {
		e.bytes(k.Metadata)
		e.strs(k.AllowedCIDRs)
		e.str(k.RotatedTo)
	}
	return e.b
}

func decodeKey(v []byte) (*store.APIKey, error) {
	d := newDec(v, "api key")
	k := &store.APIKey{}
	k.ID = d.str()
	k.Name = d.str()
	k.Description = d.str()
	k.Account = d.str()
	k.Username = d.str()
	k.Roles = d.strs()
	k.Hash = d.bytes()
	k.CreatedAt = d.time()
	k.ExpiresAt = d.time()
	k.RevokedAt = d.time()
	k.LastUsedAt = d.time()
	if d.err == nil && d.off < len(d.s) {
		if m := d.str(); m != "" {
			k.Metadata = []byte(m)
		}
		if c := d.strs(); len(c) > 0 {
			k.AllowedCIDRs = c
		}
		k.RotatedTo = d.str()
	}
	if err := d.done(); err != nil {
		return nil, err
	}
	return k, nil
}
