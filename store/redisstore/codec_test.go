package redisstore

import (
	"context"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/testredis"
)

// pack is the Go twin of luaPack, for tests.
func pack(fs []field) string {
	var b strings.Builder
	for _, f := range fs {
		if !f.ok {
			b.WriteByte('~')
			continue
		}
		b.WriteString(strconv.Itoa(len(f.v)))
		b.WriteByte(':')
		b.WriteString(f.v)
	}
	return b.String()
}

func TestParsePacked(t *testing.T) {
	good := [][]field{
		nil,
		{{}},
		{{v: "", ok: true}},
		{{v: "a:b~c", ok: true}, {}, {v: "\x00\xff", ok: true}, {v: strings.Repeat("x", 300), ok: true}},
	}
	for _, fs := range good {
		got, err := parsePacked(pack(fs), nil)
		if err != nil || len(got) != len(fs) {
			t.Fatalf("parsePacked(pack(%+v)) = %+v, %v", fs, got, err)
		}
		for i := range fs {
			if got[i] != fs[i] {
				t.Errorf("field %d = %+v, want %+v", i, got[i], fs[i])
			}
		}
	}
	for _, bad := range []string{"x", "3:ab", ":", "-1:", "1", "99999999999:x", "+1", "1:a2", "a:b"} {
		if _, err := parsePacked(bad, nil); err == nil {
			t.Errorf("parsePacked(%q): no error", bad)
		}
	}
}

func FuzzParsePacked(f *testing.F) {
	f.Add("~3:abc0:~")
	f.Add("5:a:b:c")
	f.Add("10:short")
	f.Fuzz(func(t *testing.T, s string) {
		fs, err := parsePacked(s, nil)
		if err != nil {
			return
		}
		if re := pack(fs); re != s {
			// Only a leading '+' or zeros in a length may differ.
			if _, err := parsePacked(re, nil); err != nil {
				t.Fatalf("re-pack of a parsed reply does not parse: %q", re)
			}
		}
	})
}

// TestLuaNumLess checks the scripts' exact comparison of decimal nanosecond
// strings against Go's, around values doubles cannot tell apart.
func TestLuaNumLess(t *testing.T) {
	srv := testredis.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer func() { _ = c.Close() }()
	sc := redis.NewScript(luaLess + `return numLess(ARGV[1], ARGV[2]) and 1 or 0`)
	now := time.Now().UnixNano()
	vals := []int64{0, 1, -1, 9, 10, -9, -10, now, now + 1, now - 1, -now, -now - 1, math.MaxInt64, math.MinInt64 + 1, 1 << 53, 1<<53 + 1}
	ctx := context.Background()
	for _, a := range vals {
		for _, b := range vals {
			got, err := sc.Run(ctx, c, nil, strconv.FormatInt(a, 10), strconv.FormatInt(b, 10)).Int()
			if err != nil {
				t.Fatal(err)
			}
			if want := a < b; (got == 1) != want {
				t.Errorf("numLess(%d, %d) = %v, want %v", a, b, got == 1, want)
			}
		}
	}
}
