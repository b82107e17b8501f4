package configs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/keygate/keygate/internal/reqtarget"
	"github.com/keygate/keygate/store"
)

// ValidationError lists every problem found in a configuration, each
// prefixed with the YAML path (or environment variable) it concerns, e.g.
// `routes[1].upstreams[0]: "ftp://x" is not an http(s) URL`.
type ValidationError struct {
	Problems []string
}

// Error returns the problems one per line.
func (e *ValidationError) Error() string { return strings.Join(e.Problems, "\n") }

// problems collects validation problems in field order.
type problems []string

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, path+": "+fmt.Sprintf(format, args...))
}

func (p *problems) positive(path string, d Duration) {
	if d <= 0 {
		p.add(path, "must be greater than 0 (got %s)", d)
	}
}

func (p *problems) nonNegative(path string, d Duration) {
	if d < 0 {
		p.add(path, "must not be negative (got %s)", d)
	}
}

func (p *problems) nonEmpty(path, s string) bool {
	if strings.TrimSpace(s) == "" {
		p.add(path, "must not be empty")
		return false
	}
	return true
}

// readable checks that path names a regular file this process can open. It
// never reads from the file, and does not open anything that could block
// (FIFOs, devices).
func (p *problems) readable(path, file string) {
	fi, err := os.Stat(file)
	if err != nil {
		p.add(path, "cannot read %s: %v", quote(file), unwrapPathError(err))
		return
	}
	if !fi.Mode().IsRegular() {
		p.add(path, "%s is not a regular file", quote(file))
		return
	}
	f, err := os.Open(file) //nolint:gosec // the path is the operator's (flag or config), not a client's
	if err != nil {
		p.add(path, "cannot read %s: %v", quote(file), unwrapPathError(err))
		return
	}
	_ = f.Close()
}

func unwrapPathError(err error) error {
	if pe := (*os.PathError)(nil); errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Validate checks c and returns a *ValidationError listing every problem, or
// nil. It does not change c; Load calls Normalize before it, and so should a
// caller that built c in code. It opens (without reading) the TLS and key
// files it names, to check they are readable.
func (c *Config) Validate() error {
	var p problems

	pubHost, pubPort, pubOK := p.listenAddr("listen", c.Listen)
	admHost, admPort, admOK := p.listenAddr("admin.listen", c.Admin.Listen)
	if pubOK && admOK && pubPort != 0 && pubPort == admPort && hostsOverlap(pubHost, admHost) {
		p.add("admin.listen", "%s overlaps listen %s (same port on the same or a wildcard address)", quote(c.Admin.Listen), quote(c.Listen))
	}
	for i, r := range c.Admin.MetricsRoles {
		p.role(fmt.Sprintf("admin.metrics_roles[%d]", i), r)
	}
	if n := len(c.Admin.UISessionSecret); n > 0 && n < 32 {
		// Never repeat the secret itself.
		p.add("admin.ui_session_secret", "is %d bytes; at least 32 are required (generate one with: openssl rand -base64 48)", n)
	}
	p.positive("shutdown_timeout", c.ShutdownTimeout)

	l := c.Limits
	if l.MaxBody <= 0 {
		p.add("limits.max_body", "must be greater than 0 (got %s)", l.MaxBody)
	}
	if l.MaxHeader <= 0 {
		p.add("limits.max_header", "must be greater than 0 (got %s)", l.MaxHeader)
	}
	if l.Concurrency <= 0 {
		p.add("limits.concurrency", "must be greater than 0 (got %d)", l.Concurrency)
	}
	p.positive("limits.read_timeout", l.ReadTimeout)
	p.positive("limits.write_timeout", l.WriteTimeout)
	p.positive("limits.idle_timeout", l.IdleTimeout)
	if l.MaxBodyInFlight < 0 {
		p.add("limits.max_body_in_flight", "must not be negative (got %s)", l.MaxBodyInFlight)
	}
	if l.MaxResponse < 0 {
		p.add("limits.max_response", "must not be negative (got %s)", l.MaxResponse)
	}

	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		p.add("tls", "cert_file and key_file must be set together")
	}
	if c.TLS.CertFile != "" {
		p.readable("tls.cert_file", c.TLS.CertFile)
	}
	if c.TLS.KeyFile != "" {
		p.readable("tls.key_file", c.TLS.KeyFile)
	}

	p.store(&c.Store)

	if c.Cache.MaxEntries <= 0 {
		p.add("cache.max_entries", "must be greater than 0 (got %d)", c.Cache.MaxEntries)
	}
	p.positive("cache.ttl", c.Cache.TTL)
	p.nonNegative("cache.negative_ttl", c.Cache.NegativeTTL)

	p.auth(&c.Auth)
	p.rateLimits(c)

	p.nonNegative("api_keys.max_lifetime", c.APIKeys.MaxLifetime)
	p.positive("api_keys.retention", c.APIKeys.Retention)
	p.nonNegative("api_keys.expiry_warning", c.APIKeys.ExpiryWarning)

	p.tokens(&c.Tokens)
	p.headers(&c.Headers)

	p.ipList("trusted_proxies", c.TrustedProxies)
	p.forwardAuth(c, pubHost, pubPort, pubOK, admHost, admPort, admOK)

	a := c.Authorization
	switch a.Handler {
	case HandlerNative:
	case HandlerExternal:
		if msg := checkHTTPURL(a.External.Endpoint); msg != "" {
			p.add("authorization.external.endpoint", "%s", msg)
		}
	default:
		p.add("authorization.handler", "%s is not one of native, external", quote(a.Handler))
	}
	p.positive("authorization.external.timeout", a.External.Timeout)
	p.nonNegative("authorization.external.cache_ttl", a.External.CacheTTL)

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "%s is not one of debug, info, warn, error", quote(c.Log.Level))
	}
	if c.Log.AccessSample < 1 {
		p.add("log.access_sample", "must be at least 1 (got %d)", c.Log.AccessSample)
	}

	p.routes(c.Routes)
	p.upstreamCredentials(c)

	if len(p) > 0 {
		return &ValidationError{Problems: p}
	}
	return nil
}

