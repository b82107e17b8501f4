package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"sync"
	"testing"
)

// TestNewRequestID: ids are 32 lower-case hex characters, valid as a
// client-sent id would be, distinct across many draws from concurrent
// goroutines, not a visible counter (consecutive ids share no prefix longer
// than chance allows), and cost no allocation.
func TestNewRequestID(t *testing.T) {
	const workers, per = 4, 5000
	ids := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &scratch{}
			for range per {
				s.rid = appendNewRequestID(s.rid[:0], s)
				ids[w] = append(ids[w], string(s.rid))
			}
		}()
	}
	wg.Wait()
	seen := make(map[string]bool, workers*per)
	for _, list := range ids {
		for _, id := range list {
			if len(id) != 32 || !validRequestID([]byte(id)) {
				t.Fatalf("id %q: want 32 characters of the request id alphabet", id)
			}
			for _, c := range id {
				if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
					t.Fatalf("id %q: not lower-case hex", id)
				}
			}
			if seen[id] {
				t.Fatalf("id %q drawn twice", id)
			}
			seen[id] = true
		}
	}
	// A counter shows through as long shared prefixes between consecutive
	// ids; encrypted, two ids share k leading hex digits with chance 16^-k.
	long := 0
	for _, list := range ids {
		for i := 1; i < len(list); i++ {
			n := 0
			for n < 32 && list[i][n] == list[i-1][n] {
				n++
			}
			if n >= 4 {
				long++
			}
		}
	}
	if long > 5 { // expected ~0.3 of ~20k pairs
		t.Fatalf("%d consecutive id pairs share ≥ 4 leading hex digits: ids look sequential", long)
	}
	s := &scratch{}
	if n := testing.AllocsPerRun(200, func() { s.rid = appendNewRequestID(s.rid[:0], s) }); n != 0 {
		t.Fatalf("%v allocs per id", n)
	}
}

// TestAppendHex16 checks the request id's hex encoder against
// encoding/hex on every byte value and on random blocks, appended after
// existing bytes.
func TestAppendHex16(t *testing.T) {
	var blocks [][16]byte
	var b [16]byte
	for v := range 256 {
		b[v%16] = byte(v) //nolint:gosec // v < 256
		if v%16 == 15 {
			blocks = append(blocks, b)
		}
	}
	for range 1000 {
		_, _ = rand.Read(b[:])
		blocks = append(blocks, b)
	}
	for _, b := range blocks {
		for _, prefix := range []string{"", "x", "request-"} {
			got := string(appendHex16([]byte(prefix), &b))
			if want := prefix + hex.EncodeToString(b[:]); got != want {
				t.Fatalf("appendHex16(%q, %x) = %q, want %q", prefix, b, got, want)
			}
		}
	}
}

func BenchmarkNewRequestID(b *testing.B) {
	s := &scratch{}
	b.ReportAllocs()
	for b.Loop() {
		s.rid = appendNewRequestID(s.rid[:0], s)
	}
}
