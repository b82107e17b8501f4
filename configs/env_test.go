package configs

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var routeEnv = `KEYGATE_ROUTES=[{"path_prefix": "/", "upstreams": ["http://127.0.0.1:9000"]}]`

func TestEnvOverrides(t *testing.T) {
	tests := []struct {
		name string
		env  string
		get  func(*Config) any
		want any
	}{
		{"string", "KEYGATE_LISTEN=127.0.0.1:7000", func(c *Config) any { return c.Listen }, "127.0.0.1:7000"},
		{"nested string", "KEYGATE_ADMIN_LISTEN=127.0.0.1:7001", func(c *Config) any { return c.Admin.Listen }, "127.0.0.1:7001"},
		{"enum", "KEYGATE_STORE_DRIVER=redis", func(c *Config) any { return c.Store.Driver }, "redis"},
		{"secret", "KEYGATE_TOKENS_SIGNING_SECRET=s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t", func(c *Config) any { return c.Tokens.Signing.Secret }, "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"},
		{"key with underscore", "KEYGATE_STORE_REDIS_KEY_PREFIX=app:", func(c *Config) any { return c.Store.Redis.KeyPrefix }, "app:"},
		{"int", "KEYGATE_LIMITS_CONCURRENCY=42", func(c *Config) any { return c.Limits.Concurrency }, 42},
		{"int64", "KEYGATE_CACHE_MAX_ENTRIES= 7 ", func(c *Config) any { return c.Cache.MaxEntries }, int64(7)},
		{"bool", "KEYGATE_LOG_ACCESS=true", func(c *Config) any { return c.Log.Access }, true},
		{"bool 1", "KEYGATE_LOG_ACCESS=1", func(c *Config) any { return c.Log.Access }, true},
		{"admin pprof", "KEYGATE_ADMIN_PPROF=true", func(c *Config) any { return c.Admin.Pprof }, true},
		{"duration", "KEYGATE_CACHE_TTL=90s", func(c *Config) any { return c.Cache.TTL }, Duration(90 * time.Second)},
		{"duration zero", "KEYGATE_CACHE_NEGATIVE_TTL=0", func(c *Config) any { return c.Cache.NegativeTTL }, Duration(0)},
		{"byte size", "KEYGATE_LIMITS_MAX_BODY=1MiB", func(c *Config) any { return c.Limits.MaxBody }, MiB},
		{"byte size decimal", "KEYGATE_LIMITS_MAX_HEADER=32kb", func(c *Config) any { return c.Limits.MaxHeader }, 32 * KB},
		{"list", "KEYGATE_STORE_REDIS_ADDRS=10.0.0.1:6379, 10.0.0.2:6379,", func(c *Config) any { return c.Store.Redis.Addrs }, []string{"10.0.0.1:6379", "10.0.0.2:6379"}},
		{"list json", `KEYGATE_STORE_REDIS_ADDRS=["10.0.0.1:6379", "10.0.0.2:6379"]`, func(c *Config) any { return c.Store.Redis.Addrs }, []string{"10.0.0.1:6379", "10.0.0.2:6379"}},
		{"list yaml flow", "KEYGATE_AUTH_METHODS= [basic, bearer]", func(c *Config) any { return c.Auth.Methods }, []string{"basic", "bearer"}},
		{"list one", "KEYGATE_AUTH_METHODS=bearer", func(c *Config) any { return c.Auth.Methods }, []string{"bearer"}},
		{"list cidrs", "KEYGATE_TRUSTED_PROXIES=10.0.0.0/8,192.168.1.1", func(c *Config) any { return c.TrustedProxies }, []string{"10.0.0.0/8", "192.168.1.1"}},
		{"forward auth listen", "KEYGATE_FORWARD_AUTH_LISTEN=127.0.0.1:8082", func(c *Config) any { return c.ForwardAuth.Listen }, "127.0.0.1:8082"},
		{"forward auth grpc", "KEYGATE_FORWARD_AUTH_GRPC_LISTEN=127.0.0.1:8083", func(c *Config) any { return c.ForwardAuth.GRPCListen }, "127.0.0.1:8083"},
		{"forward auth proxies", "KEYGATE_FORWARD_AUTH_TRUSTED_PROXIES=10.0.0.0/8", func(c *Config) any { return c.ForwardAuth.TrustedProxies }, []string{"10.0.0.0/8"}},
		{"forward auth verify roles", "KEYGATE_FORWARD_AUTH_VERIFY_ROLES=verifier,ops", func(c *Config) any { return c.ForwardAuth.VerifyRoles }, []string{"verifier", "ops"}},
		{"empty value ignored", "KEYGATE_LISTEN=", func(c *Config) any { return c.Listen }, ":8080"},
		{"routes json", `KEYGATE_ROUTES=[{"name":"a","path_prefix":"/a","upstreams":["http://127.0.0.1:1"],"methods":["get"]},{"path_prefix":"/b","upstreams":["https://127.0.0.1:2"],"auth":"none"}]`,
			func(c *Config) any { return c.Routes }, []Route{
				{Name: "a", PathPrefix: "/a", Upstreams: []string{"http://127.0.0.1:1"}, Methods: []string{"GET"}, Auth: AuthRequired, Timeout: DefaultRouteTimeout},
				{Name: "route1", PathPrefix: "/b", Upstreams: []string{"https://127.0.0.1:2"}, Auth: AuthNone, Timeout: DefaultRouteTimeout},
			}},
		{"routes yaml", "KEYGATE_ROUTES=- name: y\n  path_prefix: /y\n  upstreams: [http://127.0.0.1:3]\n  timeout: 2s\n",
			func(c *Config) any { return c.Routes }, []Route{
				{Name: "y", PathPrefix: "/y", Upstreams: []string{"http://127.0.0.1:3"}, Auth: AuthRequired, Timeout: Duration(2 * time.Second)},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := []string{tt.env}
			if !strings.HasPrefix(tt.env, "KEYGATE_ROUTES=") {
				env = append(env, routeEnv)
			}
			c, err := LoadBytes(nil, env)
			if err != nil {
				t.Fatal(err)
			}
			if got := tt.get(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestEnvWinsOverYAML(t *testing.T) {
	doc := minimal + "listen: \":9000\"\ncache: {ttl: 5s}\n"
	c, err := LoadBytes([]byte(doc), []string{"KEYGATE_LISTEN=:9100", "PATH=/bin", "HOME=/root"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":9100" || c.Cache.TTL != Duration(5*time.Second) {
		t.Fatalf("listen %q ttl %s", c.Listen, c.Cache.TTL)
	}
	// KEYGATE_ROUTES replaces the file's routes entirely.
	c, err = LoadBytes([]byte(doc), []string{`KEYGATE_ROUTES=[{name: x, path_prefix: /x, upstreams: ["http://127.0.0.1:5"]}]`})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routes) != 1 || c.Routes[0].Name != "x" {
		t.Fatalf("routes %+v", c.Routes)
	}
}

func TestEnvErrors(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []string // exact problems, in order
	}{
		{"unknown variable", []string{"KEYGATE_FOO=1"}, []string{"unknown environment variable KEYGATE_FOO"}},
		{"misspelled key", []string{"KEYGATE_LISTEN_ADDR=:1"}, []string{"unknown environment variable KEYGATE_LISTEN_ADDR"}},
		{"struct is not a key", []string{"KEYGATE_ADMIN=x"}, []string{"unknown environment variable KEYGATE_ADMIN"}},
		{"route field is not a key", []string{"KEYGATE_ROUTES_0_NAME=x"}, []string{"unknown environment variable KEYGATE_ROUTES_0_NAME"}},
		{"unknown even when empty", []string{"KEYGATE_TYPO="}, []string{"unknown environment variable KEYGATE_TYPO"}},
		{"bad int", []string{"KEYGATE_LIMITS_CONCURRENCY=lots"}, []string{`KEYGATE_LIMITS_CONCURRENCY (limits.concurrency): "lots" is not an integer of 64 bits`}},
		{"bad bool", []string{"KEYGATE_LOG_ACCESS=yes"}, []string{`KEYGATE_LOG_ACCESS (log.access): "yes" is not a boolean (want true or false)`}},
		{"bad admin pprof", []string{"KEYGATE_ADMIN_PPROF=on"}, []string{`KEYGATE_ADMIN_PPROF (admin.pprof): "on" is not a boolean (want true or false)`}},
		{"bad duration", []string{"KEYGATE_CACHE_TTL=60"}, []string{`KEYGATE_CACHE_TTL (cache.ttl): invalid duration "60": missing unit (want e.g. "30s", "5m", "1h30m")`}},
		{"bad byte size", []string{"KEYGATE_LIMITS_MAX_BODY=10 bananas"}, []string{`KEYGATE_LIMITS_MAX_BODY (limits.max_body): invalid byte size "10 bananas": unknown unit (` + byteUnitHelp + ")"}},
		{"bad list", []string{"KEYGATE_AUTH_METHODS=[basic, [x]]"}, []string{"KEYGATE_AUTH_METHODS (auth.methods): want a comma-separated list or a YAML/JSON list of strings: line 1: cannot unmarshal !!seq into string"}},
		{"several, sorted", []string{"KEYGATE_ZZZ=1", "KEYGATE_AAA=1", "KEYGATE_LOG_ACCESS_SAMPLE=x"}, []string{
			"unknown environment variable KEYGATE_AAA",
			`KEYGATE_LOG_ACCESS_SAMPLE (log.access_sample): "x" is not an integer of 64 bits`,
			"unknown environment variable KEYGATE_ZZZ",
		}},
		{"env and validation together", []string{"KEYGATE_FOO=1", "KEYGATE_LOG_LEVEL=loud"}, []string{
			"unknown environment variable KEYGATE_FOO",
			`log.level: "loud" is not one of debug, info, warn, error`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes([]byte(minimal), tt.env)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want *ValidationError", err)
			}
			if !slices.Equal(ve.Problems, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(ve.Problems, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestEnvRoutesErrors(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"not a list", `{"name": "x"}`, "want a YAML or JSON list of routes"},
		{"unknown route key", `[{"path_prefix": "/", "upstream": ["x"]}]`, `unknown key "upstream"`},
		{"bad duration", `[{"timeout": "forever"}]`, `invalid duration "forever"`},
		{"syntax", `[{`, "KEYGATE_ROUTES (routes): want a YAML or JSON list of routes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes(nil, []string{"KEYGATE_ROUTES=" + tt.value})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	// An empty list replaces the routes, then fails validation.
	_, err := LoadBytes([]byte(minimal), []string{"KEYGATE_ROUTES=[]"})
	var ve *ValidationError
	if !errors.As(err, &ve) || !slices.Equal(ve.Problems, []string{"routes: at least one route is required"}) {
		t.Fatalf("err = %v", err)
	}
}

func TestNonConfigEnvIgnored(t *testing.T) {
	var env []string
	for name := range NonConfigEnv {
		env = append(env, name+"=whatever")
	}
	env = append(env, "keygate_listen=lowercase-is-not-ours", "KEYGATEX=1", "NOEQUALS")
	if _, err := LoadBytes([]byte(minimal), env); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"KEYGATE_ADMIN_PASSWORD", "KEYGATE_ADMIN_URL", "KEYGATE_USERNAME", "KEYGATE_PASSWORD", "KEYGATE_API_KEY", "KEYGATE_CONFIG", "KEYGATE_BENCH_1M"} {
		if !NonConfigEnv[name] {
			t.Errorf("%s missing from NonConfigEnv", name)
		}
	}
}

// TestEnvNamesCoverEveryKey sets every derived variable to a valid value and
// checks it landed, so a new Config field gets a working env name or fails here.
func TestEnvNamesCoverEveryKey(t *testing.T) {
	names := EnvNames()
	for _, want := range []string{
		"KEYGATE_LISTEN", "KEYGATE_ADMIN_LISTEN", "KEYGATE_ADMIN_METRICS_ROLES", "KEYGATE_ADMIN_PPROF", "KEYGATE_SHUTDOWN_TIMEOUT",
		"KEYGATE_LIMITS_MAX_BODY", "KEYGATE_TLS_CERT_FILE", "KEYGATE_STORE_DRIVER", "KEYGATE_STORE_BOLT_PATH",
		"KEYGATE_STORE_REDIS_ADDRS", "KEYGATE_STORE_REDIS_PASSWORD", "KEYGATE_STORE_OUTAGE_GRACE", "KEYGATE_STORE_STARTUP_TIMEOUT",
		"KEYGATE_CACHE_TTL", "KEYGATE_AUTH_FAILURES_PER_IP_PER_MINUTE", "KEYGATE_API_KEYS_MAX_LIFETIME",
		"KEYGATE_TOKENS_SIGNING_SECRET", "KEYGATE_TOKENS_SIGNING_ALGORITHM", "KEYGATE_HEADERS_KEY_ID",
		"KEYGATE_TRUSTED_PROXIES", "KEYGATE_AUTHORIZATION_EXTERNAL_ENDPOINT", "KEYGATE_LOG_ACCESS_SAMPLE",
		"KEYGATE_ROUTES",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("EnvNames() lacks %s", want)
		}
	}
	if name, ok := EnvName("store.redis.key_prefix"); !ok || name != "KEYGATE_STORE_REDIS_KEY_PREFIX" {
		t.Errorf("EnvName = %q, %v", name, ok)
	}
	if _, ok := EnvName("store.redis"); ok {
		t.Error("EnvName(store.redis) should not be a key")
	}
	for _, name := range names {
		if NonConfigEnv[name] {
			t.Errorf("%s is both a config key and in NonConfigEnv", name)
		}
		f := envFields()[name]
		c := Default()
		v := reflect.ValueOf(c).Elem().FieldByIndex(f.index)
		sample := map[reflect.Type]string{durationType: "7s", byteSizeType: "7KiB", stringsType: "a,b", routesType: "[]", policiesType: `[{name: p, requests: 1, per: 1s}]`}[v.Type()]
		if sample == "" {
			sample = map[reflect.Kind]string{reflect.String: "sample", reflect.Bool: "true", reflect.Int: "7", reflect.Int64: "7"}[v.Kind()]
		}
		if err := setFromEnv(v, sample); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if v.IsZero() && v.Type() != routesType {
			t.Errorf("%s=%s left %s zero", name, sample, f.yamlPath)
		}
	}
}

func TestIsSecretEnv(t *testing.T) {
	secret := []string{"KEYGATE_STORE_REDIS_PASSWORD", "KEYGATE_TOKENS_SIGNING_SECRET", "KEYGATE_AUTHORIZATION_EXTERNAL_SECRET",
		"KEYGATE_ADMIN_PASSWORD", "KEYGATE_PASSWORD", "KEYGATE_API_KEY", "KEYGATE_UPSTREAM_SECRET", "KEYGATE_UPSTREAM_CREDENTIALS_KEY"}
	notSecret := []string{"KEYGATE_STORE_REDIS_KEY_PREFIX", "KEYGATE_STORE_REDIS_USERNAME", "KEYGATE_HEADERS_KEY_ID",
		"KEYGATE_TLS_KEY_FILE", "KEYGATE_TOKENS_SIGNING_SECRET_FILE", "KEYGATE_TOKENS_SIGNING_PRIVATE_KEY_FILE",
		"KEYGATE_ADMIN_GENERATED_PASSWORD_FILE", "KEYGATE_LISTEN", "KEYGATE_CONFIG", "KEYGATE_NOPE", "PATH"}
	for _, n := range secret {
		if !IsSecretEnv(n) {
			t.Errorf("IsSecretEnv(%s) = false, want true", n)
		}
	}
	for _, n := range notSecret {
		if IsSecretEnv(n) {
			t.Errorf("IsSecretEnv(%s) = true, want false", n)
		}
	}
	// The rule works on names: every key it catches is a string.
	for _, n := range EnvNames() {
		if IsSecretEnv(n) {
			if k := reflect.ValueOf(Config{}).FieldByIndex(envFields()[n].index).Kind(); k != reflect.String {
				t.Errorf("%s is caught as a secret but is a %s", n, k)
			}
		}
	}
}
