package password

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// testParams keep argon2 cheap in unit tests (64 KiB, one pass).
var testParams = Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

func TestHashVerifyRoundTrip(t *testing.T) {
	h := New(testParams, 2)
	ctx := context.Background()
	tests := []struct {
		name, pw string
		wrong    []string
	}{
		{"ascii", "correct horse battery staple", []string{"correct horse battery stapl", "Correct horse battery staple", "correct horse battery staple "}},
		{"emoji", "🔑🔒 pässwörd 🦀", []string{"🔑🔒 passwörd 🦀", "🔑🔒 pässwörd", "🔒🔑 pässwörd 🦀"}},
		{"colons", "a:b::c:", []string{"a:b::c", "a", "b::c:"}},
		{"leading colon", ":secret", []string{"secret", "::secret"}},
		{"non-UTF-8 bytes", "\xff\xfe\x80abc", []string{"\xfe\xff\x80abc", "abc", "\uFFFDabc"}},
		{"NUL byte", "abc\x00def", []string{"abc", "abc\x00de", "abcdef"}},
		{"empty", "", []string{" ", "\x00"}},
		{"long", strings.Repeat("x", 4096), []string{strings.Repeat("x", 4095), strings.Repeat("x", 4097)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			phc, err := h.Hash(tc.pw)
			if err != nil {
				t.Fatalf("Hash: %v", err)
			}
			if tc.pw != "" && strings.Contains(phc, tc.pw) {
				t.Fatal("PHC string contains the password")
			}
			ok, rehash, err := h.Verify(ctx, phc, tc.pw)
			if err != nil || !ok || rehash {
				t.Fatalf("Verify(right) = %v, %v, %v; want true, false, nil", ok, rehash, err)
			}
			for _, w := range tc.wrong {
				ok, rehash, err := h.Verify(ctx, phc, w)
				if err != nil || ok || rehash {
					t.Fatalf("Verify(wrong) = %v, %v, %v; want false, false, nil", ok, rehash, err)
				}
			}
		})
	}
}

