package configs

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// minimal is the smallest valid document: the defaults plus one route.
const minimal = `
routes:
  - path_prefix: /
    upstreams: ["http://127.0.0.1:9000"]
`

func TestDefaultMatchesDesign(t *testing.T) {
	want := &Config{
		Listen:          ":8080",
		Admin:           Admin{Listen: "127.0.0.1:8081", Pprof: false, UI: true},
		ShutdownTimeout: Duration(15 * time.Second),
		Limits: Limits{
			MaxBody: 10 << 20, MaxHeader: 16 << 10, Concurrency: 10000,
			ReadTimeout: Duration(30 * time.Second), WriteTimeout: Duration(30 * time.Second),
			IdleTimeout: Duration(60 * time.Second), MaxBodyInFlight: 64 << 20,
		},
		Store: Store{
			Driver: "bolt",
			Bolt:   Bolt{Path: "./data/keygate.db"},
			Redis: Redis{
				Addrs: []string{"127.0.0.1:6379"}, KeyPrefix: "kg:",
				Timeout: Duration(3 * time.Second),
			},
			OutageGrace:    Duration(5 * time.Minute),
			StartupTimeout: Duration(60 * time.Second),
		},
		Cache: Cache{MaxEntries: 100000, TTL: Duration(60 * time.Second), NegativeTTL: Duration(5 * time.Second)},
		Auth: Auth{
			Realm: "keygate", Methods: []string{"basic", "api_key", "bearer"},
			MaxHashConcurrency: 2, Failures: Failures{PerIPPerMinute: 30, PerUserPerMinute: 10},
		},
		APIKeys: APIKeys{MaxLifetime: Duration(8760 * time.Hour), Retention: Duration(168 * time.Hour), ExpiryWarning: Duration(168 * time.Hour)},
		Tokens: Tokens{
			Issuer: "keygate", Audience: "keygate", Lifetime: Duration(time.Hour),
			RefreshLifetime: Duration(24 * time.Hour), Leeway: Duration(5 * time.Second),
			Path: "/oauth/token", Signing: Signing{Algorithm: "HS256"},
		},
		Headers: Headers{
			User: "X-Auth-User", Account: "X-Auth-Account", Roles: "X-Auth-Roles",
			Method: "X-Auth-Method", KeyID: "X-Auth-Key-Id", KeyName: "X-Auth-Key-Name",
			RequestID: "X-Request-Id",
		},
		Authorization: Authorization{
			Handler: "native",
			External: External{
				Endpoint: "http://127.0.0.1:8089", Timeout: Duration(200 * time.Millisecond),
				CacheTTL: Duration(10 * time.Second),
			},
		},
		ForwardAuth: ForwardAuth{TrustedProxies: []string{"127.0.0.0/8", "::1"}},
		Log:         Log{Level: "info", Access: false, AccessSample: 1},
		RateLimits:  RateLimits{Instances: 1},
	}
	got := Default()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Default() =\n%+v\nwant\n%+v", got, want)
	}
	// Fresh value each time: mutating one must not change the next.
	got.Auth.Methods[0] = "changed"
	got.Store.Redis.Addrs[0] = "changed"
	if again := Default(); !reflect.DeepEqual(again, want) {
		t.Fatal("Default() shares memory between calls")
	}
	// Routes are required, so the bare defaults do not validate.
	err := Default().Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || !strings.HasPrefix(ve.Problems[0], "routes: ") {
		t.Fatalf("Default().Validate() = %v, want only the routes problem", err)
	}
}

