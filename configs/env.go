package configs

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// EnvPrefix starts every configuration environment variable.
const EnvPrefix = "KEYGATE_"

// NonConfigEnv lists KEYGATE_* variables that are not configuration keys
// (they are read by the CLI, tests or benchmarks), so Load does not report
// them as unknown. Other packages may add to it from an init function.
var NonConfigEnv = map[string]bool{
	"KEYGATE_ADMIN_PASSWORD": true,
	"KEYGATE_ADMIN_URL":      true,
	"KEYGATE_USERNAME":       true,
	"KEYGATE_PASSWORD":       true,
	"KEYGATE_API_KEY":        true,
	"KEYGATE_CONFIG":         true,
	"KEYGATE_BENCH_1M":       true,
}

// secretNonConfigEnv are the KEYGATE_* variables that hold secrets whatever
// the configuration keys: the bootstrap admin password (serve), the
// credentials of the CLI subcommands, and the upstream-credential
// encryption key (DESIGN.md §12), listed here whether or not it is a
// configuration key.
var secretNonConfigEnv = map[string]bool{
	"KEYGATE_ADMIN_PASSWORD":           true,
	"KEYGATE_PASSWORD":                 true,
	"KEYGATE_API_KEY":                  true,
	"KEYGATE_UPSTREAM_SECRET":          true,
	"KEYGATE_UPSTREAM_CREDENTIALS_KEY": true,
}

// IsSecretEnv reports whether the environment variable name holds a secret
// that `keygate serve` scrubs from its environment once read: a
// configuration key whose last YAML element is password, secret or key (or
// ends in _password, _secret or _key: store.redis.password,
// tokens.signing.secret, authorization.external.secret, a future
// upstream_credentials.key), or one of the secret variables read outside
// the configuration. Paths to secret files (secret_file, key_file) are not
// secrets.
func IsSecretEnv(name string) bool {
	if secretNonConfigEnv[name] {
		return true
	}
	f, ok := envFields()[name]
	if !ok {
		return false
	}
	last := f.yamlPath[strings.LastIndexByte(f.yamlPath, '.')+1:]
	for _, s := range []string{"password", "secret", "key"} {
		if last == s || strings.HasSuffix(last, "_"+s) {
			return true
		}
	}
	return false
}

// envField is one configuration key reachable from the environment.
type envField struct {
	yamlPath string // e.g. "store.redis.addrs"
	index    []int  // reflect field index path from Config
}

var (
	durationType = reflect.TypeFor[Duration]()
	byteSizeType = reflect.TypeFor[ByteSize]()
	stringsType  = reflect.TypeFor[[]string]()
	routesType   = reflect.TypeFor[[]Route]()
	policiesType = reflect.TypeFor[[]RatePolicy]()
)

// envFields maps every KEYGATE_<PATH> name to its field. It is derived once
// from the yaml tags of Config, so a key added to Config gets an environment
// name without further work.
var envFields = sync.OnceValue(func() map[string]envField {
	m := make(map[string]envField)
	walkEnv(reflect.TypeFor[Config](), "", nil, m)
	return m
})

func walkEnv(t reflect.Type, path string, index []int, m map[string]envField) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		p := name
		if path != "" {
			p = path + "." + name
		}
		idx := append(append([]int(nil), index...), i)
		if f.Type.Kind() == reflect.Struct {
			walkEnv(f.Type, p, idx, m)
			continue
		}
		env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(p, ".", "_"))
		if prev, dup := m[env]; dup {
			// A programming error in Config's tags, caught by the tests.
			panic(fmt.Sprintf("configs: %s and %s share the environment name %s", prev.yamlPath, p, env))
		}
		m[env] = envField{yamlPath: p, index: idx}
	}
}