// ipList checks a list of IPs or CIDRs.
func (p *problems) ipList(path string, list []string) {
	for i, tp := range list {
		s := strings.TrimSpace(tp)
		if _, err := netip.ParsePrefix(s); err == nil {
			continue
		}
		if _, err := netip.ParseAddr(s); err == nil {
			continue
		}
		p.add(fmt.Sprintf("%s[%d]", path, i), "%s is not an IP address or CIDR", quote(tp))
	}
}

// forwardAuth checks forward_auth (§11): its listeners must not share a
// port with the public or admin listener, nor with each other.
func (p *problems) forwardAuth(c *Config, pubHost string, pubPort int, pubOK bool, admHost string, admPort int, admOK bool) {
	f := &c.ForwardAuth
	type lis struct {
		path, addr, host string
		port             int
		ok               bool
	}
	all := []lis{{"listen", c.Listen, pubHost, pubPort, pubOK}, {"admin.listen", c.Admin.Listen, admHost, admPort, admOK}}
	for _, x := range []struct{ path, addr string }{{"forward_auth.listen", f.Listen}, {"forward_auth.grpc_listen", f.GRPCListen}} {
		if x.addr == "" {
			continue
		}
		h, port, ok := p.listenAddr(x.path, x.addr)
		if !ok {
			continue
		}
		for _, o := range all {
			if o.ok && port != 0 && port == o.port && hostsOverlap(h, o.host) {
				p.add(x.path, "%s overlaps %s %s (same port on the same or a wildcard address)", quote(x.addr), o.path, quote(o.addr))
			}
		}
		all = append(all, lis{x.path, x.addr, h, port, true})
	}
	if f.PathPrefix != "" && (f.PathPrefix[0] != '/' || strings.ContainsAny(f.PathPrefix, "?#") || strings.HasSuffix(f.PathPrefix, "/")) {
		p.add("forward_auth.path_prefix", "%s must start with / and not end with / nor contain ? or #", quote(f.PathPrefix))
	}
	p.ipList("forward_auth.trusted_proxies", f.TrustedProxies)
	for i, r := range f.VerifyRoles {
		p.role(fmt.Sprintf("forward_auth.verify_roles[%d]", i), r)
	}
}