func TestLoadMinimalAppliesRouteDefaults(t *testing.T) {
	c, err := LoadBytes([]byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Routes = []Route{{
		Name: "route0", PathPrefix: "/", Upstreams: []string{"http://127.0.0.1:9000"},
		Auth: AuthRequired, Timeout: Duration(30 * time.Second),
	}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", c, want)
	}
}

func TestLoadExampleFile(t *testing.T) {
	c, err := Load("keygate.yaml", nil)
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	// The example documents the defaults: apart from its route it must equal them.
	want := Default()
	want.Admin.MetricsRoles = []string{}
	want.TrustedProxies = []string{}
	want.Headers.KeepOverrideHeaders = []string{}
	want.ForwardAuth.VerifyRoles = []string{}
	want.RateLimits.Policies = []RatePolicy{}
	want.Routes = []Route{{
		Name: "api", PathPrefix: "/", Upstreams: []string{"http://127.0.0.1:9000"},
		Auth: AuthRequired, Roles: []string{}, Methods: []string{}, Timeout: Duration(30 * time.Second),
		ForwardKeyMetadata: []string{},
	}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("example differs from defaults:\n%+v\nwant\n%+v", c, want)
	}
}

func TestLoadYAMLOverrides(t *testing.T) {
	doc := `
listen: "0.0.0.0:9090"
admin: {listen: "127.0.0.1:9091", metrics_roles: [ops], pprof: true}
shutdown_timeout: 1m30s
limits: {max_body: 1GiB, max_header: 8kib, concurrency: 5, read_timeout: 2s}
store:
  driver: redis
  redis: {addrs: ["10.0.0.1:6379", "10.0.0.2:6379"], db: 3, key_prefix: "x:", pool_size: 7}
cache: {max_entries: 10, negative_ttl: "0"}
auth: {realm: corp, methods: [api_key]}
api_keys: {max_lifetime: 0}
tokens: {issuer: iss, lifetime: 15m}
headers: {user: X-User}
trusted_proxies: ["10.0.0.0/8", "::1"]
authorization: {handler: external, external: {endpoint: "https://authz.local:8443/check"}}
log: {level: debug, access: true, access_sample: 10}
routes:
  - name: api
    host: API.Example.COM
    path_prefix: /api/v1
    upstreams: ["http://127.0.0.1:9000", "https://[::1]:9001/base"]
    auth: optional
    roles: [reader]
    methods: [get, Post]
    timeout: 5s
    strip_prefix: /api
    forward_authorization: true
  - path_prefix: /public
    upstreams: ["http://127.0.0.1:9002"]
    auth: none
`
	c, err := LoadBytes([]byte(doc), nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"listen", c.Listen, "0.0.0.0:9090"},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:9091"},
		{"admin.metrics_roles", c.Admin.MetricsRoles, []string{"ops"}},
		{"admin.pprof", c.Admin.Pprof, true},
		{"shutdown_timeout", c.ShutdownTimeout, Duration(90 * time.Second)},
		{"limits.max_body", c.Limits.MaxBody, GiB},
		{"limits.max_header", c.Limits.MaxHeader, 8 * KiB},
		{"limits.concurrency", c.Limits.Concurrency, 5},
		{"limits.read_timeout", c.Limits.ReadTimeout, Duration(2 * time.Second)},
		{"limits.write_timeout kept", c.Limits.WriteTimeout, Duration(30 * time.Second)},
		{"store.driver", c.Store.Driver, "redis"},
		{"store.redis.addrs", c.Store.Redis.Addrs, []string{"10.0.0.1:6379", "10.0.0.2:6379"}},
		{"store.redis.db", c.Store.Redis.DB, 3},
		{"store.redis.timeout kept", c.Store.Redis.Timeout, Duration(3 * time.Second)},
		{"store.redis.pool_size", c.Store.Redis.PoolSize, 7},
		{"cache.max_entries", c.Cache.MaxEntries, int64(10)},
		{"cache.negative_ttl", c.Cache.NegativeTTL, Duration(0)},
		{"cache.ttl kept", c.Cache.TTL, Duration(time.Minute)},
		{"auth.realm", c.Auth.Realm, "corp"},
		{"auth.methods", c.Auth.Methods, []string{"api_key"}},
		{"api_keys.max_lifetime", c.APIKeys.MaxLifetime, Duration(0)},
		{"tokens.issuer", c.Tokens.Issuer, "iss"},
		{"tokens.audience kept", c.Tokens.Audience, "keygate"},
		{"tokens.lifetime", c.Tokens.Lifetime, Duration(15 * time.Minute)},
		{"headers.user", c.Headers.User, "X-User"},
		{"headers.account kept", c.Headers.Account, "X-Auth-Account"},
		{"trusted_proxies", c.TrustedProxies, []string{"10.0.0.0/8", "::1"}},
		{"authorization.handler", c.Authorization.Handler, "external"},
		{"authorization.external.endpoint", c.Authorization.External.Endpoint, "https://authz.local:8443/check"},
		{"log.level", c.Log.Level, "debug"},
		{"log.access", c.Log.Access, true},
		{"log.access_sample", c.Log.AccessSample, 10},
		{"routes[0]", c.Routes[0], Route{
			Name: "api", Host: "api.example.com", PathPrefix: "/api/v1",
			Upstreams: []string{"http://127.0.0.1:9000", "https://[::1]:9001/base"},
			Auth:      AuthOptional, Roles: []string{"reader"}, Methods: []string{"GET", "POST"},
			Timeout: Duration(5 * time.Second), StripPrefix: "/api", ForwardAuthorization: true,
		}},
		{"routes[1]", c.Routes[1], Route{
			Name: "route1", PathPrefix: "/public", Upstreams: []string{"http://127.0.0.1:9002"},
			Auth: AuthNone, Timeout: DefaultRouteTimeout,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !reflect.DeepEqual(tt.got, tt.want) {
				t.Errorf("got %#v, want %#v", tt.got, tt.want)
			}
		})
	}
}

func TestLoadYAMLErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // substrings of the error
	}{
		{"unknown top-level key", minimal + "lisen: \":1\"\n", []string{`line 5: unknown key "lisen"`}},
		{"unknown nested key", "admin:\n  listne: x\n" + minimal, []string{`line 2: unknown key "listne"`}},
		{"unknown route key", "routes:\n  - path_prefix: /\n    upstream: [x]\n", []string{`line 3: unknown key "upstream"`}},
		{"two unknown keys both reported", "foo: 1\nbar: 2\n", []string{`line 1: unknown key "foo"`, `line 2: unknown key "bar"`}},
		{"bad duration", "cache: {ttl: 10}\n" + minimal, []string{"line 1", `invalid duration "10": missing unit`}},
		{"bad duration word", "shutdown_timeout: soon\n", []string{"line 1", `invalid duration "soon"`}},
		{"duration as list", "shutdown_timeout: [1s]\n", []string{"line 1", "want a scalar"}},
		{"bad byte size", "limits: {max_body: 10XB}\n", []string{"line 1", `invalid byte size "10XB": unknown unit`}},
		{"negative byte size", "limits:\n  max_header: -1\n", []string{"line 2", "must not be negative"}},
		{"bad int", "limits: {concurrency: many}\n", []string{"line 1", "cannot unmarshal"}},
		{"bad bool", "log: {access: maybe}\n", []string{"line 1", "cannot unmarshal"}},
		{"bad admin.pprof", "admin:\n  pprof: sometimes\n" + minimal, []string{"line 2", "cannot unmarshal"}},
		{"scalar document", "hello\n", []string{"cannot unmarshal", "into a mapping"}},
		{"list document", "- a\n", []string{"cannot unmarshal", "into a mapping"}},
		{"routes not a list", "routes: {name: x}\n", []string{"line 1", "into a list"}},
		{"syntax error", "listen: [\n", []string{"line"}},
		{"tab indentation", "admin:\n\tlisten: x\n", []string{"line"}},
		{"two documents", minimal + "---\nlisten: \":1\"\n", []string{"more than one YAML document"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadBytes([]byte(tt.doc), nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadEmptyDocuments(t *testing.T) {
	env := []string{`KEYGATE_ROUTES=[{path_prefix: /, upstreams: ["http://127.0.0.1:1"]}]`}
	for _, doc := range []string{"", "   \n", "# only a comment\n", "---\n", "~\n"} {
		c, err := LoadBytes([]byte(doc), env)
		if err != nil {
			t.Errorf("%q: %v", doc, err)
			continue
		}
		if c.Listen != ":8080" || len(c.Routes) != 1 {
			t.Errorf("%q: defaults lost: %+v", doc, c)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(good, nil); err != nil {
		t.Fatalf("Load(good): %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("nope: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad, nil); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), `unknown key "nope"`) {
		t.Fatalf("Load(bad) = %v, want the file name and the key", err)
	}
	_, err := Load(bad, nil)
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0] != bad+`: line 1: unknown key "nope"` {
		t.Fatalf("Load(bad) = %#v, want one problem naming file, line and key", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want ErrNotExist", err)
	}
	// No file at all: defaults + env.
	c, err := Load("", []string{"KEYGATE_ROUTES=- {path_prefix: /, upstreams: [\"http://127.0.0.1:1\"]}"})
	if err != nil || len(c.Routes) != 1 {
		t.Fatalf(`Load("") = %v, %v`, c, err)
	}
}

// admin.pprof is off unless the file or KEYGATE_ADMIN_PPROF turns it on; the
// environment wins over the file either way.
func TestAdminPprofKey(t *testing.T) {
	tests := []struct {
		name string
		yaml string // under admin:
		env  []string
		want bool
	}{
		{"default", "", nil, false},
		{"yaml true", "pprof: true", nil, true},
		{"yaml false", "pprof: false", nil, false},
		{"env true", "", []string{"KEYGATE_ADMIN_PPROF=true"}, true},
		{"env 1", "", []string{"KEYGATE_ADMIN_PPROF=1"}, true},
		{"env TRUE", "", []string{"KEYGATE_ADMIN_PPROF=TRUE"}, true},
		{"env false over yaml true", "pprof: true", []string{"KEYGATE_ADMIN_PPROF=false"}, false},
		{"env true over yaml false", "pprof: false", []string{"KEYGATE_ADMIN_PPROF=true"}, true},
		{"empty env keeps yaml", "pprof: true", []string{"KEYGATE_ADMIN_PPROF="}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := minimal
			if tt.yaml != "" {
				doc = "admin:\n  " + tt.yaml + "\n" + minimal
			}
			c, err := LoadBytes([]byte(doc), tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.Admin.Pprof != tt.want {
				t.Errorf("admin.pprof = %v, want %v", c.Admin.Pprof, tt.want)
			}
			if c.Clone().Admin.Pprof != tt.want {
				t.Error("Clone lost admin.pprof")
			}
		})
	}
}

// Normalize reads a zero limits.max_body_in_flight as its default (the proxy
// applies none of its own), from YAML and from the environment alike, and
// keeps a value that is set.
func TestNormalizeBodyInFlight(t *testing.T) {
	for _, tc := range []struct {
		name    string
		yaml    string
		environ []string
		want    ByteSize
	}{
		{"unset", minimal, nil, 64 * MiB},
		{"zero in yaml", minimal + "limits:\n  max_body_in_flight: 0\n", nil, 64 * MiB},
		{"zero in env", minimal, []string{"KEYGATE_LIMITS_MAX_BODY_IN_FLIGHT=0"}, 64 * MiB},
		{"set", minimal + "limits:\n  max_body_in_flight: 1MiB\n", nil, MiB},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := LoadBytes([]byte(tc.yaml), tc.environ)
			if err != nil {
				t.Fatal(err)
			}
			if c.Limits.MaxBodyInFlight != tc.want {
				t.Fatalf("max_body_in_flight %v, want %v", c.Limits.MaxBodyInFlight, tc.want)
			}
		})
	}
}
