package apikey

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func mustSecret(t testing.TB) string {
	t.Helper()
	s, err := NewSecret()
	if err != nil {
		t.Fatalf("NewSecret: %v", err)
	}
	return s
}

// fixed secrets so failures reproduce.
const (
	secretA = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg" // 43
	secretB = "zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJ" // 43
)

func TestConstants(t *testing.T) {
	if len(secretA) != SecretLen || len(secretB) != SecretLen {
		t.Fatal("test secrets have the wrong length")
	}
	if MinLen != 54 || MaxLen != 85 {
		t.Fatalf("MinLen, MaxLen = %d, %d; want 54, 85", MinLen, MaxLen)
	}
}

func TestFormatKnownValue(t *testing.T) {
	// The value is pinned so the wire format cannot drift, and the checksum
	// is re-derived below from its definition with an independent CRC.
	got := Format("a", secretA)
	if want := "kg_a_" + secretA + "0ZgKvD"; got != want {
		t.Fatalf("Format = %q, want %q", got, want)
	}
	// Re-derive the checksum from its definition.
	var sum uint64
	for _, c := range []byte(got[len(got)-ChecksumLen:]) {
		sum = sum*62 + uint64(strings.IndexByte(alphabet, c)) //nolint:gosec // bounded by the test's own values
	}
	if want := uint64(crcIEEE([]byte("kg_a_" + secretA))); sum != want {
		t.Fatalf("checksum %d, want %d", sum, want)
	}
}

// crcIEEE is a bitwise CRC-32 (IEEE, reflected 0xEDB88320) independent of
// hash/crc32, to check the format against its definition.
func crcIEEE(b []byte) uint32 {
	crc := ^uint32(0)
	for _, c := range b {
		crc ^= uint32(c)
		for range 8 {
			if crc&1 == 1 {
				crc = crc>>1 ^ 0xEDB88320
			} else {
				crc >>= 1
			}
		}
	}
	return ^crc
}