var phcRE = regexp.MustCompile(`^\$argon2id\$v=19\$m=64,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)

func TestHashFormat(t *testing.T) {
	h := New(testParams, 1)
	a, err := h.Hash("same password")
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Hash("same password")
	if err != nil {
		t.Fatal(err)
	}
	if !phcRE.MatchString(a) {
		t.Fatalf("Hash = %q, not the expected PHC form", a)
	}
	if a == b {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	p, salt, key, err := ParsePHC(a)
	if err != nil {
		t.Fatal(err)
	}
	if p != testParams || len(salt) != 16 || len(key) != 32 {
		t.Fatalf("ParsePHC(Hash) = %+v, %d-byte salt, %d-byte key", p, len(salt), len(key))
	}
}

// A hash made by another argon2id implementation (the argon2-cffi README
// example) verifies: the PHC encoding is the standard one.
func TestVerifyForeignHash(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MiB hash")
	}
	const phc = "$argon2id$v=19$m=65536,t=3,p=4$MIIRqgvgQbgj220jfp0MPA$YfwJSVjtjSU0zzV/P3S9nnQ/USre2wvJMjfCIjrTQbg"
	h := New(testParams, 1)
	ok, rehash, err := h.Verify(context.Background(), phc, "correct horse battery staple")
	if err != nil || !ok || !rehash {
		t.Fatalf("Verify = %v, %v, %v; want true, true, nil", ok, rehash, err)
	}
}

func TestNeedsRehash(t *testing.T) {
	ctx := context.Background()
	old := New(testParams, 1)
	phc, err := old.Hash("hunter2hunter2")
	if err != nil {
		t.Fatal(err)
	}
	variants := map[string]Params{
		"memory":      {Memory: 128, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32},
		"iterations":  {Memory: 64, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32},
		"parallelism": {Memory: 64, Iterations: 1, Parallelism: 2, SaltLen: 16, KeyLen: 32},
		"salt length": {Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 32, KeyLen: 32},
		"key length":  {Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 64},
	}
	for name, p := range variants {
		t.Run(name, func(t *testing.T) {
			h := New(p, 1)
			ok, rehash, err := h.Verify(ctx, phc, "hunter2hunter2")
			if err != nil || !ok || !rehash {
				t.Fatalf("Verify(right) = %v, %v, %v; want true, true, nil", ok, rehash, err)
			}
			ok, rehash, err = h.Verify(ctx, phc, "hunter3hunter3")
			if err != nil || ok || rehash {
				t.Fatalf("Verify(wrong) = %v, %v, %v; want false, false, nil", ok, rehash, err)
			}
			// Re-hashing with the new hasher clears the flag.
			phc2, err := h.Hash("hunter2hunter2")
			if err != nil {
				t.Fatal(err)
			}
			if ok, rehash, err := h.Verify(ctx, phc2, "hunter2hunter2"); err != nil || !ok || rehash {
				t.Fatalf("Verify(rehashed) = %v, %v, %v; want true, false, nil", ok, rehash, err)
			}
		})
	}
}

const goodPHC = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

func TestParsePHC(t *testing.T) {
	p, salt, key, err := ParsePHC(goodPHC)
	if err != nil {
		t.Fatalf("ParsePHC(good): %v", err)
	}
	if want := (Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}); p != want {
		t.Fatalf("params = %+v, want %+v", p, want)
	}
	if string(salt) != "saltsaltsaltsalt" || len(key) != 32 {
		t.Fatalf("salt %q, key length %d", salt, len(key))
	}

	salt22 := "c2FsdHNhbHRzYWx0c2FsdA"
	key43 := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	phc := func(mid string) string { return "$argon2id$v=19$" + mid + "$" + salt22 + "$" + key43 }
	malformed := []struct{ name, in string }{
		{"empty", ""},
		{"dollar only", "$"},
		{"argon2i", "$argon2i$v=19$m=64,t=1,p=1$" + salt22 + "$" + key43},
		{"argon2d", "$argon2d$v=19$m=64,t=1,p=1$" + salt22 + "$" + key43},
		{"upper-case id", "$ARGON2ID$v=19$m=64,t=1,p=1$" + salt22 + "$" + key43},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"no leading dollar", "argon2id$v=19$m=64,t=1,p=1$" + salt22 + "$" + key43},
		{"version 16", "$argon2id$v=16$m=64,t=1,p=1$" + salt22 + "$" + key43},
		{"version missing", "$argon2id$m=64,t=1,p=1$" + salt22 + "$" + key43},
		{"params out of order", phc("t=1,m=64,p=1")},
		{"param missing", phc("m=64,t=1")},
		{"extra param", phc("m=64,t=1,p=1,x=2")},
		{"space in params", phc("m=64, t=1,p=1")},
		{"negative", phc("m=-64,t=1,p=1")},
		{"plus sign", phc("m=+64,t=1,p=1")},
		{"leading zero", phc("m=064,t=1,p=1")},
		{"hex", phc("m=0x40,t=1,p=1")},
		{"empty number", phc("m=,t=1,p=1")},
		{"11 digits", phc("m=10000000000,t=1,p=1")},
		{"missing hash", "$argon2id$v=19$m=64,t=1,p=1$" + salt22},
		{"empty hash", "$argon2id$v=19$m=64,t=1,p=1$" + salt22 + "$"},
		{"empty salt", "$argon2id$v=19$m=64,t=1,p=1$$" + key43},
		{"extra field", phc("m=64,t=1,p=1") + "$x"},
		{"padded base64", "$argon2id$v=19$m=64,t=1,p=1$" + salt22 + "==$" + key43},
		{"url base64", "$argon2id$v=19$m=64,t=1,p=1$" + salt22 + "$" + key43[:42] + "_"},
		{"bad base64 char", "$argon2id$v=19$m=64,t=1,p=1$" + salt22 + "$" + key43[:42] + "!"},
		{"non-canonical base64", "$argon2id$v=19$m=64,t=1,p=1$" + salt22 + "$" + key43[:42] + "B"},
		{"trailing newline", goodPHC + "\n"},
		{"embedded CR", "$argon2id$v=19$m=64,t=1,p=1$" + salt22[:10] + "\r" + salt22[10:] + "$" + key43},
		{"non-ASCII", phc("m=６４,t=1,p=1")},
		{"too long", phc("m=64,t=1,p=1") + strings.Repeat("A", 600)},
	}
	for _, tc := range malformed {
		t.Run(tc.name, func(t *testing.T) {
			_, s, k, err := ParsePHC(tc.in)
			if !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("err = %v, want ErrMalformedHash", err)
			}
			if s != nil || k != nil {
				t.Fatal("slices returned with an error")
			}
		})
	}
	unsafe := []struct{ name, in string }{
		{"memory over 1 GiB", phc("m=1048577,t=1,p=1")},
		{"memory huge", phc("m=4294967295,t=1,p=1")},
		{"memory over uint32", phc("m=9999999999,t=1,p=1")},
		{"memory zero", phc("m=0,t=1,p=1")},
		{"memory below 8p", phc("m=15,t=1,p=2")},
		{"t zero", phc("m=64,t=0,p=1")},
		{"t over 100", phc("m=64,t=101,p=1")},
		{"t huge", phc("m=64,t=4294967295,p=1")},
		{"p zero", phc("m=64,t=1,p=0")},
		{"p over 255", phc("m=4096,t=1,p=256")},
		{"salt 4 bytes", "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + key43},
		{"key 8 bytes", "$argon2id$v=19$m=64,t=1,p=1$" + salt22 + "$AAAAAAAAAAA"},
	}
	for _, tc := range unsafe {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := ParsePHC(tc.in); !errors.Is(err, ErrUnsafeParams) {
				t.Fatalf("err = %v, want ErrUnsafeParams", err)
			}
		})
	}
	// Verify reports the same errors and never says ok.
	h := New(testParams, 1)
	for _, tc := range append(malformed, unsafe...) {
		ok, rehash, err := h.Verify(context.Background(), tc.in, "pw")
		if err == nil || ok || rehash {
			t.Errorf("Verify(%s) = %v, %v, %v; want an error", tc.name, ok, rehash, err)
		}
		if err != nil && strings.Contains(err.Error(), "pw") {
			t.Errorf("error %q mentions the password", err)
		}
	}
}

func TestVerifyUnknown(t *testing.T) {
	h := New(testParams, 1)
	if err := h.VerifyUnknown(context.Background(), "anything"); err != nil {
		t.Fatalf("VerifyUnknown: %v", err)
	}
	// The fake hash has the current params, so it costs what a real one does.
	p, _, _, err := ParsePHC(h.fakePHC)
	if err != nil || p != h.Params() {
		t.Fatalf("fake PHC params = %+v, %v; want %+v", p, err, h.Params())
	}
	if ok, _, _ := h.Verify(context.Background(), h.fakePHC, ""); ok {
		t.Fatal("fake hash matched the empty password")
	}
	if New(testParams, 1).fakePHC == h.fakePHC {
		t.Fatal("fake hash is not random per Hasher")
	}
}

func TestNewNormalises(t *testing.T) {
	tests := []struct {
		name string
		in   Params
		want Params
	}{
		{"zero takes defaults", Params{}, DefaultParams},
		{"partial", Params{Memory: 128}, Params{Memory: 128, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}},
		{"clamped high", Params{Memory: 1 << 30, Iterations: 1000, Parallelism: 4, SaltLen: 1000, KeyLen: 1000},
			Params{Memory: MaxMemory, Iterations: MaxIterations, Parallelism: 4, SaltLen: MaxSaltLen, KeyLen: MaxKeyLen}},
		{"clamped low", Params{Memory: 1, Iterations: 1, Parallelism: 4, SaltLen: 1, KeyLen: 1},
			Params{Memory: 32, Iterations: 1, Parallelism: 4, SaltLen: MinSaltLen, KeyLen: MinKeyLen}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := New(tc.in, 0)
			if h.Params() != tc.want {
				t.Fatalf("Params = %+v, want %+v", h.Params(), tc.want)
			}
			if err := h.Params().Validate(); err != nil {
				t.Fatalf("normalised params invalid: %v", err)
			}
			if cap(h.sem) != 1 {
				t.Fatalf("maxConcurrent 0 gave %d slots, want 1", cap(h.sem))
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := testParams
	mod := func(f func(*Params)) Params { p := ok; f(&p); return p }
	tests := []struct {
		name string
		p    Params
		bad  bool
	}{
		{"test params", ok, false},
		{"defaults", DefaultParams, false},
		{"zero", Params{}, true},
		{"t 0", mod(func(p *Params) { p.Iterations = 0 }), true},
		{"t 101", mod(func(p *Params) { p.Iterations = 101 }), true},
		{"p 0", mod(func(p *Params) { p.Parallelism = 0 }), true},
		{"m < 8p", mod(func(p *Params) { p.Parallelism = 9 }), true},
		{"m 1 GiB", mod(func(p *Params) { p.Memory = MaxMemory }), false},
		{"m over 1 GiB", mod(func(p *Params) { p.Memory = MaxMemory + 1 }), true},
		{"salt 7", mod(func(p *Params) { p.SaltLen = 7 }), true},
		{"salt 65", mod(func(p *Params) { p.SaltLen = 65 }), true},
		{"key 15", mod(func(p *Params) { p.KeyLen = 15 }), true},
		{"key 129", mod(func(p *Params) { p.KeyLen = 129 }), true},
	}
	for _, tc := range tests {
		err := tc.p.Validate()
		if tc.bad != (err != nil) || (err != nil && !errors.Is(err, ErrUnsafeParams)) {
			t.Errorf("%s: Validate = %v, want bad=%v", tc.name, err, tc.bad)
		}
	}
}

// The semaphore bounds concurrent hashes: with 2 slots and 6 callers, exactly
// 2 hash while 4 wait, and at no point do more than 2 run.
func TestConcurrencyBound(t *testing.T) {
	const slots, callers = 2, 6
	h := New(testParams, slots)
	phc, err := h.Hash("pw-for-concurrency")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	running, maxRunning, waiting := 0, 0, 0
	changed := make(chan struct{}, 100)
	release := make(chan struct{})
	h.onWait = func() {
		mu.Lock()
		waiting++
		mu.Unlock()
		changed <- struct{}{}
	}
	h.onHash = func(start bool) {
		mu.Lock()
		if start {
			running++
			maxRunning = max(maxRunning, running)
		} else {
			running--
		}
		mu.Unlock()
		if start {
			changed <- struct{}{}
			<-release
		}
	}
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			var err error
			switch i % 3 {
			case 0:
				_, _, err = h.Verify(context.Background(), phc, "wrong")
			case 1:
				err = h.VerifyUnknown(context.Background(), "wrong")
			default:
				_, err = h.Hash("new")
			}
			if err != nil {
				t.Errorf("caller %d: %v", i, err)
			}
		})
	}
	// Wait (deadlock guard only) until 2 run and 4 queue.
	guard := time.After(30 * time.Second)
	for {
		mu.Lock()
		r, w := running, waiting
		mu.Unlock()
		if r > slots {
			t.Fatalf("%d hashes running with %d slots", r, slots)
		}
		if r == slots && w == callers-slots {
			break
		}
		select {
		case <-changed:
		case <-guard:
			t.Fatalf("stuck with %d running, %d waiting", r, w)
		}
	}
	close(release)
	wg.Wait()
	if maxRunning != slots {
		t.Fatalf("max concurrent hashes = %d, want %d", maxRunning, slots)
	}
}

func TestBusyWhenContextEndsWhileQueued(t *testing.T) {
	h := New(testParams, 1)
	phc, err := h.Hash("queued password")
	if err != nil {
		t.Fatal(err)
	}
	h.sem <- struct{}{} // the only slot is taken
	defer h.release()

	t.Run("cancel while queued", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		h.onWait = cancel // cancel once the caller is queued
		defer func() { h.onWait = nil }()
		ok, _, err := h.Verify(ctx, phc, "queued password")
		if ok || !errors.Is(err, ErrBusy) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Verify = %v, %v; want ErrBusy wrapping context.Canceled", ok, err)
		}
	})
	t.Run("deadline while queued", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		dctx, dcancel := context.WithDeadline(ctx, time.Now().Add(time.Hour))
		defer dcancel()
		h.onWait = dcancel
		defer func() { h.onWait = nil }()
		err := h.VerifyUnknown(dctx, "x")
		if !errors.Is(err, ErrBusy) || !errors.Is(err, context.Canceled) {
			t.Fatalf("VerifyUnknown = %v; want ErrBusy wrapping the ctx error", err)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, _, err := h.Verify(ctx, phc, "queued password")
		if !errors.Is(err, ErrBusy) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Verify = %v; want ErrBusy", err)
		}
	})
	t.Run("malformed beats busy", func(t *testing.T) {
		// A bad hash is reported without queuing for a slot.
		_, _, err := h.Verify(context.Background(), "garbage", "x")
		if !errors.Is(err, ErrMalformedHash) {
			t.Fatalf("Verify = %v; want ErrMalformedHash", err)
		}
	})
}

func TestBusyDoesNotLeakSlots(t *testing.T) {
	h := New(testParams, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 10 {
		_ = h.VerifyUnknown(ctx, "x")
	}
	if len(h.sem) != 0 {
		t.Fatalf("%d slots held after cancelled calls", len(h.sem))
	}
	if err := h.VerifyUnknown(context.Background(), "x"); err != nil {
		t.Fatal(err)
	}
	if len(h.sem) != 0 {
		t.Fatal("slot not released")
	}
}

func FuzzParsePHC(f *testing.F) {
	f.Add(goodPHC)
	f.Add(New(testParams, 1).fakePHC)
	f.Add("$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("$argon2id$v=19$m=,t=,p=$$")
	f.Add("$argon2i$v=19$m=4096,t=3,p=1$c2FsdA$aGFzaA")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, key, err := ParsePHC(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedHash) && !errors.Is(err, ErrUnsafeParams) {
				t.Fatalf("unexpected error %v", err)
			}
			if salt != nil || key != nil || p != (Params{}) {
				t.Fatal("values returned with an error")
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted params fail Validate: %v", err)
		}
		if int(p.SaltLen) != len(salt) || int(p.KeyLen) != len(key) {
			t.Fatal("lengths in Params disagree with the slices")
		}
		if got := encodePHC(p, salt, key); got != s {
			t.Fatalf("re-encoded %q, parsed %q", got, s)
		}
	})
}

// Both benchmarks use DefaultParams; their ns/op should match (within noise):
// an unknown user must cost what a wrong password costs.
func BenchmarkVerifyWrongPassword(b *testing.B) {
	h := New(DefaultParams, 1)
	phc, err := h.Hash("the right password")
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if ok, _, err := h.Verify(ctx, phc, "the wrong password"); ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkVerifyUnknown(b *testing.B) {
	h := New(DefaultParams, 1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := h.VerifyUnknown(ctx, "the wrong password"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHash(b *testing.B) {
	h := New(DefaultParams, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.Hash("a password"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParsePHC(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := ParsePHC(goodPHC); err != nil {
			b.Fatal(err)
		}
	}
}
