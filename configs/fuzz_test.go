package configs

import (
	"errors"
	"os"
	"testing"

	"gopkg.in/yaml.v3"
)

func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"0", "512", "512B", "10MiB", "16kib", "1GiB", "10MB", " 7 kb ", "-1", "1.5MiB", "9223372036854775807", "9223372036854775808", "8192PiB", "", "x", "10\x00MiB"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidByteSize) {
				t.Fatalf("error %v does not wrap ErrInvalidByteSize", err)
			}
			return
		}
		if b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d, negative", s, b)
		}
		back, err := ParseByteSize(b.String())
		if err != nil || back != b {
			t.Fatalf("String round trip of %q: %q -> %d, %v", s, b.String(), back, err)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"0", "30s", "1h30m", "-5m", "30", "", "1d", "9999999999h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidDuration) {
				t.Fatalf("error %v does not wrap ErrInvalidDuration", err)
			}
			return
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("String round trip of %q: %q -> %v, %v", s, d.String(), back, err)
		}
	})
}

// FuzzLoadBytes feeds arbitrary YAML (and an arbitrary KEYGATE_ROUTES value):
// Load never panics, and a config it accepts validates and survives a
// marshal/load round trip unchanged.
func FuzzLoadBytes(f *testing.F) {
	example, err := os.ReadFile("keygate.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(example, "")
	f.Add([]byte(minimal), "")
	f.Add([]byte(""), `[{"path_prefix":"/","upstreams":["http://127.0.0.1:1"]}]`)
	f.Add([]byte("listen: [\n"), "")
	f.Add([]byte("a: &a [*a, *a]\n"), "- *x")
	f.Add([]byte("limits: {max_body: 10XB}\nroutes: {}\n"), "{}")
	f.Add([]byte("routes:\n  - path_prefix: /a/../b\n    upstreams: [\"http://u:p@h?x#y\"]\n    methods: [get, GET]\n"), "")
	f.Add([]byte("---\n---\n"), "[]")
	f.Fuzz(func(t *testing.T, data []byte, routes string) {
		var env []string
		if routes != "" {
			env = []string{"KEYGATE_ROUTES=" + routes}
		}
		c, err := LoadBytes(data, env)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load accepted a config that does not validate: %v", err)
		}
		y1, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		c2, err := LoadBytes(y1, nil)
		if err != nil {
			t.Fatalf("reload of marshalled config failed: %v\n%s", err, y1)
		}
		y2, err := yaml.Marshal(c2)
		if err != nil || string(y1) != string(y2) {
			t.Fatalf("round trip differs (%v):\n%s\n---\n%s", err, y1, y2)
		}
	})
}
