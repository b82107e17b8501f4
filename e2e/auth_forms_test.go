package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/store"
)

// auFormsFixture is the population of the credential-form tests.
type auFormsFixture struct {
	ciID, ciValue     string // alice's key "ci": roles read, write, ghost → read,write
	opsID, opsValue   string // alice's key "opskey": roles ops
	bobID, bobValue   string // bob's key: roles read, ops; bob has only read → read
	frozenID, frozenV string // erin's key; erin's account is disabled
}

func auFillForms(s auStore) auFormsFixture {
	var f auFormsFixture
	s.account("acme")
	s.user("alice", "acme", "", "write", "read", "ops")
	s.user("bob", "acme", "", "read")
	s.user("dave", "acme", "", "read")
	s.account("frozen")
	s.user("erin", "frozen", "", "read")
	f.ciID, f.ciValue = s.key("alice", "ci", "read", "write", "ghost")
	f.opsID, f.opsValue = s.key("alice", "opskey", "ops")
	f.bobID, f.bobValue = s.key("bob", "bobkey", "read", "ops")
	f.frozenID, f.frozenV = s.key("erin", "erinkey", "read")
	disabled := store.StateDisabled
	s.updateUser("dave", store.UserUpdate{State: &disabled})
	s.setAccountState("frozen", store.StateDisabled)
	return f
}

// auFormsRoutes: /ops needs role ops, /opt is optional, the rest required.
func auFormsRoutes(echoAddr string) string {
	up := fmt.Sprintf("[\"http://%s\"]", echoAddr)
	return "  - name: ops\n    path_prefix: /ops\n    upstreams: " + up + "\n    auth: required\n    roles: [ops]\n" +
		"  - name: opt\n    path_prefix: /opt\n    upstreams: " + up + "\n    auth: optional\n" +
		"  - name: api\n    path_prefix: /\n    upstreams: " + up + "\n    auth: required\n"
}