func (p *problems) store(s *Store) {
	switch s.Driver {
	case DriverBolt:
		p.nonEmpty("store.bolt.path", s.Bolt.Path)
	case DriverRedis:
		r := s.Redis
		if len(r.Addrs) == 0 {
			p.add("store.redis.addrs", "must list at least one host:port")
		}
		for i, a := range r.Addrs {
			path := fmt.Sprintf("store.redis.addrs[%d]", i)
			if host, port, ok := p.hostPort(path, a); ok && (host == "" || port == 0) {
				p.add(path, "%s needs a host and a non-zero port", quote(a))
			}
		}
		if p.nonEmpty("store.redis.key_prefix", r.KeyPrefix) && strings.ContainsAny(r.KeyPrefix, "{}") {
			p.add("store.redis.key_prefix", "%s must not contain { or } (keygate sets the cluster hash tags)", quote(r.KeyPrefix))
		}
		p.positive("store.redis.timeout", r.Timeout)
		if r.DB < 0 {
			p.add("store.redis.db", "must not be negative (got %d)", r.DB)
		}
		if r.PoolSize < 0 {
			p.add("store.redis.pool_size", "must not be negative (got %d)", r.PoolSize)
		}
	default:
		p.add("store.driver", "%s is not one of bolt, redis", quote(s.Driver))
	}
	p.nonNegative("store.outage_grace", s.OutageGrace)
	p.nonNegative("store.startup_timeout", s.StartupTimeout)
}

func (p *problems) auth(a *Auth) {
	if p.nonEmpty("auth.realm", a.Realm) && strings.ContainsFunc(a.Realm, func(r rune) bool {
		return r == '"' || r == '\\' || r < 0x20 || r == 0x7f
	}) {
		p.add("auth.realm", "must not contain quotes, backslashes or control characters")
	}
	if len(a.Methods) == 0 {
		p.add("auth.methods", "must list at least one of basic, api_key, bearer")
	}
	for i, m := range a.Methods {
		path := fmt.Sprintf("auth.methods[%d]", i)
		switch m {
		case MethodBasic, MethodAPIKey, MethodBearer:
			if slices.Index(a.Methods, m) < i {
				p.add(path, "%s is listed twice", quote(m))
			}
		default:
			p.add(path, "%s is not one of basic, api_key, bearer", quote(m))
		}
	}
	if a.MaxHashConcurrency < 1 {
		p.add("auth.max_hash_concurrency", "must be at least 1 (got %d)", a.MaxHashConcurrency)
	}
	if a.Failures.PerIPPerMinute < 0 {
		p.add("auth.failures.per_ip_per_minute", "must not be negative (got %d)", a.Failures.PerIPPerMinute)
	}
	if a.Failures.PerUserPerMinute < 0 {
		p.add("auth.failures.per_user_per_minute", "must not be negative (got %d)", a.Failures.PerUserPerMinute)
	}
}

func (p *problems) tokens(t *Tokens) {
	p.nonEmpty("tokens.issuer", t.Issuer)
	p.nonEmpty("tokens.audience", t.Audience)
	p.positive("tokens.lifetime", t.Lifetime)
	p.positive("tokens.refresh_lifetime", t.RefreshLifetime)
	p.nonNegative("tokens.leeway", t.Leeway)
	if !strings.HasPrefix(t.Path, "/") {
		p.add("tokens.path", "%s must start with /", quote(t.Path))
	} else {
		p.pathChars("tokens.path", t.Path)
	}
	s := t.Signing
	switch s.Algorithm {
	case AlgHS256:
		if s.PrivateKeyFile != "" {
			p.add("tokens.signing.private_key_file", "is for EdDSA and RS256; HS256 uses secret or secret_file")
		}
	case AlgEdDSA, AlgRS256:
		if s.PrivateKeyFile == "" {
			p.add("tokens.signing.private_key_file", "is required with %s", s.Algorithm)
		}
	default:
		p.add("tokens.signing.algorithm", "%s is not one of HS256, EdDSA, RS256", quote(s.Algorithm))
	}
	p.secretSource("tokens.signing", "secret", s.Secret, s.SecretFile)
	if s.PrivateKeyFile != "" {
		p.readable("tokens.signing.private_key_file", s.PrivateKeyFile)
	}
}