// EnvNames returns every configuration environment variable name, sorted,
// with the YAML path it sets (for help output and documentation).
func EnvNames() []string {
	fields := envFields()
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// EnvName returns the environment variable for a YAML path such as
// "store.redis.addrs", and whether that path is a key settable from the
// environment.
func EnvName(yamlPath string) (string, bool) {
	env := EnvPrefix + strings.ToUpper(strings.ReplaceAll(yamlPath, ".", "_"))
	f, ok := envFields()[env]
	return env, ok && f.yamlPath == yamlPath
}

// applyEnv overlays environ (os.Environ style "NAME=value") onto c and
// returns one problem per bad variable. An empty value leaves the key as it
// is. String keys (the only ones that hold secrets) never fail to parse, so
// a secret never appears in a problem.
func applyEnv(c *Config, environ []string) []string {
	fields := envFields()
	var problems []string
	// Apply in sorted order so that problems come out deterministically.
	vars := make(map[string]string)
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		vars[name] = value
	}
	names := make([]string, 0, len(vars))
	for name := range vars {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		value := vars[name]
		f, ok := fields[name]
		if !ok {
			if !NonConfigEnv[name] {
				problems = append(problems, "unknown environment variable "+name)
			}
			continue
		}
		if strings.TrimSpace(value) == "" {
			continue
		}
		v := reflect.ValueOf(c).Elem().FieldByIndex(f.index)
		if err := setFromEnv(v, value); err != nil {
			problems = append(problems, fmt.Sprintf("%s (%s): %v", name, f.yamlPath, err))
		}
	}
	return problems
}

// setFromEnv parses value into v according to v's type.
func setFromEnv(v reflect.Value, value string) error {
	switch t := v.Type(); {
	case t == durationType:
		d, err := ParseDuration(value)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(d))
	case t == byteSizeType:
		b, err := ParseByteSize(value)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(b))
	case t == stringsType:
		list, err := parseList(value)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(list))
	case t == routesType:
		routes, err := decodeRoutes(value)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(routes))
	case t == policiesType:
		pols, err := decodeList[RatePolicy](value, "rate-limit policies")
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(pols))
	default:
		switch t.Kind() {
		case reflect.String:
			v.SetString(value)
		case reflect.Bool:
			b, err := strconv.ParseBool(strings.TrimSpace(value))
			if err != nil {
				return fmt.Errorf("%s is not a boolean (want true or false)", quote(value))
			}
			v.SetBool(b)
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			n, err := strconv.ParseInt(strings.TrimSpace(value), 10, t.Bits())
			if err != nil {
				return fmt.Errorf("%s is not an integer of %d bits", quote(value), t.Bits())
			}
			v.SetInt(n)
		default:
			// Only reachable if Config gains a field type this switch does
			// not know; the tests set every environment name.
			return fmt.Errorf("unsupported field type %s", t)
		}
	}
	return nil
}

// parseList reads a list value: comma-separated ("a, b"), or a YAML/JSON
// flow sequence when it starts with '[' (`["a", "b"]`).
func parseList(value string) ([]string, error) {
	if t := strings.TrimSpace(value); strings.HasPrefix(t, "[") {
		var list []string
		if err := yaml.Unmarshal([]byte(t), &list); err != nil {
			return nil, fmt.Errorf("want a comma-separated list or a YAML/JSON list of strings: %s", yamlErrorText(err))
		}
		return list, nil
	}
	return splitList(value), nil
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty elements.
func splitList(s string) []string {
	parts := strings.Split(s, ",")
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// decodeRoutes reads KEYGATE_ROUTES: a YAML (or JSON) list of routes, decoded
// as strictly as the file.
// decodeList reads a YAML or JSON list of T strictly.
func decodeList[T any](value, what string) ([]T, error) {
	dec := yaml.NewDecoder(bytes.NewReader([]byte(value)))
	dec.KnownFields(true)
	var out []T
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("want a YAML or JSON list of %s: %s", what, yamlErrorText(err))
	}
	return out, nil
}

func decodeRoutes(value string) ([]Route, error) {
	dec := yaml.NewDecoder(bytes.NewReader([]byte(value)))
	dec.KnownFields(true)
	var routes []Route
	if err := dec.Decode(&routes); err != nil {
		return nil, fmt.Errorf("want a YAML or JSON list of routes: %s", yamlErrorText(err))
	}
	return routes, nil
}