// TestAuthCredentialForms: every credential form of DESIGN.md §3 through the
// real binary (bolt store), the identity headers of §4, route roles,
// optional routes, 401 challenges, near-miss keys and spoofed identity
// headers.
func TestAuthCredentialForms(t *testing.T) {
	t.Parallel()
	var f auFormsFixture
	storeYAML := auBoltFixture(t, t.TempDir(), func(s auStore) { f = auFillForms(s) })
	echoAddr := startEchoProc(t)
	g := startGateway(t, serveOpts{routes: auFormsRoutes(echoAddr), store: storeYAML})
	c := newAuClient(5 * time.Second)
	defer c.close()

	type ident struct{ user, account, roles, method, keyID, keyName string }
	check := func(t *testing.T, r auResp, want ident) {
		t.Helper()
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		got := auIdentity(t, r.body)
		wantH := map[string]string{
			"x-auth-user": want.user, "x-auth-account": want.account, "x-auth-roles": want.roles,
			"x-auth-method": want.method, "x-auth-key-id": want.keyID, "x-auth-key-name": want.keyName,
		}
		for name, w := range wantH {
			v := got[name]
			switch {
			case w == "" && name == "x-auth-roles":
				// No roles: an empty header or none.
				if len(v) > 1 || len(v) == 1 && v[0] != "" {
					t.Errorf("%s = %q, want empty", name, v)
				}
			case w == "":
				if len(v) != 0 {
					t.Errorf("%s = %q, want none", name, v)
				}
			case len(v) != 1 || v[0] != w:
				t.Errorf("%s = %q, want [%q]", name, v, w)
			}
		}
		if v := got["authorization"]; len(v) != 0 {
			t.Errorf("Authorization forwarded upstream: %q", v)
		}
		for name := range got {
			if _, ok := wantH[name]; !ok && name != "authorization" {
				t.Errorf("unexpected identity header upstream: %s = %q", name, got[name])
			}
		}
	}

	t.Run("forms", func(t *testing.T) {
		aliceBasic := ident{"alice", "acme", "ops,read,write", "basic", "", ""}
		aliceCI := ident{"alice", "acme", "read,write", "api_key", f.ciID, "ci"}
		cases := []struct {
			name, authz string
			want        ident
		}{
			{"basic", auBasic("alice", auPassword), aliceBasic},
			{"basic scheme lower case", "basic " + strings.TrimPrefix(auBasic("alice", auPassword), "Basic "), aliceBasic},
		}
		for form, h := range auKeyForms(f.ciID, f.ciValue) {
			cases = append(cases, struct {
				name, authz string
				want        ident
			}{form, h, aliceCI})
		}
		cases = append(cases,
			struct {
				name, authz string
				want        ident
			}{"APIKEY scheme upper case", "APIKEY " + strings.TrimPrefix(auAPIKey(f.ciID, f.ciValue), "ApiKey "), aliceCI},
			struct {
				name, authz string
				want        ident
			}{"bearer scheme lower case", "bearer " + f.ciValue, aliceCI},
		)
		for _, tc := range cases {
			// Twice: the miss path, then the cache.
			for i, path := range []string{"/api/x?q=1", "/api/y"} {
				r := c.get(t, g.url(path), tc.authz, "X-Innocent", "yes")
				t.Run(fmt.Sprintf("%s/%d", tc.name, i), func(t *testing.T) { check(t, r, tc.want) })
			}
		}
	})

	t.Run("key roles are the intersection with the owner's", func(t *testing.T) {
		// bob's key asks for read and ops; bob has only read.
		r := c.get(t, g.url("/api/b"), "Bearer "+f.bobValue)
		check(t, r, ident{"bob", "acme", "read", "api_key", f.bobID, "bobkey"})
		r = c.get(t, g.url("/api/o"), auAPIKey(f.opsID, f.opsValue))
		check(t, r, ident{"alice", "acme", "ops", "api_key", f.opsID, "opskey"})
	})

	t.Run("route roles", func(t *testing.T) {
		for _, tc := range []struct {
			name, authz string
			want        int
		}{
			{"alice by password has ops", auBasic("alice", auPassword), 200},
			{"alice's ops key", "Bearer " + f.opsValue, 200},
			{"alice's key without ops", "Bearer " + f.ciValue, 403},
			{"bob lacks ops", auBasic("bob", auPassword), 403},
			{"bob's key claims ops bob lacks", auBasic("_api_key", f.bobValue), 403},
			{"anonymous", "", 401},
			{"wrong password", auBasic("alice", "nope"), 401},
		} {
			r := c.get(t, g.url("/ops/thing"), tc.authz)
			if r.status != tc.want {
				t.Errorf("%s: status %d, want %d: %s", tc.name, r.status, tc.want, r.body)
			}
			if tc.want == 403 {
				if code := errorCode(r.body); code != "forbidden" {
					t.Errorf("%s: error code %q, want forbidden", tc.name, code)
				}
				if len(r.header.Values("WWW-Authenticate")) != 0 {
					t.Errorf("%s: 403 with a challenge: %q", tc.name, r.header.Values("WWW-Authenticate"))
				}
			}
		}
	})

	t.Run("optional route", func(t *testing.T) {
		r := c.get(t, g.url("/opt/a"), "", "X-Auth-User", "mallory", "X-Auth-Roles", "admin")
		if r.status != 200 {
			t.Fatalf("anonymous: %d %s", r.status, r.body)
		}
		if got := auIdentity(t, r.body); len(got) != 0 {
			t.Errorf("anonymous on an optional route: identity headers upstream: %q", got)
		}
		check(t, c.get(t, g.url("/opt/b"), auBasic("alice", auPassword)), ident{"alice", "acme", "ops,read,write", "basic", "", ""})
		for name, h := range map[string]string{
			"wrong password": auBasic("alice", "wrong"),
			"unknown user":   auBasic("nobody", auPassword),
			"bad key":        "Bearer " + f.ciValue[:len(f.ciValue)-1] + "x",
			"garbage":        "Basic !!!",
		} {
			if r := c.get(t, g.url("/opt/c"), h); r.status != 401 {
				t.Errorf("optional route, %s: status %d, want 401", name, r.status)
			}
		}
	})

	t.Run("challenges", func(t *testing.T) {
		const basicCh, bearerCh = `Basic realm="keygate"`, `Bearer realm="keygate"` //nolint:gosec // test data, not a real credential
		const bearerBad = `Bearer realm="keygate", error="invalid_token"`           //nolint:gosec // test data, not a real credential
		s, _ := apikey.NewSecret()
		for _, tc := range []struct {
			name, authz string
			code        string
			challenges  []string
		}{
			{"no credential", "", "unauthorized", []string{basicCh, bearerCh}},
			{"wrong password", auBasic("alice", "wrong"), "invalid_credentials", []string{basicCh, bearerCh}},
			{"disabled user", auBasic("dave", auPassword), "invalid_credentials", []string{basicCh, bearerCh}},
			{"user of a disabled account", auBasic("erin", auPassword), "invalid_credentials", []string{basicCh, bearerCh}},
			{"key of a disabled account", "Bearer " + f.frozenV, "invalid_credentials", []string{basicCh, bearerBad}},
			{"bad bearer key", "Bearer " + apikey.Format(f.ciID, s), "invalid_credentials", []string{basicCh, bearerBad}},
			{"bearer jwt-shaped junk", "Bearer eyJhbGciOiJub25lIn0.e30.", "invalid_credentials", []string{basicCh, bearerBad}},
			{"bad ApiKey", auAPIKey(f.ciID, apikey.Format(f.ciID, s)), "invalid_credentials", []string{basicCh, bearerCh}},
		} {
			r := c.get(t, g.url("/api/ch"), tc.authz)
			if r.status != 401 {
				t.Errorf("%s: status %d, want 401", tc.name, r.status)
				continue
			}
			if code := errorCode(r.body); code != tc.code {
				t.Errorf("%s: error code %q, want %q", tc.name, code, tc.code)
			}
			got := r.header.Values("WWW-Authenticate")
			if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(tc.challenges))) {
				t.Errorf("%s: WWW-Authenticate %q, want %q", tc.name, got, tc.challenges)
			}
		}
	})

	t.Run("near-miss keys", func(t *testing.T) {
		v := f.ciValue
		secretB := strings.TrimPrefix(f.opsValue, "kg_"+f.opsID+"_")
		secretB = secretB[:len(secretB)-6] // without its checksum
		flip := func(s string, i int) string {
			b := []byte(s)
			if b[i] == 'a' {
				b[i] = 'b'
			} else {
				b[i] = 'a'
			}
			return string(b)
		}
		upper := func(s string, i int) string {
			b := []byte(s)
			switch {
			case b[i] >= 'a' && b[i] <= 'z':
				b[i] -= 32
			case b[i] >= 'A' && b[i] <= 'Z':
				b[i] += 32
			default:
				b[i] = 'Q'
			}
			return string(b)
		}
		misses := map[string]string{
			"last char changed":                     "Bearer " + flip(v, len(v)-1),
			"secret char changed":                   "Bearer " + flip(v, len(v)-10),
			"id char changed":                       "Bearer " + flip(v, 4),
			"case flipped in secret":                "Bearer " + upper(v, len(v)-20),
			"one char short":                        "Bearer " + v[:len(v)-1],
			"one char long":                         "Bearer " + v + "a",
			"checksum dropped":                      "Bearer " + v[:len(v)-6],
			"id of A, secret of B (valid checksum)": "Bearer " + apikey.Format(f.ciID, secretB),
			"ApiKey: id of B, value of A":           auAPIKey(f.opsID, v),
			"ApiKey: id of A, value of B":           auAPIKey(f.ciID, f.opsValue),
			"ApiKey: id with a suffix":              auAPIKey(f.ciID+"x", v),
			"_api_key with a near miss":             auBasic("_api_key", flip(v, len(v)-3)),
			"_api_key upper-cased user":             auBasic("_API_KEY", v),
			"prefix changed":                        "Bearer kh_" + strings.TrimPrefix(v, "kg_"),
			"separator dropped":                     "Bearer kg_" + strings.Replace(strings.TrimPrefix(v, "kg_"), "_", "", 1),
			"whole value doubled":                   "Bearer " + v + v,
			"key as a Basic password":               auBasic("alice", v),
		}
		for name, h := range misses {
			r := c.get(t, g.url("/api/nm"), h)
			if r.status != 401 {
				t.Errorf("%s: status %d, want 401: %s", name, r.status, r.body)
			}
		}
		// None of them evicted or spoiled the good key.
		for form, h := range auKeyForms(f.ciID, v) {
			if r := c.get(t, g.url("/api/nm"), h); r.status != 200 {
				t.Errorf("good key (%s) after the near misses: %d", form, r.status)
			}
		}
	})

	t.Run("spoofed identity headers with valid credentials", func(t *testing.T) {
		spoofs := []string{
			"X-Auth-User: mallory\r\nX-Auth-Account: admin\r\nX-Auth-Roles: admin\r\nX-Auth-Method: api_key\r\n",
			"x-auth-user: mallory\r\nX_Auth_User: mallory2\r\nX.Auth.User: mallory3\r\n",
			"X-Auth-User: mallory\r\nX-Auth-User: mallory2\r\n",
			"X-Auth-Key-Id: k1\r\nX-Auth-Key-Name: stolen\r\nX-AUTH-ROLES: admin\r\n",
			"Connection: X-Auth-User\r\nX-Auth-User: mallory\r\n",
		}
		for i, sp := range spoofs {
			for _, cred := range []struct {
				authz string
				want  ident
			}{
				{auBasic("alice", auPassword), ident{"alice", "acme", "ops,read,write", "basic", "", ""}},
				{"Bearer " + f.ciValue, ident{"alice", "acme", "read,write", "api_key", f.ciID, "ci"}},
			} {
				raw := "GET /api/spoof HTTP/1.1\r\nHost: h\r\nAuthorization: " + cred.authz + "\r\n" + sp + "Connection: close\r\n\r\n"
				rr := rawDo(t, g.public, raw)
				t.Run(fmt.Sprintf("%d/%s", i, cred.want.method), func(t *testing.T) {
					check(t, auResp(rr), cred.want)
				})
			}
		}
	})

	if s := g.stderr.String(); strings.Contains(s, auPassword) || strings.Contains(s, f.ciValue) ||
		strings.Contains(s, f.ciValue[len(f.ciValue)-30:]) {
		t.Error("a password or key value appears in keygate's output")
	}
}