func TestChecksumLeadingZeros(t *testing.T) {
	// Small CRCs must still be written with exactly 6 digits.
	for _, tc := range []struct {
		sum  uint32
		want string
	}{
		{0, "000000"},
		{1, "000001"},
		{61, "00000z"},
		{62, "000010"},
		{^uint32(0), "4gfFC3"},
	} {
		if got := string(appendChecksum(nil, tc.sum)); got != tc.want {
			t.Errorf("appendChecksum(%d) = %q, want %q", tc.sum, got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	keyA := Format("abc123", secretA)
	keyB := Format("XYZ", secretB)
	id32 := strings.Repeat("Z", 32)
	// id of A + secret and checksum of B, and vice versa.
	idAsecB := "kg_abc123_" + keyB[len(keyB)-SecretLen-ChecksumLen:]
	replaceAt := func(s string, i int, c string) string { return s[:i] + c + s[i+1:] }
	swap := func(s string, i int) string {
		b := []byte(s)
		b[i], b[i+1] = b[i+1], b[i]
		return string(b)
	}
	sec0 := len("kg_abc123_") // index of the first secret character
	cs0 := len(keyA) - ChecksumLen
	bumpChecksum := func(k string) string {
		c := k[len(k)-1]
		n := alphabet[(strings.IndexByte(alphabet, c)+1)%62]
		return k[:len(k)-1] + string(n)
	}

	tests := []struct {
		name       string
		in         string
		wantErr    error
		wantID     string
		wantSecret string
	}{
		{"valid", keyA, nil, "abc123", secretA},
		{"valid other", keyB, nil, "XYZ", secretB},
		{"valid 1-char id", Format("0", secretA), nil, "0", secretA},
		{"valid 32-char id", Format(id32, secretB), nil, id32, secretB},
		{"empty", "", ErrMalformed, "", ""},
		{"prefix only", "kg_", ErrMalformed, "", ""},
		{"upper-case prefix", "KG" + keyA[2:], ErrMalformed, "", ""},
		{"dash prefix", "kg-" + keyA[3:], ErrMalformed, "", ""},
		{"no prefix", keyA[3:], ErrMalformed, "", ""},
		{"empty id", "kg__" + keyA[sec0:], ErrMalformed, "", ""},
		{"33-char id", Format(id32+"a", secretA), ErrMalformed, "", ""},
		{"id with dash", Format("ab-c", secretA), ErrMalformed, "", ""},
		{"id with dot", Format("ab.c", secretA), ErrMalformed, "", ""},
		{"no separator", "kg_abc123" + keyA[sec0:], ErrMalformed, "", ""},
		{"separator replaced", replaceAt(keyA, sec0-1, "x"), ErrMalformed, "", ""},
		{"secret one short", Format("abc123", secretA[1:]), ErrMalformed, "", ""},
		{"secret one long", Format("abc123", secretA+"Q"), ErrMalformed, "", ""},
		{"one char dropped", keyA[:len(keyA)-1], ErrMalformed, "", ""},
		{"one char appended", keyA + "0", ErrMalformed, "", ""},
		{"secret char changed", replaceAt(keyA, sec0+5, "q"), ErrChecksum, "", ""},
		{"id char changed", replaceAt(keyA, 4, "C"), ErrChecksum, "", ""},
		{"secret chars swapped", swap(keyA, sec0+10), ErrChecksum, "", ""},
		{"id/separator swapped", swap(keyA, sec0-2), ErrMalformed, "", ""},
		{"checksum off by one", bumpChecksum(keyA), ErrChecksum, "", ""},
		{"checksum chars swapped", swap(keyA, cs0), ErrChecksum, "", ""},
		{"checksum too large", keyA[:cs0] + "zzzzzz", ErrChecksum, "", ""},
		{"checksum bad char", keyA[:cs0] + "00000-", ErrMalformed, "", ""},
		{"id of A, secret of B", idAsecB, ErrChecksum, "", ""},
		{"underscore in secret", replaceAt(keyA, sec0+3, "_"), ErrMalformed, "", ""},
		{"non-ASCII in secret", keyA[:sec0] + "é" + keyA[sec0+2:], ErrMalformed, "", ""},
		{"0xff byte", replaceAt(keyA, sec0, "\xff"), ErrMalformed, "", ""},
		{"NUL byte", replaceAt(keyA, sec0, "\x00"), ErrMalformed, "", ""},
		{"trailing space", keyA + " ", ErrMalformed, "", ""},
		{"trailing newline", keyA + "\n", ErrMalformed, "", ""},
		{"leading space", " " + keyA, ErrMalformed, "", ""},
		{"very long", keyA + strings.Repeat("a", 1<<20), ErrMalformed, "", ""},
		{"JWT", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.abcdefghijklmnopqrstuvwxyz0123456789", ErrMalformed, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, secret, err := Parse([]byte(tc.in))
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("Parse err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if id != nil || secret != nil {
					t.Fatalf("Parse returned id/secret with error")
				}
				return
			}
			if string(id) != tc.wantID || string(secret) != tc.wantSecret {
				t.Fatalf("Parse = %q, %q; want %q, %q", id, secret, tc.wantID, tc.wantSecret)
			}
		})
	}
}

func TestParseAliasesInput(t *testing.T) {
	v := []byte(Format("abc", secretA))
	id, secret, err := Parse(v)
	if err != nil {
		t.Fatal(err)
	}
	if &id[0] != &v[3] || &secret[0] != &v[7] {
		t.Fatal("Parse result does not alias its input")
	}
}

// Every single-character substitution and every adjacent transposition of a
// valid key is rejected: CRC-32 detects all bursts of ≤ 32 bits.
func TestParseRejectsAllNearMisses(t *testing.T) {
	key := Format("k3yId", mustSecret(t))
	for i := 0; i < len(key); i++ {
		for j := 0; j < len(alphabet); j++ {
			c := alphabet[j]
			if c == key[i] {
				continue
			}
			b := []byte(key)
			b[i] = c
			if _, _, err := Parse(b); err == nil {
				t.Fatalf("substitution at %d accepted", i)
			}
		}
		if i+1 < len(key) && key[i] != key[i+1] {
			b := []byte(key)
			b[i], b[i+1] = b[i+1], b[i]
			if _, _, err := Parse(b); err == nil {
				t.Fatalf("transposition at %d accepted", i)
			}
		}
	}
}

func TestFormatParseRoundTrip(t *testing.T) {
	ids := []string{"0", "a", "Z9", "0000", "AbCdEfGhIjKlMnOpQrStUvWxYz012345", "01HZXK3J5Q"}
	for _, id := range ids {
		for range 20 {
			s := mustSecret(t)
			v := Format(id, s)
			if got := string(AppendFormat([]byte("xx"), id, s)); got != "xx"+v {
				t.Fatalf("AppendFormat = %q, want %q", got, "xx"+v)
			}
			gotID, gotSecret, err := Parse([]byte(v))
			if err != nil {
				t.Fatalf("Parse(Format(%q, …)): %v", id, err)
			}
			if string(gotID) != id || string(gotSecret) != s {
				t.Fatalf("round trip mismatch for id %q", id)
			}
			if !LooksLikeKey([]byte(v)) {
				t.Fatal("LooksLikeKey(Format(…)) = false")
			}
		}
	}
}

func TestNewSecret(t *testing.T) {
	const n = 2000
	seen := make(map[string]bool, n)
	var counts [256]int
	for range n {
		s := mustSecret(t)
		if len(s) != SecretLen {
			t.Fatalf("len(secret) = %d, want %d", len(s), SecretLen)
		}
		for i := 0; i < len(s); i++ {
			if !IsBase62(s[i]) {
				t.Fatalf("secret has non-base62 byte %q", s[i])
			}
			counts[s[i]]++
		}
		if seen[s] {
			t.Fatal("NewSecret repeated a value")
		}
		seen[s] = true
	}
	// Every symbol appears (86 000 draws, expected ≈ 1387 each): a broken
	// alphabet mapping would leave some at zero or wildly skewed.
	for i := 0; i < len(alphabet); i++ {
		c := counts[alphabet[i]]
		if c < 1000 || c > 1800 {
			t.Errorf("symbol %q drawn %d times; want about 1387", alphabet[i], c)
		}
	}
}

func TestLooksLikeKey(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"kg_", true},
		{"kg_abc", true},
		{"kg", false},
		{"", false},
		{"KG_abc", false},
		{"eyJhbGciOi", false},
		{" kg_", false},
	} {
		if got := LooksLikeKey([]byte(tc.in)); got != tc.want {
			t.Errorf("LooksLikeKey(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestValidID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"a", true},
		{strings.Repeat("9", 32), true},
		{strings.Repeat("9", 33), false},
		{"", false},
		{"a_b", false},
		{"a b", false},
		{"é", false},
	} {
		if got := ValidID(tc.in); got != tc.want {
			t.Errorf("ValidID(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestHashVerify(t *testing.T) {
	s := []byte(mustSecret(t))
	other := []byte(mustSecret(t))
	h1, err := Hash(s)
	if err != nil {
		t.Fatal(err)
	}
	h2, err := Hash(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(h1) != HashLen {
		t.Fatalf("len(Hash) = %d, want %d", len(h1), HashLen)
	}
	if bytes.Equal(h1, h2) {
		t.Fatal("two hashes of one secret are equal: salt not random")
	}
	if bytes.Contains(h1, s) {
		t.Fatal("hash contains the secret")
	}
	long := bytes.Repeat([]byte("x"), 500) // takes the streaming path
	hLong, err := Hash(long)
	if err != nil {
		t.Fatal(err)
	}
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 1
		return c
	}
	tests := []struct {
		name   string
		hash   []byte
		secret []byte
		want   bool
	}{
		{"match", h1, s, true},
		{"match other salt", h2, s, true},
		{"long secret", hLong, long, true},
		{"long secret wrong", hLong, long[1:], false},
		{"wrong secret", h1, other, false},
		{"secret one char short", h1, s[:len(s)-1], false},
		{"secret one char long", h1, append(bytes.Clone(s), 'a'), false},
		{"empty secret", h1, nil, false},
		{"salt bit flipped", flip(h1, 0), s, false},
		{"digest bit flipped", flip(h1, HashLen-1), s, false},
		{"hash truncated", h1[:HashLen-1], s, false},
		{"hash too long", append(bytes.Clone(h1), 0), s, false},
		{"empty hash", nil, s, false},
		{"fake hash", FakeHash(), s, false},
		{"fake hash empty secret", FakeHash(), nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Verify(tc.hash, tc.secret); got != tc.want {
				t.Fatalf("Verify = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFakeHashShape(t *testing.T) {
	f := FakeHash()
	if len(f) != HashLen || cap(f) != HashLen {
		t.Fatalf("FakeHash len/cap = %d/%d, want %d", len(f), cap(f), HashLen)
	}
	if bytes.Equal(f, make([]byte, HashLen)) {
		t.Fatal("FakeHash is all zeros")
	}
	if !bytes.Equal(f, FakeHash()) {
		t.Fatal("FakeHash is not stable")
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(Format("abc123", secretA)))
	f.Add([]byte(Format(strings.Repeat("Z", 32), secretB)))
	f.Add([]byte("kg_"))
	f.Add([]byte("kg__" + secretA + "000000"))
	f.Add([]byte(""))
	f.Add([]byte("eyJhbGciOiJIUzI1NiJ9.e30.sig"))
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		id, secret, err := Parse(in)
		if !bytes.Equal(in, orig) {
			t.Fatal("Parse modified its input")
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrChecksum) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if !ValidID(string(id)) || len(secret) != SecretLen {
			t.Fatalf("accepted id %q / secret of length %d", id, len(secret))
		}
		if got := Format(string(id), string(secret)); got != string(in) {
			t.Fatalf("Format(Parse(%q)) = %q", in, got)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	v := []byte(Format("01HZXK3J5QABCDEF", secretA))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	s := []byte(secretA)
	h, err := Hash(s)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("match", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !Verify(h, s) {
				b.Fatal("no match")
			}
		}
	})
	// wrong_secret and unknown_id (FakeHash) should cost the same.
	wrong := []byte(secretB)
	b.Run("wrong_secret", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if Verify(h, wrong) {
				b.Fatal("wrong secret matched")
			}
		}
	})
	b.Run("unknown_id", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if Verify(FakeHash(), wrong) {
				b.Fatal("fake matched")
			}
		}
	})
}

func BenchmarkNewSecret(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewSecret(); err != nil {
			b.Fatal(err)
		}
	}
}
