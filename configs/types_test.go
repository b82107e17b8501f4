package configs

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    ByteSize
		wantErr string // substring; "" means success
	}{
		{"0", 0, ""},
		{"512", 512, ""},
		{"512B", 512, ""},
		{"512b", 512, ""},
		{"16KiB", 16 << 10, ""},
		{"16kib", 16 << 10, ""},
		{"16KIB", 16 << 10, ""},
		{"10MiB", 10 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"2TiB", 2 << 40, ""},
		{"1PiB", 1 << 50, ""},
		{"10MB", 10_000_000, ""},
		{"10mb", 10_000_000, ""},
		{"1KB", 1000, ""},
		{"3GB", 3_000_000_000, ""},
		{" 10 MiB ", 10 << 20, ""},
		{"007KiB", 7 << 10, ""},
		{"8191PiB", 8191 << 50, ""},
		{"9223372036854775807", math.MaxInt64, ""},
		{"9223372036854775807B", math.MaxInt64, ""},
		{"", 0, "empty value"},
		{"   ", 0, "empty value"},
		{"-1", 0, "must not be negative"},
		{"-1KiB", 0, "must not be negative"},
		{"+1", 0, "want a whole number"},
		{"KiB", 0, "want a whole number"},
		{"ten", 0, "want a whole number"},
		{"1.5MiB", 0, "fractional"},
		{"1,5MiB", 0, "fractional"},
		{"10XB", 0, "unknown unit"},
		{"10 M", 0, "unknown unit"},
		{"10MiBs", 0, "unknown unit"},
		{"10 MiB x", 0, "unknown unit"},
		{"0x10", 0, "unknown unit"},
		{"1e3", 0, "unknown unit"},
		{"9223372036854775808", 0, "too large"},
		{"99999999999999999999999", 0, "too large"},
		{"8192PiB", 0, "too large"},
		{"9223372036854776KB", 0, "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseByteSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidByteSize) {
					t.Fatalf("ParseByteSize(%q) = %d, %v; want error containing %q wrapping ErrInvalidByteSize", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0B"}, {1, "1B"}, {512, "512B"}, {1023, "1023B"},
		{KiB, "1KiB"}, {16 * KiB, "16KiB"}, {10 * MiB, "10MiB"}, {1536 * KiB, "1536KiB"},
		{GiB, "1GiB"}, {KB, "1KB"}, {10 * MB, "10MB"}, {1001, "1001B"},
		{math.MaxInt64, "9223372036854775807B"}, {-5, "-5B"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		if tt.in < 0 {
			continue
		}
		back, err := ParseByteSize(tt.in.String())
		if err != nil || back != tt.in {
			t.Errorf("round trip of %d: %d, %v", int64(tt.in), back, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"0", 0, ""},
		{"30s", 30 * time.Second, ""},
		{"720h", 720 * time.Hour, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"200ms", 200 * time.Millisecond, ""},
		{" 5m ", 5 * time.Minute, ""},
		{"-1s", -time.Second, ""},
		{"", 0, "empty value"},
		{"30", 0, "missing unit"},
		{"1.5", 0, "missing unit"},
		{"soon", 0, `invalid duration "soon"`},
		{"5 m", 0, "invalid duration"},
		{"1d", 0, "invalid duration"},
		{"9999999999h", 0, "invalid duration"},
		{strings.Repeat("9", 200), 0, `"...: missing unit`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalidDuration) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				if len(err.Error()) > 200 {
					t.Errorf("error not truncated: %d bytes", len(err.Error()))
				}
				return
			}
			if err != nil || got.D() != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestTextAndYAMLCodecs checks the encoding interfaces both ways.
func TestTextAndYAMLCodecs(t *testing.T) {
	type doc struct {
		D Duration `yaml:"d" json:"d"`
		B ByteSize `yaml:"b" json:"b"`
	}
	in := doc{D: Duration(90 * time.Second), B: 10 * MiB}
	y, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(y) != "d: 1m30s\nb: 10MiB\n" {
		t.Errorf("yaml = %q", y)
	}
	var out doc
	if err := yaml.Unmarshal(y, &out); err != nil || out != in {
		t.Fatalf("yaml round trip: %+v, %v", out, err)
	}
	j, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(j) != `{"d":"1m30s","b":"10MiB"}` {
		t.Errorf("json = %s", j)
	}
	out = doc{}
	if err := json.Unmarshal(j, &out); err != nil || out != in {
		t.Fatalf("json round trip: %+v, %v", out, err)
	}
	if err := json.Unmarshal([]byte(`{"d":"x"}`), &out); !errors.Is(err, ErrInvalidDuration) {
		t.Errorf("json bad duration: %v", err)
	}
	if err := json.Unmarshal([]byte(`{"b":"-1"}`), &out); !errors.Is(err, ErrInvalidByteSize) {
		t.Errorf("json bad size: %v", err)
	}
}

// TestMarshalRoundTrip writes a loaded config back as YAML and loads it
// again: what keygate prints (e.g. a "config show" command) is loadable.
func TestMarshalRoundTrip(t *testing.T) {
	c, err := Load("keygate.yaml", []string{"KEYGATE_TRUSTED_PROXIES=10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	y1, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := LoadBytes(y1, nil)
	if err != nil {
		t.Fatalf("reloading marshalled config: %v\n%s", err, y1)
	}
	y2, err := yaml.Marshal(c2)
	if err != nil {
		t.Fatal(err)
	}
	if string(y1) != string(y2) {
		t.Fatalf("round trip differs:\n%s\n---\n%s", y1, y2)
	}
}
