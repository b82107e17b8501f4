package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the YAML file at path (none when path is ""), overlays the
// KEYGATE_* variables of environ (os.Environ style), fills per-route defaults
// and validates. An unknown YAML key is an error naming it and its line; an
// unknown KEYGATE_* variable (not in NonConfigEnv) is an error too. Problems
// are returned as a *ValidationError: YAML problems (each with its line) stop
// the load; bad environment values and validation problems are reported
// together. Failing to read the file is returned as is (errors.Is
// os.ErrNotExist works).
func Load(path string, environ []string) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil { //nolint:gosec // the path is the operator's (flag or config), not a client's
			return nil, fmt.Errorf("configs: read config file: %w", err)
		}
	}
	return load(path, data, environ)
}

// LoadBytes is Load with the YAML document given as bytes (empty: none).
// data is not retained.
func LoadBytes(data []byte, environ []string) (*Config, error) {
	return load("", data, environ)
}

func load(name string, data []byte, environ []string) (*Config, error) {
	c := Default()
	if err := decodeYAML(c, data); err != nil {
		// One problem per line of the decoder's report, each naming its line.
		lines := strings.Split(err.Error(), "\n")
		if name != "" {
			for i, l := range lines {
				lines[i] = name + ": " + l
			}
		}
		return nil, &ValidationError{Problems: lines}
	}
	problems := applyEnv(c, environ)
	c.Normalize()
	if err := c.Validate(); err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return nil, err
		}
		problems = append(problems, ve.Problems...)
	}
	if len(problems) > 0 {
		return nil, &ValidationError{Problems: problems}
	}
	return c, nil
}

// decodeYAML decodes one strict YAML document onto c, keeping c's values for
// keys the document does not mention.
func decodeYAML(c *Config, data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) { // only comments
			return nil
		}
		return errors.New(yamlErrorText(err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document (want a single mapping)")
	}
	return nil
}

var (
	unknownFieldRe = regexp.MustCompile(`field (\S+) not found in type \S+`)
	yamlTypeRe     = regexp.MustCompile(`into configs\.\w+|into \[\]configs\.\w+`)
)

// yamlErrorText turns a yaml.v3 error into one line per problem, naming
// unknown keys plainly ("line 3: unknown key \"lisen\"").
func yamlErrorText(err error) string {
	var te *yaml.TypeError
	var lines []string
	if errors.As(err, &te) {
		lines = te.Errors
	} else {
		lines = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		l = unknownFieldRe.ReplaceAllStringFunc(l, func(m string) string {
			return "unknown key " + strconv.Quote(unknownFieldRe.FindStringSubmatch(m)[1])
		})
		l = yamlTypeRe.ReplaceAllStringFunc(l, func(m string) string {
			if strings.Contains(m, "[]") {
				return "into a list"
			}
			return "into a mapping"
		})
		out[i] = l
	}
	return strings.Join(out, "\n")
}

// Normalize fills the per-route defaults (auth "required", timeout 30s, name
// "route<index>"), upper-cases route methods and lower-cases route hosts,
// and reads limits.max_body_in_flight 0 as its default. Load calls it; call
// it yourself before Validate on a Config built in code. Components (proxy,
// admin, the token endpoint) trust a normalised, valid Config and apply no
// default of their own.
func (c *Config) Normalize() {
	if c.Limits.MaxBodyInFlight == 0 {
		c.Limits.MaxBodyInFlight = Default().Limits.MaxBodyInFlight
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Name == "" {
			r.Name = "route" + strconv.Itoa(i)
		}
		if r.Auth == "" {
			r.Auth = DefaultRouteAuth
		}
		if r.Timeout == 0 {
			r.Timeout = DefaultRouteTimeout
		}
		r.Host = strings.ToLower(strings.TrimSpace(r.Host))
		for j, m := range r.Methods {
			r.Methods[j] = strings.ToUpper(strings.TrimSpace(m))
		}
	}
}

// Clone returns a deep copy of c that shares no slices with it.
func (c *Config) Clone() *Config {
	n := *c
	n.Admin.MetricsRoles = slices.Clone(c.Admin.MetricsRoles)
	n.Store.Redis.Addrs = slices.Clone(c.Store.Redis.Addrs)
	n.Auth.Methods = slices.Clone(c.Auth.Methods)
	n.TrustedProxies = slices.Clone(c.TrustedProxies)
	n.ForwardAuth.TrustedProxies = slices.Clone(c.ForwardAuth.TrustedProxies)
	n.ForwardAuth.VerifyRoles = slices.Clone(c.ForwardAuth.VerifyRoles)
	n.Headers.KeepOverrideHeaders = slices.Clone(c.Headers.KeepOverrideHeaders)
	if c.Routes != nil {
		n.Routes = make([]Route, len(c.Routes))
		for i, r := range c.Routes {
			r.Upstreams = slices.Clone(r.Upstreams)
			r.Roles = slices.Clone(r.Roles)
			r.Methods = slices.Clone(r.Methods)
			n.Routes[i] = r
		}
	}
	return &n
}

// RedactedValue marks a secret that Redacted replaced.
const RedactedValue = "REDACTED"

// Redacted returns a deep copy of c with every secret (token signing secret,
// Redis password, external authorizer secret) replaced by "REDACTED", fit to
// log or to show on the admin API. File paths are kept.
func (c *Config) Redacted() *Config {
	n := c.Clone()
	for _, s := range []*string{&n.Tokens.Signing.Secret, &n.Store.Redis.Password, &n.Authorization.External.Secret} {
		if *s != "" {
			*s = RedactedValue
		}
	}
	return n
}
