package store

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzValidateMetadata: any input is accepted as a bounded JSON object with
// valid member names, or refused with ErrInvalid; never a panic. What is
// accepted validates again unchanged (the compact form is a fixed point).
func FuzzValidateMetadata(f *testing.F) {
	for _, s := range []string{``, `null`, `{}`, `{"team":"core"}`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"a":1,"a":2}`,
		`[1]`, `"x"`, `{"a b":1}`, `{"a":1} {}`, "{\"a\":\"\xff\"}", `{"a":1e999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ValidateMetadata(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if m == nil {
			return
		}
		if len(m) > MaxMetadataLen || !json.Valid(m) || m[0] != '{' {
			t.Fatalf("accepted %q", m)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(m, &obj); err != nil || len(obj) > MaxMetadataKeys {
			t.Fatalf("accepted %q: %v", m, err)
		}
		for k := range obj {
			if !ValidMetadataKey(k) {
				t.Fatalf("accepted member name %q", k)
			}
		}
		again, err := ValidateMetadata(m)
		if err != nil || string(again) != string(m) {
			t.Fatalf("not a fixed point: %q → %q, %v", m, again, err)
		}
	})
}

// FuzzParseCIDR: an accepted entry is a valid masked prefix whose string
// form parses back to itself.
func FuzzParseCIDR(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "10.1.2.3/8", "192.0.2.1", "2001:db8::/32", "::ffff:10.0.0.0/104",
		"::ffff:10.0.0.0/8", "fe80::1%eth0", "1.2.3.4/33", "", "/", "::/0", "0.0.0.0/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseCIDR(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("%q → %v", s, p)
		}
		q, err := ParseCIDR(p.String())
		if err != nil || q != p {
			t.Fatalf("%q → %v → %v, %v", s, p, q, err)
		}
	})
}