// TestAuthMethodsAPIKeyOnly: auth.methods [api_key] refuses Basic passwords
// (401) and still accepts every API key form, Basic _api_key included.
func TestAuthMethodsAPIKeyOnly(t *testing.T) {
	t.Parallel()
	var f auFormsFixture
	storeYAML := auBoltFixture(t, t.TempDir(), func(s auStore) { f = auFillForms(s) })
	up := startUpstream(t, 0)
	g := startGateway(t, serveOpts{
		routes: auFormsRoutes(up.addr),
		store:  storeYAML,
		extra:  "auth:\n  methods: [api_key]\n",
	})
	c := newAuClient(5 * time.Second)
	defer c.close()
	r := c.want(t, "basic password", g.url("/api/x"), auBasic("alice", auPassword), 401)
	if len(r.header.Values("WWW-Authenticate")) == 0 {
		t.Error("401 without a challenge")
	}
	for form, h := range auKeyForms(f.ciID, f.ciValue) {
		r := c.want(t, form, g.url("/api/x"), h, 200)
		if r.status == 200 {
			if got := auIdentity(t, r.body)["x-auth-method"]; len(got) != 1 || got[0] != "api_key" {
				t.Errorf("%s: X-Auth-Method %q", form, got)
			}
		}
	}
	c.want(t, "anonymous", g.url("/api/x"), "", http.StatusUnauthorized)
}