// reservedHeaders may not be used as identity headers: the proxy strips,
// sets or interprets them itself.
var reservedHeaders = []string{
	"Authorization", "Proxy-Authorization", "Proxy-Authenticate", "Host",
	"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", "Content-Length", "Content-Type", "Cookie",
	"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
}

func (p *problems) headers(h *Headers) {
	fields := []struct{ key, name string }{
		{"user", h.User}, {"account", h.Account}, {"roles", h.Roles},
		{"method", h.Method}, {"key_id", h.KeyID}, {"key_name", h.KeyName},
		{"request_id", h.RequestID},
	}
	seen := make(map[string]string, len(fields))
	for _, f := range fields {
		path := "headers." + f.key
		switch {
		case f.name == "":
			p.add(path, "must not be empty")
			continue
		case !isToken(f.name):
			p.add(path, "%s is not a valid HTTP header name", quote(f.name))
			continue
		}
		for _, r := range reservedHeaders {
			if strings.EqualFold(r, f.name) {
				p.add(path, "%s is a reserved header", quote(f.name))
			}
		}
		k := strings.ToLower(f.name)
		if prev, dup := seen[k]; dup {
			p.add(path, "%s is also used by headers.%s", quote(f.name), prev)
		} else {
			seen[k] = f.key
		}
	}
	for i, name := range h.KeepOverrideHeaders {
		if !slices.ContainsFunc(OverrideHeaders, func(o string) bool { return normHeaderName(o) == normHeaderName(name) }) {
			p.add(fmt.Sprintf("headers.keep_override_headers[%d]", i), "%s is not an override header (one of %s)",
				quote(name), strings.Join(OverrideHeaders, ", "))
		}
	}
}

// OverrideHeaders are the request headers some frameworks read as the real
// method or path (method overrides; URL overrides of Symfony, Zend, IIS and
// the nginx auth_request convention). The proxy strips them from every
// request unless headers.keep_override_headers lists them.
var OverrideHeaders = []string{
	"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override",
	"X-Original-URL", "X-Rewrite-URL", "X-Original-URI", "X-Original-Method",
}

// normHeaderName folds a header name the way lenient servers read it: ASCII
// lower case, '_' and '.' as '-'.
func normHeaderName(s string) string {
	return strings.NewReplacer("_", "-", ".", "-").Replace(strings.ToLower(s))
}

