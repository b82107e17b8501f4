//go:build !race

package apikey

import (
	"bytes"
	"testing"
)

func TestParseAllocs(t *testing.T) {
	good := []byte(Format("abc123", secretA))
	bad := bytes.Clone(good)
	bad[10] ^= 1
	for name, v := range map[string][]byte{"valid": good, "checksum": bad, "malformed": []byte("kg_x")} {
		if n := testing.AllocsPerRun(100, func() { _, _, _ = Parse(v) }); n != 0 {
			t.Errorf("Parse(%s) allocates %v times", name, n)
		}
	}
}

func TestVerifyAllocs(t *testing.T) {
	s := []byte(secretA)
	h, err := Hash(s)
	if err != nil {
		t.Fatal(err)
	}
	long := bytes.Repeat([]byte("y"), 300)
	cases := map[string]func(){
		"match":        func() { Verify(h, s) },
		"fake":         func() { Verify(FakeHash(), s) },
		"wrong length": func() { Verify(h[:5], s) },
		"long secret":  func() { Verify(h, long) },
	}
	for name, f := range cases {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("Verify(%s) allocates %v times", name, n)
		}
	}
}
