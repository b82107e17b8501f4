// Package configs loads, defaults and validates keygate's configuration
// (DESIGN.md §9). The YAML keys and the KEYGATE_* environment names are part of
// the external contract; field names here are internal.
package configs

import "time"

// Config is the whole keygate configuration. Default returns one with every
// default filled in; Load overlays YAML and then the environment on top.
type Config struct {
	Listen          string        `yaml:"listen"`
	Admin           Admin         `yaml:"admin"`
	ShutdownTimeout Duration      `yaml:"shutdown_timeout"`
	Limits          Limits        `yaml:"limits"`
	TLS             TLS           `yaml:"tls"`
	Store           Store         `yaml:"store"`
	Cache           Cache         `yaml:"cache"`
	Auth            Auth          `yaml:"auth"`
	APIKeys         APIKeys       `yaml:"api_keys"`
	Tokens          Tokens        `yaml:"tokens"`
	Headers         Headers       `yaml:"headers"`
	TrustedProxies  []string      `yaml:"trusted_proxies"`
	Authorization   Authorization `yaml:"authorization"`
	ForwardAuth     ForwardAuth   `yaml:"forward_auth"`
	Log             Log           `yaml:"log"`
	RateLimits      RateLimits    `yaml:"rate_limits"`
	Routes          []Route       `yaml:"routes"`

	UpstreamCredentials UpstreamCredentials `yaml:"upstream_credentials"`
}

// ForwardAuth is keygate as the auth service of another proxy (DESIGN.md
// §11): a listener where every request is a check of an original request,
// and the Envoy ext_authz gRPC server.
type ForwardAuth struct {
	// Listen is the HTTP check listener (nginx auth_request, Caddy
	// forward_auth, Traefik ForwardAuth, Envoy HTTP ext_authz). Empty: off.
	Listen string `yaml:"listen"`
	// GRPCListen serves envoy.service.auth.v3.Authorization/Check and the
	// gRPC health service. Empty: off.
	GRPCListen string `yaml:"grpc_listen"`
	// PathPrefix is what Envoy's HTTP ext_authz prepends (path_prefix) to the
	// original path; it is removed from the request line of a check that
	// carries no X-Forwarded-Uri/X-Original-URI.
	PathPrefix string `yaml:"path_prefix"`
	// TrustedProxies may send checks (IPs or CIDRs). Default loopback.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// VerifyRoles: a caller of POST /v1/verify needs one of these roles
	// (global admins always may).
	VerifyRoles []string `yaml:"verify_roles"`
}

// Admin is the admin listener.
type Admin struct {
	Listen string `yaml:"listen"`
	// MetricsRoles, when non-empty, restricts GET /metrics to callers holding
	// one of these roles (global admins always pass). Empty: anyone.
	MetricsRoles []string `yaml:"metrics_roles"`
	// Pprof serves the Go runtime profiles (net/http/pprof) under
	// /debug/pprof/ on the admin listener, to global admins only. Off by
	// default: profiles reveal internals and cost CPU while they run.
	Pprof bool `yaml:"pprof"`
	// GeneratedPasswordFile is where the first start writes the generated
	// password of user "admin" (a new file, mode 0600) when
	// KEYGATE_ADMIN_PASSWORD is not set. Empty: on the terminal when stderr
	// is one, else <directory of store.bolt.path>/admin-password (bolt) or
	// ./keygate-admin-password (redis). Never in the logs.
	GeneratedPasswordFile string `yaml:"generated_password_file"`
	// UI serves the web UI under /ui/ on this listener (admin/ui; on by
	// default).
	UI bool `yaml:"ui"`
	// UISessionSecret signs the web UI's session cookies (at least 32
	// bytes; normally from KEYGATE_ADMIN_UI_SESSION_SECRET). Instances
	// behind one address need the same. Empty: derived from the HS256
	// tokens secret when there is one, else random per process (sessions
	// then end on restart and hold on one instance only).
	UISessionSecret string `yaml:"ui_session_secret"`
}

// Limits bound what one client can make the gateway do.
type Limits struct {
	MaxBody      ByteSize `yaml:"max_body"`
	MaxHeader    ByteSize `yaml:"max_header"`
	Concurrency  int      `yaml:"concurrency"`
	ReadTimeout  Duration `yaml:"read_timeout"`
	WriteTimeout Duration `yaml:"write_timeout"`
	IdleTimeout  Duration `yaml:"idle_timeout"`
	// MaxBodyInFlight bounds the request-body bytes buffered at once across
	// all connections; a body that does not fit gets 503 + Retry-After.
	MaxBodyInFlight ByteSize `yaml:"max_body_in_flight"`
	// MaxResponse, when > 0, caps an upstream response body: a declared
	// Content-Length over it is a 502. 0: unlimited. Responses are streamed
	// either way, never held whole.
	MaxResponse ByteSize `yaml:"max_response"`
}

// TLS enables TLS on the public listener when both files are set.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether TLS is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" && t.KeyFile != "" }

// Store selects and configures the identity store.
type Store struct {
	Driver      string   `yaml:"driver"` // "bolt" | "redis"
	Bolt        Bolt     `yaml:"bolt"`
	Redis       Redis    `yaml:"redis"`
	OutageGrace Duration `yaml:"outage_grace"`
	// StartupTimeout bounds how long serve retries a store it cannot reach
	// at start (0: no retry, exit at once).
	StartupTimeout Duration `yaml:"startup_timeout"`
}

// Bolt is the embedded store.
type Bolt struct {
	Path string `yaml:"path"`
}

