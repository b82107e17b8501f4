package configs

import "time"

// Default values that are not simply a field of the Config returned by
// Default: they are applied per route by Normalize.
const (
	// DefaultRouteAuth is a route's auth mode when the route does not set one.
	DefaultRouteAuth = AuthRequired
	// DefaultRouteTimeout is a route's upstream timeout when it sets none.
	DefaultRouteTimeout = Duration(30 * time.Second)
)

// Default returns a Config with every default of DESIGN.md §9 filled in. It is
// the only place defaults live: Load starts from it, overlays YAML and the
// environment, and then Normalize fills the per-route defaults. Routes are
// empty: Validate requires at least one. Each call returns a fresh value that
// shares no memory with any other.
func Default() *Config {
	return &Config{
		Listen:          ":8080",
		Admin:           Admin{Listen: "127.0.0.1:8081", UI: true},
		ShutdownTimeout: Duration(15 * time.Second),
		Limits: Limits{
			MaxBody:         10 * MiB,
			MaxHeader:       16 * KiB,
			Concurrency:     10000,
			ReadTimeout:     Duration(30 * time.Second),
			WriteTimeout:    Duration(30 * time.Second),
			IdleTimeout:     Duration(60 * time.Second),
			MaxBodyInFlight: 64 * MiB,
		},
		Store: Store{
			Driver: DriverBolt,
			Bolt:   Bolt{Path: "./data/keygate.db"},
			Redis: Redis{
				Addrs:     []string{"127.0.0.1:6379"},
				KeyPrefix: "kg:",
				Timeout:   Duration(3 * time.Second),
			},
			OutageGrace:    Duration(5 * time.Minute),
			StartupTimeout: Duration(60 * time.Second),
		},
		Cache: Cache{
			MaxEntries:  100000,
			TTL:         Duration(60 * time.Second),
			NegativeTTL: Duration(5 * time.Second),
		},
		Auth: Auth{
			Realm:              "keygate",
			Methods:            []string{MethodBasic, MethodAPIKey, MethodBearer},
			MaxHashConcurrency: 2,
			Failures:           Failures{PerIPPerMinute: 30, PerUserPerMinute: 10},
		},
		APIKeys: APIKeys{
			MaxLifetime: Duration(8760 * time.Hour),
			Retention:   Duration(168 * time.Hour),
			// The warning window of Keygate-Key-Expires.
			ExpiryWarning: Duration(168 * time.Hour),
		},
		Tokens: Tokens{
			Issuer:          "keygate",
			Audience:        "keygate",
			Lifetime:        Duration(time.Hour),
			RefreshLifetime: Duration(24 * time.Hour),
			Leeway:          Duration(5 * time.Second),
			Path:            "/oauth/token",
			Signing:         Signing{Algorithm: AlgHS256},
		},
		ForwardAuth: ForwardAuth{
			TrustedProxies: []string{"127.0.0.0/8", "::1"},
		},
		Headers: Headers{
			User:      "X-Auth-User",
			Account:   "X-Auth-Account",
			Roles:     "X-Auth-Roles",
			Method:    "X-Auth-Method",
			KeyID:     "X-Auth-Key-Id",
			KeyName:   "X-Auth-Key-Name",
			RequestID: "X-Request-Id",
		},
		Authorization: Authorization{
			Handler: HandlerNative,
			External: External{
				Endpoint: "http://127.0.0.1:8089",
				Timeout:  Duration(200 * time.Millisecond),
				CacheTTL: Duration(10 * time.Second),
			},
		},
		Log:        Log{Level: "info", AccessSample: 1},
		RateLimits: RateLimits{Instances: 1},
	}
}
