package configs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// validConfig returns a normalised config that passes Validate.
func validConfig() *Config {
	c := Default()
	c.Routes = []Route{{PathPrefix: "/", Upstreams: []string{"http://127.0.0.1:9000"}}}
	c.Normalize()
	return c
}

// problemsOf validates c and returns its problems (nil when valid).
func problemsOf(t *testing.T, c *Config) []string {
	t.Helper()
	err := c.Validate()
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate returned %T, want *ValidationError", err)
	}
	if got := ve.Error(); got != strings.Join(ve.Problems, "\n") {
		t.Fatalf("Error() = %q, want problems one per line", got)
	}
	return ve.Problems
}

func TestValidateSingleProblems(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file.pem")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // the one expected problem; "" means valid
	}{
		// listeners
		{"listen port 0 ok", func(c *Config) { c.Listen = "127.0.0.1:0"; c.Admin.Listen = "127.0.0.1:0" }, ""},
		{"listen ipv6 ok", func(c *Config) { c.Listen = "[::1]:8080"; c.Admin.Listen = "localhost:8081" }, ""},
		{"listen empty", func(c *Config) { c.Listen = "" }, `listen: must not be empty (want host:port, e.g. ":8080")`},
		{"listen no port", func(c *Config) { c.Listen = "8080" }, `listen: "8080" is not host:port`},
		{"listen bad port", func(c *Config) { c.Listen = ":99999" }, `listen: ":99999" has an invalid port (want 0-65535)`},
		{"listen named port", func(c *Config) { c.Listen = ":http" }, `listen: ":http" has an invalid port (want 0-65535)`},
		{"listen bad host", func(c *Config) { c.Listen = "bad host:80" }, `listen: "bad host:80" has an invalid host`},
		{"admin listen bad", func(c *Config) { c.Admin.Listen = "localhost" }, `admin.listen: "localhost" is not host:port`},
		// overlapping listeners
		{"overlap wildcard", func(c *Config) { c.Admin.Listen = "127.0.0.1:8080" }, `admin.listen: "127.0.0.1:8080" overlaps listen ":8080" (same port on the same or a wildcard address)`},
		{"overlap same", func(c *Config) { c.Listen = "127.0.0.1:8081" }, `admin.listen: "127.0.0.1:8081" overlaps listen "127.0.0.1:8081" (same port on the same or a wildcard address)`},
		{"overlap 0.0.0.0", func(c *Config) { c.Listen = "0.0.0.0:8081" }, `admin.listen: "127.0.0.1:8081" overlaps listen "0.0.0.0:8081" (same port on the same or a wildcard address)`},
		{"overlap [::]", func(c *Config) { c.Listen = "[::]:8081" }, `admin.listen: "127.0.0.1:8081" overlaps listen "[::]:8081" (same port on the same or a wildcard address)`},
		{"overlap localhost", func(c *Config) { c.Listen = "localhost:8081" }, `admin.listen: "127.0.0.1:8081" overlaps listen "localhost:8081" (same port on the same or a wildcard address)`},
		{"overlap mapped v4", func(c *Config) { c.Listen = "[::ffff:127.0.0.1]:8081" }, `admin.listen: "127.0.0.1:8081" overlaps listen "[::ffff:127.0.0.1]:8081" (same port on the same or a wildcard address)`},
		{"no overlap other host", func(c *Config) { c.Listen = "10.0.0.1:8081" }, ""},
		{"no overlap other port", func(c *Config) { c.Admin.Listen = ":8081" }, ""},
		// durations and limits
		{"shutdown zero", func(c *Config) { c.ShutdownTimeout = 0 }, "shutdown_timeout: must be greater than 0 (got 0s)"},
		{"read timeout negative", func(c *Config) { c.Limits.ReadTimeout = Duration(-time.Second) }, "limits.read_timeout: must be greater than 0 (got -1s)"},
		{"max body zero", func(c *Config) { c.Limits.MaxBody = 0 }, "limits.max_body: must be greater than 0 (got 0B)"},
		{"concurrency zero", func(c *Config) { c.Limits.Concurrency = 0 }, "limits.concurrency: must be greater than 0 (got 0)"},
		{"cache ttl zero", func(c *Config) { c.Cache.TTL = 0 }, "cache.ttl: must be greater than 0 (got 0s)"},
		{"negative ttl zero ok", func(c *Config) { c.Cache.NegativeTTL = 0 }, ""},
		{"negative ttl negative", func(c *Config) { c.Cache.NegativeTTL = Duration(-1) }, "cache.negative_ttl: must not be negative (got -1ns)"},
		{"max entries", func(c *Config) { c.Cache.MaxEntries = -1 }, "cache.max_entries: must be greater than 0 (got -1)"},
		{"max lifetime zero ok", func(c *Config) { c.APIKeys.MaxLifetime = 0 }, ""},
		{"retention zero", func(c *Config) { c.APIKeys.Retention = 0 }, "api_keys.retention: must be greater than 0 (got 0s)"},
		{"expiry warning negative", func(c *Config) { c.APIKeys.ExpiryWarning = -1 }, "api_keys.expiry_warning: must not be negative (got -1ns)"},
		{"metadata name", func(c *Config) { c.Routes[0].ForwardKeyMetadata = []string{"te am"} }, "routes[0].forward_key_metadata[0]: \"te am\" is not a metadata name (1-64 characters [A-Za-z0-9_-])"},
		{"metadata twice", func(c *Config) { c.Routes[0].ForwardKeyMetadata = []string{"team", "team"} }, "routes[0].forward_key_metadata[1]: \"team\" is listed twice"},
		// tls
		{"tls half", func(c *Config) { c.TLS.CertFile = file }, "tls: cert_file and key_file must be set together"},
		{"tls ok", func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = file, file }, ""},
		{"tls missing file", func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = file, missing }, `tls.key_file: cannot read "` + missing + `": no such file or directory`},
		{"tls directory", func(c *Config) { c.TLS.CertFile, c.TLS.KeyFile = dir, file }, `tls.cert_file: "` + dir + `" is not a regular file`},
		// store
		{"driver", func(c *Config) { c.Store.Driver = "etcd" }, `store.driver: "etcd" is not one of bolt, redis`},
		{"bolt path", func(c *Config) { c.Store.Bolt.Path = "" }, "store.bolt.path: must not be empty"},
		{"redis ok", func(c *Config) { c.Store.Driver = "redis" }, ""},
		{"redis settings ignored for bolt", func(c *Config) { c.Store.Redis.Addrs = nil }, ""},
		{"redis no addrs", func(c *Config) { c.Store.Driver = "redis"; c.Store.Redis.Addrs = nil }, "store.redis.addrs: must list at least one host:port"},
		{"redis bad addr", func(c *Config) { c.Store.Driver = "redis"; c.Store.Redis.Addrs = []string{"redis"} }, `store.redis.addrs[0]: "redis" is not host:port`},
		{"redis no host", func(c *Config) { c.Store.Driver = "redis"; c.Store.Redis.Addrs = []string{":6379"} }, `store.redis.addrs[0]: ":6379" needs a host and a non-zero port`},
		{"redis prefix", func(c *Config) { c.Store.Driver = "redis"; c.Store.Redis.KeyPrefix = "" }, "store.redis.key_prefix: must not be empty"},
		{"redis prefix hash tag", func(c *Config) { c.Store.Driver = "redis"; c.Store.Redis.KeyPrefix = "{kg}:" }, `store.redis.key_prefix: "{kg}:" must not contain { or } (keygate sets the cluster hash tags)`},
		{"redis timeout", func(c *Config) { c.Store.Driver = "redis"; c.Store.Redis.Timeout = 0 }, "store.redis.timeout: must be greater than 0 (got 0s)"},
		{"redis db", func(c *Config) { c.Store.Driver = "redis"; c.Store.Redis.DB = -1 }, "store.redis.db: must not be negative (got -1)"},
		{"outage grace", func(c *Config) { c.Store.OutageGrace = Duration(-time.Minute) }, "store.outage_grace: must not be negative (got -1m0s)"},
		{"startup timeout", func(c *Config) { c.Store.StartupTimeout = Duration(-time.Second) }, "store.startup_timeout: must not be negative (got -1s)"},
		// auth
		{"realm empty", func(c *Config) { c.Auth.Realm = "" }, "auth.realm: must not be empty"},
		{"realm quote", func(c *Config) { c.Auth.Realm = `a"b` }, "auth.realm: must not contain quotes, backslashes or control characters"},
		{"realm newline", func(c *Config) { c.Auth.Realm = "a\r\nSet-Cookie: x" }, "auth.realm: must not contain quotes, backslashes or control characters"},
		{"methods unknown", func(c *Config) { c.Auth.Methods = []string{"basic", "digest"} }, `auth.methods[1]: "digest" is not one of basic, api_key, bearer`},
		{"methods duplicate", func(c *Config) { c.Auth.Methods = []string{"bearer", "basic", "bearer"} }, `auth.methods[2]: "bearer" is listed twice`},
		{"methods empty", func(c *Config) { c.Auth.Methods = nil }, "auth.methods: must list at least one of basic, api_key, bearer"},
		{"hash concurrency", func(c *Config) { c.Auth.MaxHashConcurrency = 0 }, "auth.max_hash_concurrency: must be at least 1 (got 0)"},
		{"failures negative", func(c *Config) { c.Auth.Failures.PerUserPerMinute = -1 }, "auth.failures.per_user_per_minute: must not be negative (got -1)"},
		// tokens
		{"algorithm", func(c *Config) { c.Tokens.Signing.Algorithm = "none" }, `tokens.signing.algorithm: "none" is not one of HS256, EdDSA, RS256`},
		{"algorithm case", func(c *Config) { c.Tokens.Signing.Algorithm = "hs256" }, `tokens.signing.algorithm: "hs256" is not one of HS256, EdDSA, RS256`},
		{"lifetime", func(c *Config) { c.Tokens.Lifetime = 0 }, "tokens.lifetime: must be greater than 0 (got 0s)"},
		{"refresh lifetime", func(c *Config) { c.Tokens.RefreshLifetime = 0 }, "tokens.refresh_lifetime: must be greater than 0 (got 0s)"},
		{"token path", func(c *Config) { c.Tokens.Path = "oauth/token" }, `tokens.path: "oauth/token" must start with /`},
		{"eddsa needs key", func(c *Config) { c.Tokens.Signing.Algorithm = "EdDSA" }, "tokens.signing.private_key_file: is required with EdDSA"},
		{"rs256 key ok", func(c *Config) { c.Tokens.Signing.Algorithm = "RS256"; c.Tokens.Signing.PrivateKeyFile = file }, ""},
		{"secret and file", func(c *Config) { c.Tokens.Signing.Secret = "hunter2hunter2"; c.Tokens.Signing.SecretFile = file }, "tokens.signing: secret and secret_file are mutually exclusive"},
		{"secret file missing", func(c *Config) { c.Tokens.Signing.SecretFile = missing }, `tokens.signing.secret_file: cannot read "` + missing + `": no such file or directory`},
		// headers
		{"header empty", func(c *Config) { c.Headers.Roles = "" }, "headers.roles: must not be empty"},
		{"header bad token", func(c *Config) { c.Headers.User = "X Auth User" }, `headers.user: "X Auth User" is not a valid HTTP header name`},
		{"header colon", func(c *Config) { c.Headers.User = "X-User:" }, `headers.user: "X-User:" is not a valid HTTP header name`},
		{"header duplicate case", func(c *Config) { c.Headers.Account = "x-auth-user" }, `headers.account: "x-auth-user" is also used by headers.user`},
		{"header reserved", func(c *Config) { c.Headers.RequestID = "authorization" }, `headers.request_id: "authorization" is a reserved header`},
		// trusted proxies
		{"proxies ok", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8", "::1", "fd00::/8"} }, ""},
		{"proxy bad", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8", "proxy.local"} }, `trusted_proxies[1]: "proxy.local" is not an IP address or CIDR`},
		{"proxy bad cidr", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/33"} }, `trusted_proxies[0]: "10.0.0.0/33" is not an IP address or CIDR`},
		// forward_auth (§11)
		{"fwd ok", func(c *Config) {
			c.ForwardAuth.Listen = "127.0.0.1:8082"
			c.ForwardAuth.GRPCListen = "127.0.0.1:8083"
			c.ForwardAuth.PathPrefix = "/check"
			c.ForwardAuth.VerifyRoles = []string{"verifier"}
		}, ""},
		{"fwd listen bad", func(c *Config) { c.ForwardAuth.Listen = "nope" }, `forward_auth.listen: "nope" is not host:port`},
		{"fwd listen overlaps admin", func(c *Config) { c.ForwardAuth.Listen = "127.0.0.1:8081" }, `forward_auth.listen: "127.0.0.1:8081" overlaps admin.listen "127.0.0.1:8081" (same port on the same or a wildcard address)`},
		{"fwd grpc overlaps fwd", func(c *Config) { c.ForwardAuth.Listen = ":9100"; c.ForwardAuth.GRPCListen = "127.0.0.1:9100" }, `forward_auth.grpc_listen: "127.0.0.1:9100" overlaps forward_auth.listen ":9100" (same port on the same or a wildcard address)`},
		{"fwd prefix", func(c *Config) { c.ForwardAuth.PathPrefix = "check/" }, `forward_auth.path_prefix: "check/" must start with / and not end with / nor contain ? or #`},
		{"fwd proxy bad", func(c *Config) { c.ForwardAuth.TrustedProxies = []string{"nginx"} }, `forward_auth.trusted_proxies[0]: "nginx" is not an IP address or CIDR`},
		{"fwd verify role", func(c *Config) { c.ForwardAuth.VerifyRoles = []string{"a b"} }, `forward_auth.verify_roles[0]: "a b" must not contain commas, spaces or control characters`},
		// authorization
		{"handler", func(c *Config) { c.Authorization.Handler = "opa" }, `authorization.handler: "opa" is not one of native, external`},
		{"external ok", func(c *Config) { c.Authorization.Handler = "external" }, ""},
		{"external bad url", func(c *Config) {
			c.Authorization.Handler = "external"
			c.Authorization.External.Endpoint = "127.0.0.1:8089"
		}, `authorization.external.endpoint: "127.0.0.1:8089" is not an http(s) URL`},
		{"external url ignored when native", func(c *Config) { c.Authorization.External.Endpoint = "" }, ""},
		{"external timeout", func(c *Config) { c.Authorization.External.Timeout = 0 }, "authorization.external.timeout: must be greater than 0 (got 0s)"},
		// log
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, `log.level: "verbose" is not one of debug, info, warn, error`},
		{"access sample", func(c *Config) { c.Log.AccessSample = 0 }, "log.access_sample: must be at least 1 (got 0)"},
		{"metrics role", func(c *Config) { c.Admin.MetricsRoles = []string{"ops", "a,b"} }, `admin.metrics_roles[1]: "a,b" must not contain commas, spaces or control characters`},
		{"short ui session secret", func(c *Config) { c.Admin.UISessionSecret = "short-secret" }, `admin.ui_session_secret: is 12 bytes; at least 32 are required (generate one with: openssl rand -base64 48)`},
		// routes
		{"no routes", func(c *Config) { c.Routes = nil }, "routes: at least one route is required"},
		{"route upstream ftp", func(c *Config) { c.Routes[0].Upstreams = []string{"ftp://x"} }, `routes[0].upstreams[0]: "ftp://x" is not an http(s) URL`},
		{"route upstream no scheme", func(c *Config) { c.Routes[0].Upstreams = []string{"127.0.0.1:9000"} }, `routes[0].upstreams[0]: "127.0.0.1:9000" is not an http(s) URL`},
		{"route upstream no host", func(c *Config) { c.Routes[0].Upstreams = []string{"http:///path"} }, `routes[0].upstreams[0]: "http:///path" has no host`},
		{"route upstream query", func(c *Config) { c.Routes[0].Upstreams = []string{"http://h/?a=b"} }, `routes[0].upstreams[0]: "http://h/?a=b" must not have a query`},
		{"route upstream empty query", func(c *Config) { c.Routes[0].Upstreams = []string{"http://h/?"} }, `routes[0].upstreams[0]: "http://h/?" must not have a query`},
		{"route upstream fragment", func(c *Config) { c.Routes[0].Upstreams = []string{"http://h/#f"} }, `routes[0].upstreams[0]: "http://h/#f" must not have a fragment`},
		{"route upstream port", func(c *Config) { c.Routes[0].Upstreams = []string{"http://h:70000"} }, `routes[0].upstreams[0]: "http://h:70000" has an invalid port`},
		{"route upstream credentials redacted", func(c *Config) { c.Routes[0].Upstreams = []string{"http://bob:hunter2@h"} }, `routes[0].upstreams[0]: "http://bob:xxxxx@h" must not contain credentials`},
		{"route upstream unparsable credentials redacted", func(c *Config) { c.Routes[0].Upstreams = []string{"http://bob:hunter2@h%zz"} }, `routes[0].upstreams[0]: "http://xxxxx@h%zz" is not an http(s) URL`},
		{"route upstreams empty", func(c *Config) { c.Routes[0].Upstreams = nil }, "routes[0].upstreams: must list at least one http(s) URL"},
		{"route path prefix", func(c *Config) { c.Routes[0].PathPrefix = "api" }, `routes[0].path_prefix: "api" must start with /`},
		{"route path prefix empty", func(c *Config) { c.Routes[0].PathPrefix = "" }, `routes[0].path_prefix: "" must start with /`},
		{"route path prefix dotdot", func(c *Config) { c.Routes[0].PathPrefix = "/a/../b" }, `routes[0].path_prefix: "/a/../b" must not contain . or .. segments`},
		{"route path prefix double slash", func(c *Config) { c.Routes[0].PathPrefix = "//admin" }, `routes[0].path_prefix: "//admin" must not contain //`},
		{"route path prefix query", func(c *Config) { c.Routes[0].PathPrefix = "/a?b" }, `routes[0].path_prefix: "/a?b" must not contain ?, #, spaces or control characters`},
		{"route auth", func(c *Config) { c.Routes[0].Auth = "sometimes" }, `routes[0].auth: "sometimes" is not one of required, optional, none`},
		{"route roles with none", func(c *Config) { c.Routes[0].Auth = "none"; c.Routes[0].Roles = []string{"a"} }, "routes[0].roles: need auth required or optional (auth is none)"},
		{"route role empty", func(c *Config) { c.Routes[0].Roles = []string{""} }, "routes[0].roles[0]: must not be empty"},
		{"route method bad", func(c *Config) { c.Routes[0].Methods = []string{"GET", "GE T"} }, `routes[0].methods[1]: "GE T" is not a valid HTTP method`},
		{"route method dup", func(c *Config) { c.Routes[0].Methods = []string{"GET", "get"} }, `routes[0].methods[1]: "GET" is listed twice`},
		{"route custom method ok", func(c *Config) { c.Routes[0].Methods = []string{"PROPFIND"} }, ""},
		{"route timeout", func(c *Config) { c.Routes[0].Timeout = Duration(-1) }, "routes[0].timeout: must be greater than 0 (got -1ns)"},
		{"route strip ok", func(c *Config) { c.Routes[0].PathPrefix = "/api/v1"; c.Routes[0].StripPrefix = "/api" }, ""},
		{"route strip not prefix", func(c *Config) { c.Routes[0].PathPrefix = "/api"; c.Routes[0].StripPrefix = "/v1" }, `routes[0].strip_prefix: "/v1" is not a prefix of path_prefix "/api"`},
		{"route strip no slash", func(c *Config) { c.Routes[0].StripPrefix = "api" }, `routes[0].strip_prefix: "api" must start with /`},
		{"route host ok", func(c *Config) { c.Routes[0].Host = "*.example.com:8443" }, ""},
		{"route host ipv6 ok", func(c *Config) { c.Routes[0].Host = "[::1]:8080" }, ""},
		{"route host bad", func(c *Config) { c.Routes[0].Host = "a/b" }, `routes[0].host: "a/b" is not a host name`},
		{"route name empty", func(c *Config) { c.Routes[0].Name = "" }, "routes[0].name: must not be empty"},
		{"route host trailing dot ok", func(c *Config) { c.Routes[0].Host = "internal.example.com." }, ""},
		{"route host wildcard over ip", func(c *Config) { c.Routes[0].Host = "*.10.0.0.1" }, `routes[0].host: "*.10.0.0.1" is a wildcard over an IP address`},
		{"route prefix path parameter", func(c *Config) { c.Routes[0].PathPrefix = "/admin;x" }, `routes[0].path_prefix: "/admin;x" can never match: requests with it are refused (path parameter (; or %3B))`},
		{"route prefix trailing dot", func(c *Config) { c.Routes[0].PathPrefix = "/admin." }, `routes[0].path_prefix: "/admin." can never match: requests with it are refused (segment ending in a dot or a space)`},
		{"route prefix escape", func(c *Config) { c.Routes[0].PathPrefix = "/a%20b" }, `routes[0].path_prefix: "/a%20b" must not contain percent escapes (write the path as it is sent)`},
		{"route case insensitive ok", func(c *Config) { c.Routes[0].CaseInsensitive = true }, ""},
		{"route case insensitive strip other case", func(c *Config) {
			c.Routes[0].CaseInsensitive, c.Routes[0].PathPrefix, c.Routes[0].StripPrefix = true, "/Legacy/App", "/legacy"
		}, ""},
		{"route case sensitive strip other case", func(c *Config) { c.Routes[0].PathPrefix, c.Routes[0].StripPrefix = "/Legacy/App", "/legacy" },
			`routes[0].strip_prefix: "/legacy" is not a prefix of path_prefix "/Legacy/App"`},
		{"keep override ok", func(c *Config) { c.Headers.KeepOverrideHeaders = []string{"x_http_method_override", "X-Original-URL"} }, ""},
		{"keep override unknown", func(c *Config) { c.Headers.KeepOverrideHeaders = []string{"X-Auth-User"} },
			`headers.keep_override_headers[0]: "X-Auth-User" is not an override header (one of X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override, X-Original-URL, X-Rewrite-URL, X-Original-URI, X-Original-Method)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(c)
			got := problemsOf(t, c)
			var want []string
			if tt.want != "" {
				want = []string{tt.want}
			}
			if !slices.Equal(got, want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

func TestValidateRouteSet(t *testing.T) {
	up := []string{"http://127.0.0.1:9000"}
	c := validConfig()
	c.Routes = []Route{
		{Name: "a", PathPrefix: "/a", Upstreams: up},
		{Name: "a", PathPrefix: "/b", Upstreams: up},
		{Name: "c", PathPrefix: "/a", Upstreams: up},
		{Name: "d", PathPrefix: "/a", Upstreams: up, Methods: []string{"GET"}},
		{Name: "e", Host: "x.example", PathPrefix: "/a", Upstreams: up},
	}
	c.Normalize()
	want := []string{
		`routes[1].name: "a" is also the name of routes[0]`,
		"routes[2]: same host, path_prefix and methods as routes[0]; it could never match",
	}
	if got := problemsOf(t, c); !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestValidateCaseInsensitiveOverlap(t *testing.T) {
	up := []string{"http://127.0.0.1:9000"}
	tests := []struct {
		name   string
		routes []Route
		want   []string
	}{
		{"case-sensitive under case-insensitive catch-all", []Route{
			{Name: "all", PathPrefix: "/", Upstreams: up, CaseInsensitive: true},
			{Name: "admin", PathPrefix: "/admin", Upstreams: up},
		}, []string{`routes[1].case_insensitive: path_prefix "/admin" is, ignoring case, under case-insensitive routes[0] ("/"): set case_insensitive here too, or other spellings of it reach routes[0]`}},
		{"nested other case", []Route{
			{Name: "app", PathPrefix: "/App", Upstreams: up, CaseInsensitive: true},
			{Name: "admin", PathPrefix: "/app/Admin/", Upstreams: up},
		}, []string{`routes[1].case_insensitive: path_prefix "/app/Admin/" is, ignoring case, under case-insensitive routes[0] ("/App"): set case_insensitive here too, or other spellings of it reach routes[0]`}},
		{"same prefix other case", []Route{
			{Name: "ci", PathPrefix: "/admin", Upstreams: up, CaseInsensitive: true},
			{Name: "cs", PathPrefix: "/Admin", Upstreams: up},
		}, []string{`routes[1].case_insensitive: path_prefix "/Admin" is, ignoring case, under case-insensitive routes[0] ("/admin"): set case_insensitive here too, or other spellings of it reach routes[0]`}},
		{"two case-insensitive equal ignoring case", []Route{
			{Name: "a", PathPrefix: "/admin", Upstreams: up, CaseInsensitive: true},
			{Name: "b", PathPrefix: "/ADMIN", Upstreams: up, CaseInsensitive: true},
		}, []string{"routes[1]: same host, path_prefix and methods as routes[0]; it could never match"}},
		{"exact host case-sensitive under host-less case-insensitive", []Route{
			{Name: "all", PathPrefix: "/", Upstreams: up, CaseInsensitive: true},
			{Name: "admin", Host: "a.example.com", PathPrefix: "/admin", Upstreams: up},
		}, []string{`routes[1].case_insensitive: path_prefix "/admin" is, ignoring case, under case-insensitive routes[0] ("/"): set case_insensitive here too, or other spellings of it reach routes[0]`}},
		{"wildcard host overlap", []Route{
			{Name: "all", Host: "*.corp.example.com", PathPrefix: "/", Upstreams: up, CaseInsensitive: true},
			{Name: "admin", Host: "x.corp.example.com", PathPrefix: "/admin", Upstreams: up},
		}, []string{`routes[1].case_insensitive: path_prefix "/admin" is, ignoring case, under case-insensitive routes[0] ("/"): set case_insensitive here too, or other spellings of it reach routes[0]`}},
		{"case-insensitive under case-sensitive is fine", []Route{
			{Name: "all", PathPrefix: "/", Upstreams: up},
			{Name: "admin", PathPrefix: "/admin", Upstreams: up, CaseInsensitive: true},
		}, nil},
		{"more specific case-insensitive host wins anyway", []Route{
			{Name: "iis", Host: "iis.example.com", PathPrefix: "/", Upstreams: up, CaseInsensitive: true},
			{Name: "admin", PathPrefix: "/admin", Upstreams: up},
		}, nil},
		{"disjoint hosts", []Route{
			{Name: "iis", Host: "iis.example.com", PathPrefix: "/", Upstreams: up, CaseInsensitive: true},
			{Name: "admin", Host: "other.example.com", PathPrefix: "/admin", Upstreams: up},
		}, nil},
		{"wildcard is one label", []Route{
			{Name: "iis", Host: "*.example.com", PathPrefix: "/", Upstreams: up, CaseInsensitive: true},
			{Name: "admin", Host: "a.b.example.com", PathPrefix: "/admin", Upstreams: up},
		}, nil},
		{"sibling prefixes", []Route{
			{Name: "a", PathPrefix: "/admin", Upstreams: up, CaseInsensitive: true},
			{Name: "b", PathPrefix: "/adminx", Upstreams: up},
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			c.Routes = tt.routes
			c.Normalize()
			if got := problemsOf(t, c); !slices.Equal(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestValidateReportsEveryProblem loads a config with many mistakes and
// expects each one, with its path, in one error.
func TestValidateReportsEveryProblem(t *testing.T) {
	doc := `
listen: ":8081"
admin: {listen: "127.0.0.1:8081"}
shutdown_timeout: 0s
limits: {concurrency: -5}
store: {driver: mongo}
cache: {ttl: 0s}
auth: {methods: [basic, basic, ntlm], max_hash_concurrency: 0}
tokens: {signing: {algorithm: none}, lifetime: 0s}
headers: {user: "X-Auth-Account"}
trusted_proxies: ["nope"]
authorization: {handler: external, external: {endpoint: "ftp://authz"}}
log: {level: chatty, access_sample: 0}
routes:
  - name: api
    path_prefix: api
    upstreams: ["ftp://x", "http://ok:1"]
    auth: maybe
    methods: ["GET", "B@D"]
  - name: api
    path_prefix: /b
    upstreams: []
    strip_prefix: /c
`
	want := []string{
		`admin.listen: "127.0.0.1:8081" overlaps listen ":8081" (same port on the same or a wildcard address)`,
		"shutdown_timeout: must be greater than 0 (got 0s)",
		"limits.concurrency: must be greater than 0 (got -5)",
		`store.driver: "mongo" is not one of bolt, redis`,
		"cache.ttl: must be greater than 0 (got 0s)",
		`auth.methods[1]: "basic" is listed twice`,
		`auth.methods[2]: "ntlm" is not one of basic, api_key, bearer`,
		"auth.max_hash_concurrency: must be at least 1 (got 0)",
		"tokens.lifetime: must be greater than 0 (got 0s)",
		`tokens.signing.algorithm: "none" is not one of HS256, EdDSA, RS256`,
		`headers.account: "X-Auth-Account" is also used by headers.user`,
		`trusted_proxies[0]: "nope" is not an IP address or CIDR`,
		`authorization.external.endpoint: "ftp://authz" is not an http(s) URL`,
		`log.level: "chatty" is not one of debug, info, warn, error`,
		"log.access_sample: must be at least 1 (got 0)",
		`routes[0].path_prefix: "api" must start with /`,
		`routes[0].upstreams[0]: "ftp://x" is not an http(s) URL`,
		`routes[0].auth: "maybe" is not one of required, optional, none`,
		`routes[0].methods[1]: "B@D" is not a valid HTTP method`,
		`routes[1].name: "api" is also the name of routes[0]`,
		"routes[1].upstreams: must list at least one http(s) URL",
		`routes[1].strip_prefix: "/c" is not a prefix of path_prefix "/b"`,
	}
	_, err := LoadBytes([]byte(doc), nil)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want *ValidationError", err)
	}
	if len(ve.Problems) != len(want) {
		t.Errorf("got %d problems, want %d", len(ve.Problems), len(want))
	}
	for _, w := range want {
		if !slices.Contains(ve.Problems, w) {
			t.Errorf("missing problem %q", w)
		}
	}
	for _, g := range ve.Problems {
		if !slices.Contains(want, g) {
			t.Errorf("unexpected problem %q", g)
		}
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(ve.Problems) {
		t.Errorf("Error() has %d lines, want %d", len(lines), len(ve.Problems))
	}
}

// TestSecretsNeverInErrors feeds secrets through every path that could
// echo them and checks no error repeats them.
func TestSecretsNeverInErrors(t *testing.T) {
	const secret = "TOPSECRET-value-0123456789abcdef"
	doc := minimal + `
tokens: {signing: {secret: "` + secret + `", secret_file: /nonexistent/file, algorithm: bogus}}
store: {driver: redis, redis: {password: "` + secret + `", addrs: [bad]}}
authorization: {handler: external, external: {secret: "` + secret + `", endpoint: "http://u:` + secret + `@h?x"}}
`
	env := []string{
		"KEYGATE_TOKENS_SIGNING_SECRET=" + secret,
		"KEYGATE_STORE_REDIS_PASSWORD=" + secret,
		"KEYGATE_AUTHORIZATION_EXTERNAL_SECRET=" + secret,
		"KEYGATE_PASSWORD=" + secret,
		"KEYGATE_SECRETX=" + secret,
	}
	_, err := LoadBytes([]byte(doc), env)
	if err == nil {
		t.Fatal("expected problems")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("error leaks a secret:\n%s", err)
	}
}

func TestCloneAndRedacted(t *testing.T) {
	c, err := LoadBytes([]byte(minimal), []string{
		"KEYGATE_TOKENS_SIGNING_SECRET=abc", "KEYGATE_STORE_REDIS_PASSWORD=def",
		"KEYGATE_TRUSTED_PROXIES=10.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Clone()
	cl.Routes[0].Upstreams[0] = "http://changed"
	cl.Auth.Methods[0] = "changed"
	cl.TrustedProxies[0] = "changed"
	if c.Routes[0].Upstreams[0] != "http://127.0.0.1:9000" || c.Auth.Methods[0] != "basic" || c.TrustedProxies[0] != "10.0.0.1" {
		t.Fatal("Clone shares slices")
	}
	r := c.Redacted()
	if r.Tokens.Signing.Secret != RedactedValue || r.Store.Redis.Password != RedactedValue || r.Authorization.External.Secret != "" {
		t.Fatalf("Redacted: %+v", r)
	}
	if c.Tokens.Signing.Secret != "abc" || c.Store.Redis.Password != "def" {
		t.Fatal("Redacted changed the original")
	}
}