func (p *problems) routes(routes []Route) {
	if len(routes) == 0 {
		p.add("routes", "at least one route is required")
		return
	}
	names := make(map[string]int, len(routes))
	type key struct{ host, prefix, methods string }
	keys := make(map[key]int, len(routes))
	p.caseOverlaps(routes)
	for i, r := range routes {
		base := fmt.Sprintf("routes[%d]", i)
		if p.nonEmpty(base+".name", r.Name) {
			if j, dup := names[r.Name]; dup {
				p.add(base+".name", "%s is also the name of routes[%d]", quote(r.Name), j)
			} else {
				names[r.Name] = i
			}
		}
		if r.Host != "" && !validRouteHost(r.Host) {
			p.add(base+".host", "%s is not a host name", quote(r.Host))
		} else if msg := routeHostProblem(r.Host); msg != "" {
			p.add(base+".host", "%s %s", quote(r.Host), msg)
		}
		prefixOK := false
		if !strings.HasPrefix(r.PathPrefix, "/") {
			p.add(base+".path_prefix", "%s must start with /", quote(r.PathPrefix))
		} else {
			prefixOK = p.pathChars(base+".path_prefix", r.PathPrefix)
		}
		if len(r.Upstreams) == 0 {
			p.add(base+".upstreams", "must list at least one http(s) URL")
		}
		for j, u := range r.Upstreams {
			if msg := checkHTTPURL(u); msg != "" {
				p.add(fmt.Sprintf("%s.upstreams[%d]", base, j), "%s", msg)
			}
		}
		switch r.Auth {
		case AuthRequired, AuthOptional:
		case AuthNone:
			if len(r.Roles) > 0 {
				p.add(base+".roles", "need auth required or optional (auth is none)")
			}
		default:
			p.add(base+".auth", "%s is not one of required, optional, none", quote(r.Auth))
		}
		for j, role := range r.Roles {
			p.role(fmt.Sprintf("%s.roles[%d]", base, j), role)
		}
		methods := make([]string, 0, len(r.Methods))
		for j, m := range r.Methods {
			path := fmt.Sprintf("%s.methods[%d]", base, j)
			if !isToken(m) {
				p.add(path, "%s is not a valid HTTP method", quote(m))
				continue
			}
			m = strings.ToUpper(m)
			if slices.Contains(methods, m) {
				p.add(path, "%s is listed twice", quote(m))
				continue
			}
			methods = append(methods, m)
		}
		p.positive(base+".timeout", r.Timeout)
		for j, m := range r.ForwardKeyMetadata {
			path := fmt.Sprintf("%s.forward_key_metadata[%d]", base, j)
			switch {
			case !store.ValidMetadataKey(m):
				p.add(path, "%s is not a metadata name (1-64 characters [A-Za-z0-9_-])", quote(m))
			case slices.Contains(r.ForwardKeyMetadata[:j], m):
				p.add(path, "%s is listed twice", quote(m))
			case r.Auth == AuthNone:
				p.add(path, "needs auth required or optional (auth is none)")
			}
		}
		if r.StripPrefix != "" {
			switch {
			case !strings.HasPrefix(r.StripPrefix, "/"):
				p.add(base+".strip_prefix", "%s must start with /", quote(r.StripPrefix))
			case prefixOK && !strings.HasPrefix(r.PathPrefix, r.StripPrefix) &&
				!(r.CaseInsensitive && strings.HasPrefix(strings.ToLower(r.PathPrefix), strings.ToLower(r.StripPrefix))):
				p.add(base+".strip_prefix", "%s is not a prefix of path_prefix %s", quote(r.StripPrefix), quote(r.PathPrefix))
			}
		}
		slices.Sort(methods)
		prefix := r.PathPrefix
		if r.CaseInsensitive {
			prefix = strings.ToLower(prefix)
		}
		k := key{strings.ToLower(r.Host), prefix, strings.Join(methods, ",")}
		if j, dup := keys[k]; dup {
			p.add(base, "same host, path_prefix and methods as routes[%d]; it could never match", j)
		} else {
			keys[k] = i
		}
	}
}

// caseOverlaps refuses a case-sensitive route that a case-insensitive route
// could take requests from: their hosts can match the same request, the
// case-sensitive prefix lies at or under the case-insensitive one ignoring
// case, and the case-sensitive route is tried first (a host at least as
// specific: exact, then "*.", then none). "/ADMIN/x" would otherwise miss a
// case-sensitive "/admin" and reach a case-insensitive "/" whose upstream
// serves it as "/admin/x". A case-insensitive route under a case-sensitive
// one is fine: it is longer, so every spelling of its prefix reaches it.
func (p *problems) caseOverlaps(routes []Route) {
	for i, cs := range routes {
		if cs.CaseInsensitive || !strings.HasPrefix(cs.PathPrefix, "/") {
			continue
		}
		for j, ci := range routes {
			if !ci.CaseInsensitive || !strings.HasPrefix(ci.PathPrefix, "/") {
				continue
			}
			if !routeHostsOverlap(cs.Host, ci.Host) || hostRank(cs.Host) < hostRank(ci.Host) {
				continue
			}
			if underPrefix(strings.ToLower(trimSlash(cs.PathPrefix)), strings.ToLower(trimSlash(ci.PathPrefix))) {
				p.add(fmt.Sprintf("routes[%d].case_insensitive", i),
					"path_prefix %s is, ignoring case, under case-insensitive routes[%d] (%s): set case_insensitive here too, or other spellings of it reach routes[%d]",
					quote(cs.PathPrefix), j, quote(ci.PathPrefix), j)
			}
		}
	}
}