// Redis is the shared store: one node, Sentinel (MasterName set) or Cluster
// (several Addrs, no MasterName).
type Redis struct {
	Addrs      []string `yaml:"addrs"`
	MasterName string   `yaml:"master_name"`
	Username   string   `yaml:"username"`
	Password   string   `yaml:"password"`
	DB         int      `yaml:"db"`
	KeyPrefix  string   `yaml:"key_prefix"`
	// Timeout bounds every Redis command (dial, read, write).
	Timeout Duration `yaml:"timeout"`
	// PoolSize is go-redis' connection pool size per node (0: go-redis default).
	PoolSize int `yaml:"pool_size"`
}

// Cache is the ristretto L1 in front of the store.
type Cache struct {
	MaxEntries  int64    `yaml:"max_entries"`
	TTL         Duration `yaml:"ttl"`
	NegativeTTL Duration `yaml:"negative_ttl"`
}

// Auth configures authentication.
type Auth struct {
	Realm              string   `yaml:"realm"`
	Methods            []string `yaml:"methods"` // basic | api_key | bearer
	MaxHashConcurrency int      `yaml:"max_hash_concurrency"`
	Failures           Failures `yaml:"failures"`
}

// Failures are the brute-force limits (then 429 + Retry-After).
type Failures struct {
	PerIPPerMinute   int `yaml:"per_ip_per_minute"`
	PerUserPerMinute int `yaml:"per_user_per_minute"`
}

// APIKeys are the API key lifetime rules.
type APIKeys struct {
	// MaxLifetime caps expires_at; 0 allows keys that never expire.
	MaxLifetime Duration `yaml:"max_lifetime"`
	Retention   Duration `yaml:"retention"`
	// ExpiryWarning: responses to requests made with a key that expires
	// within it carry Keygate-Key-Expires (0: never).
	ExpiryWarning Duration `yaml:"expiry_warning"`
}

// Tokens configures the OAuth2 token endpoint and JWTs.
type Tokens struct {
	Issuer          string   `yaml:"issuer"`
	Audience        string   `yaml:"audience"`
	Lifetime        Duration `yaml:"lifetime"`
	RefreshLifetime Duration `yaml:"refresh_lifetime"`
	Leeway          Duration `yaml:"leeway"`
	Path            string   `yaml:"path"`
	Signing         Signing  `yaml:"signing"`
}

// Signing selects the JWT algorithm and its key material.
type Signing struct {
	Algorithm      string `yaml:"algorithm"` // HS256 | EdDSA | RS256
	SecretFile     string `yaml:"secret_file"`
	Secret         string `yaml:"secret"` // normally from KEYGATE_TOKENS_SIGNING_SECRET
	PrivateKeyFile string `yaml:"private_key_file"`
}

// Headers names the identity headers injected upstream.
type Headers struct {
	User      string `yaml:"user"`
	Account   string `yaml:"account"`
	Roles     string `yaml:"roles"`
	Method    string `yaml:"method"`
	KeyID     string `yaml:"key_id"`
	KeyName   string `yaml:"key_name"`
	RequestID string `yaml:"request_id"`
	// KeepOverrideHeaders lists the override headers (X-HTTP-Method-Override,
	// X-HTTP-Method, X-Method-Override, X-Original-URL, X-Rewrite-URL,
	// X-Original-URI, X-Original-Method) forwarded upstream; the others are
	// stripped from every request. Empty: all stripped.
	KeepOverrideHeaders []string `yaml:"keep_override_headers"`
}

// Authorization selects the authorizer.
type Authorization struct {
	Handler  string   `yaml:"handler"` // native | external
	External External `yaml:"external"`
}

// External is the external authorization plugin.
type External struct {
	Endpoint string   `yaml:"endpoint"`
	Timeout  Duration `yaml:"timeout"`
	CacheTTL Duration `yaml:"cache_ttl"`
	Secret   string   `yaml:"secret"`
}

// Log configures zap.
type Log struct {
	Level string `yaml:"level"` // debug | info | warn | error
	// Access enables a JSON access log line per proxied request.
	Access bool `yaml:"access"`
	// AccessSample logs one in N requests (1: all).
	AccessSample int `yaml:"access_sample"`
}

// Route maps requests to an upstream pool.
type Route struct {
	Name                 string   `yaml:"name"`
	Host                 string   `yaml:"host"`
	PathPrefix           string   `yaml:"path_prefix"`
	Upstreams            []string `yaml:"upstreams"`
	Auth                 string   `yaml:"auth"` // required | optional | none
	Roles                []string `yaml:"roles"`
	Methods              []string `yaml:"methods"`
	Timeout              Duration `yaml:"timeout"`
	StripPrefix          string   `yaml:"strip_prefix"`
	ForwardAuthorization bool     `yaml:"forward_authorization"`
	// CaseInsensitive makes path_prefix and strip_prefix match ignoring
	// case, for upstreams that serve paths that way (IIS).
	CaseInsensitive bool `yaml:"case_insensitive"`
	// ForwardKeyMetadata names the metadata members of the caller's API
	// key forwarded upstream, each as X-Auth-Key-Meta-<Name>.
	ForwardKeyMetadata []string `yaml:"forward_key_metadata"`
	// UpstreamCredential names the credential keygate sends upstream
	// instead of the client's Authorization (DESIGN.md §12): the caller's
	// account's, else account admin's.
	UpstreamCredential string `yaml:"upstream_credential"`
	// RateLimit names a rate_limits.policies entry applied to every caller
	// of the route (per API key, per user, or per client address when
	// anonymous); "": none.
	RateLimit string `yaml:"rate_limit"`
}

// Route auth modes.
const (
	AuthRequired = "required"
	AuthOptional = "optional"
	AuthNone     = "none"
)

// Duration is a time.Duration that reads "30s", "5m", "720h" in YAML and env.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ByteSize is a size that reads "10MiB", "16KiB", "512" in YAML and env.
type ByteSize int64
