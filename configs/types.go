package configs

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Enumerated config values.
const (
	DriverBolt  = "bolt"
	DriverRedis = "redis"

	MethodBasic  = "basic"
	MethodAPIKey = "api_key"
	MethodBearer = "bearer"

	AlgHS256 = "HS256"
	AlgEdDSA = "EdDSA"
	AlgRS256 = "RS256"

	HandlerNative   = "native"
	HandlerExternal = "external"
)

// Byte size units.
const (
	B   ByteSize = 1
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
	TiB ByteSize = 1 << 40
	PiB ByteSize = 1 << 50
	KB  ByteSize = 1e3
	MB  ByteSize = 1e6
	GB  ByteSize = 1e9
	TB  ByteSize = 1e12
	PB  ByteSize = 1e15
)

// Sentinel errors of the value parsers; the returned errors wrap them.
var (
	ErrInvalidDuration = errors.New("invalid duration")
	ErrInvalidByteSize = errors.New("invalid byte size")
)

// maxQuoted bounds how much of a bad input an error message repeats.
const maxQuoted = 64

// quote quotes s for an error message, truncating long input.
func quote(s string) string {
	if len(s) > maxQuoted {
		return strconv.Quote(s[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}

// ParseDuration parses a Go duration such as "30s", "720h" or "1h30m"; "0"
// is zero. Negative values parse (Validate rejects them where they make no
// sense). A bare number other than 0 is an error: the unit is required.
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("%w: empty value (want e.g. \"30s\", \"5m\", \"1h30m\")", ErrInvalidDuration)
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		if _, nerr := strconv.ParseFloat(t, 64); nerr == nil {
			return 0, fmt.Errorf("%w %s: missing unit (want e.g. \"30s\", \"5m\", \"1h30m\")", ErrInvalidDuration, quote(s))
		}
		return 0, fmt.Errorf("%w %s (want e.g. \"30s\", \"5m\", \"1h30m\")", ErrInvalidDuration, quote(s))
	}
	return Duration(d), nil
}

// String formats d like time.Duration ("1h0m0s"); ParseDuration reads it back.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText implements encoding.TextUnmarshaler with ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalYAML implements yaml.Unmarshaler; errors carry the line.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "%w: want a scalar such as \"30s\"", ErrInvalidDuration)
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return nodeError(n, "%w", err)
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// byteUnits maps a lower-case unit to its multiplier.
var byteUnits = map[string]ByteSize{
	"": B, "b": B,
	"kb": KB, "mb": MB, "gb": GB, "tb": TB, "pb": PB,
	"kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB, "pib": PiB,
}

const byteUnitHelp = "want a whole number with an optional unit: B, KB, MB, GB, TB, PB (powers of 1000) or KiB, MiB, GiB, TiB, PiB (powers of 1024)"

// ParseByteSize parses a size such as "10MiB", "16KiB", "1GiB", "10MB"
// (decimal), "512" or "512B". Units are case-insensitive and may be separated
// from the number by spaces. Negative, fractional, overflowing and malformed
// values are errors wrapping ErrInvalidByteSize.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("%w: empty value (%s)", ErrInvalidByteSize, byteUnitHelp)
	}
	if t[0] == '-' {
		return 0, fmt.Errorf("%w %s: must not be negative", ErrInvalidByteSize, quote(s))
	}
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("%w %s: %s", ErrInvalidByteSize, quote(s), byteUnitHelp)
	}
	if i < len(t) && (t[i] == '.' || t[i] == ',') {
		return 0, fmt.Errorf("%w %s: fractional sizes are not supported (use a smaller unit)", ErrInvalidByteSize, quote(s))
	}
	n, err := strconv.ParseUint(t[:i], 10, 63)
	if err != nil {
		return 0, fmt.Errorf("%w %s: too large", ErrInvalidByteSize, quote(s))
	}
	mult, ok := byteUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok {
		return 0, fmt.Errorf("%w %s: unknown unit (%s)", ErrInvalidByteSize, quote(s), byteUnitHelp)
	}
	if n > uint64(math.MaxInt64/int64(mult)) { //nolint:gosec // mult is a positive byte unit, so MaxInt64/mult is positive
		return 0, fmt.Errorf("%w %s: too large", ErrInvalidByteSize, quote(s))
	}
	return ByteSize(n) * mult, nil
}

// String formats b with the largest unit that divides it exactly, binary
// units first ("10MiB", "1MB", "512B"); ParseByteSize reads it back.
func (b ByteSize) String() string {
	if b == 0 {
		return "0B"
	}
	if b < 0 { // only reachable when built in code; Validate rejects it
		return strconv.FormatInt(int64(b), 10) + "B"
	}
	for _, u := range [...]struct {
		name string
		size ByteSize
	}{
		{"PiB", PiB}, {"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB},
		{"PB", PB}, {"TB", TB}, {"GB", GB}, {"MB", MB}, {"KB", KB},
	} {
		if b%u.size == 0 {
			return strconv.FormatInt(int64(b/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// Int returns the size as an int (what fasthttp limits take).
func (b ByteSize) Int() int { return int(b) }

// UnmarshalText implements encoding.TextUnmarshaler with ParseByteSize.
func (b *ByteSize) UnmarshalText(p []byte) error {
	v, err := ParseByteSize(string(p))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalYAML implements yaml.Unmarshaler; errors carry the line.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "%w: want a scalar such as \"10MiB\"", ErrInvalidByteSize)
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return nodeError(n, "%w", err)
	}
	*b = v
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// nodeError returns a *yaml.TypeError so that the decoder keeps going and
// reports this problem, with its line, together with every other one.
func nodeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, fmt.Errorf(format, args...))}}
}