func trimSlash(p string) string {
	if len(p) > 1 {
		return strings.TrimSuffix(p, "/")
	}
	return p
}

// underPrefix reports whether path p equals prefix or lies under it at a
// segment boundary.
func underPrefix(p, prefix string) bool {
	if prefix == "/" {
		return true
	}
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// routeHostName is a configured route host without port and trailing dot,
// lower case ("*." kept).
func routeHostName(h string) string {
	h = strings.ToLower(h)
	if !strings.HasPrefix(h, "[") {
		if i := strings.LastIndexByte(h, ':'); i >= 0 {
			h = h[:i]
		}
	} else if i := strings.IndexByte(h, ']'); i >= 0 {
		h = h[:i+1]
	}
	return strings.TrimSuffix(h, ".")
}

// hostRank is the match order of a route host: exact names first (2), then
// wildcards (1), then routes without a host (0).
func hostRank(h string) int {
	switch {
	case h == "":
		return 0
	case strings.HasPrefix(h, "*."):
		return 1
	}
	return 2
}

// routeHostsOverlap reports whether route hosts a and b can match the same
// request. "*.x" matches one label in front of x.
func routeHostsOverlap(a, b string) bool {
	a, b = routeHostName(a), routeHostName(b)
	if a == "" || b == "" || a == b {
		return true
	}
	wild := func(w, h string) bool {
		if !strings.HasPrefix(w, "*.") || strings.HasPrefix(h, "*.") {
			return false
		}
		label, ok := strings.CutSuffix(h, w[1:])
		return ok && label != "" && !strings.Contains(label, ".")
	}
	return wild(a, b) || wild(b, a)
}

// routeHostProblem checks a route host with the rules requests are held to
// (reqtarget.AppendHost): "" if it is fine.
func routeHostProblem(h string) string {
	if h == "" {
		return ""
	}
	name, wild := strings.CutPrefix(routeHostName(h), "*.")
	if _, _, err := reqtarget.AppendHost(nil, []byte(name)); err != nil {
		return "is not a host name a request can carry"
	}
	if wild && strings.HasPrefix(name, "[") {
		return "is a wildcard over an IP address"
	}
	if wild {
		if _, err := netip.ParseAddr(name); err == nil {
			return "is a wildcard over an IP address"
		}
	}
	return ""
}

// role checks a role name: non-empty, no commas (roles are sent joined by
// commas), no spaces or control characters.
func (p *problems) role(path, role string) {
	if role == "" {
		p.add(path, "must not be empty")
		return
	}
	if strings.ContainsFunc(role, func(r rune) bool { return r == ',' || r <= ' ' || r == 0x7f }) {
		p.add(path, "%s must not contain commas, spaces or control characters", quote(role))
	}
}

// pathChars rejects path prefixes that no normalised request path could
// match: query or fragment markers, spaces or control characters, empty,
// "." or ".." segments.
func (p *problems) pathChars(path, s string) bool {
	if strings.ContainsFunc(s, func(r rune) bool { return r == '?' || r == '#' || r <= ' ' || r == 0x7f }) {
		p.add(path, "%s must not contain ?, #, spaces or control characters", quote(s))
		return false
	}
	for seg := range strings.SplitSeq(s[1:], "/") {
		if seg == "." || seg == ".." {
			p.add(path, "%s must not contain . or .. segments", quote(s))
			return false
		}
	}
	if strings.Contains(s, "//") {
		p.add(path, "%s must not contain //", quote(s))
		return false
	}
	if strings.Contains(s, "%") {
		p.add(path, "%s must not contain percent escapes (write the path as it is sent)", quote(s))
		return false
	}
	if err := reqtarget.CheckPath([]byte(s)); err != nil {
		var re *reqtarget.Error
		if errors.As(err, &re) {
			p.add(path, "%s can never match: requests with it are refused (%s)", quote(s), re.Reason)
		}
		return false
	}
	return true
}

// listenAddr checks a listen address "host:port" (host may be empty: all
// interfaces; port 0: any free port).
func (p *problems) listenAddr(path, s string) (host string, port int, ok bool) {
	if s == "" {
		p.add(path, "must not be empty (want host:port, e.g. \":8080\")")
		return "", 0, false
	}
	return p.hostPort(path, s)
}

// hostPort checks s is "host:port" with a numeric port in 0..65535 and a host
// that is empty, an IP address or a host name.
func (p *problems) hostPort(path, s string) (host string, port int, ok bool) {
	host, ps, err := net.SplitHostPort(s)
	if err != nil {
		p.add(path, "%s is not host:port", quote(s))
		return "", 0, false
	}
	port, err = strconv.Atoi(ps)
	if err != nil || port < 0 || port > 65535 || ps == "" || ps[0] == '+' || ps[0] == '-' {
		p.add(path, "%s has an invalid port (want 0-65535)", quote(s))
		return "", 0, false
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && !validHostname(host) {
			p.add(path, "%s has an invalid host", quote(s))
			return "", 0, false
		}
	}
	return host, port, true
}

// hostsOverlap reports whether listeners on the same port at hosts a and b
// would conflict: a wildcard host overlaps everything, localhost overlaps the
// loopback addresses, otherwise the hosts must be equal.
func hostsOverlap(a, b string) bool {
	as, aw := hostAddrs(a)
	bs, bw := hostAddrs(b)
	if aw || bw {
		return true
	}
	for _, x := range as {
		if slices.Contains(bs, x) {
			return true
		}
	}
	return false
}

// hostAddrs returns the comparable forms of a listen host, and whether it is
// a wildcard.
func hostAddrs(h string) (addrs []string, wildcard bool) {
	if h == "" {
		return nil, true
	}
	if ip, err := netip.ParseAddr(h); err == nil {
		ip = ip.Unmap().WithZone("")
		if ip.IsUnspecified() {
			return nil, true
		}
		return []string{ip.String()}, false
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "localhost" {
		return []string{"127.0.0.1", "::1", h}, false
	}
	return []string{h}, false
}

// validHostname reports whether s is a DNS name made of letters, digits,
// hyphens and dots (labels 1-63 bytes, not starting or ending with '-').
func validHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// validRouteHost accepts a host name, optionally with a leading "*." wildcard
// label and a ":port", or a bracketed IPv6 address.
func validRouteHost(s string) bool {
	h := s
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		if _, err := netip.ParseAddr(h[1:end]); err != nil {
			return false
		}
		h = h[end+1:]
		if h == "" {
			return true
		}
		if h[0] != ':' {
			return false
		}
		return validPort(h[1:])
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		if !validPort(h[i+1:]) {
			return false
		}
		h = h[:i]
	}
	h = strings.TrimPrefix(h, "*.")
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return validHostname(h)
}

func validPort(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	n, _ := strconv.Atoi(s)
	return n <= 65535
}

// checkHTTPURL returns "" when s is an absolute http(s) URL with a host and
// no credentials, query or fragment, else the problem. The message repeats s
// with any credentials redacted.
func checkHTTPURL(s string) string {
	shown := quote(RedactURL(s))
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" {
		return shown + " is not an http(s) URL"
	}
	switch {
	case u.Hostname() == "":
		return shown + " has no host"
	case u.Port() != "" && !validPort(u.Port()):
		return shown + " has an invalid port"
	case u.User != nil:
		return shown + " must not contain credentials"
	case u.RawQuery != "" || u.ForceQuery:
		return shown + " must not have a query"
	case u.Fragment != "" || strings.Contains(s, "#"):
		return shown + " must not have a fragment"
	}
	return ""
}

// RedactURL hides the password of a URL (or of anything that looks like one)
// so that it can be shown in an error message or a log line.
func RedactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			return scheme + "://xxxxx" + rest[at:]
		}
	}
	return s
}

// isToken reports whether s is an RFC 9110 token (header names, methods).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}
