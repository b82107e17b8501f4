package proxy

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/configs"
)

// recordingAuthorizer allows what allow says and records who was asked.
type recordingAuthorizer struct {
	allow func(r *authz.Request) bool
	asked chan string // "<type>:<name>|<domain>|<target>"
}

func (a *recordingAuthorizer) Authorize(_ context.Context, r *authz.Request) (authz.Decision, error) {
	a.asked <- r.Identity.UserType + ":" + r.Identity.Username + "|" + r.Domain + "|" + r.Actions[0].Target
	if a.allow(r) {
		return authz.Decision{Allowed: true}, nil
	}
	return authz.Decision{}, authz.ErrDenied
}

// auth: optional routes apply their rules to anonymous callers too (issue
// 12.3): no identity holds no role, and the external authorizer is asked
// about the anonymous principal. A refused anonymous caller gets 401 with
// the challenges; an authenticated one 403 as before.
func TestOptionalRouteRules(t *testing.T) {
	up := newUpstream(t)
	routes := []configs.Route{
		{Name: "opt-roles", PathPrefix: "/roles", Upstreams: []string{up.url()}, Auth: configs.AuthOptional, Roles: []string{"ops"}},
		{Name: "opt-dev", PathPrefix: "/dev", Upstreams: []string{up.url()}, Auth: configs.AuthOptional, Roles: []string{"dev"}},
		{Name: "opt-open", PathPrefix: "/open", Upstreams: []string{up.url()}, Auth: configs.AuthOptional},
	}
	for _, counted := range []bool{true, false} {
		// The native handler counts the route-role decisions; with the
		// external handler (Native nil) the same rule holds, uncounted.
		t.Run(fmt.Sprintf("native counted=%v", counted), func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			var nat *authz.Native
			if counted {
				nat = authz.NewNative(authz.Options{Registerer: reg})
			}
			_, addr := startProxy(t, baseConfig(routes...), Options{Authenticator: testAuth{}, Native: nat})
			allow, deny := 0.0, 0.0
			for _, tc := range []struct {
				name, path, auth string
				want             int
			}{
				{"anonymous, route with roles", "/roles/x", "", 401},
				{"alice without the role", "/roles/x", "Authorization: Bearer good", 403},
				{"anonymous, route with dev", "/dev/x", "", 401},
				{"alice with dev", "/dev/x", "Authorization: ApiKey good", 200},
				{"anonymous, route without roles", "/open/x", "", 200},
				{"alice, route without roles", "/open/x", "Authorization: Bearer good", 200},
				{"Connection: Authorization keeps alice alice", "/dev/x", "Authorization: ApiKey good\r\nConnection: Authorization", 200},
				{"Connection: Authorization does not make alice anonymous", "/roles/x", "Authorization: Bearer good\r\nConnection: Authorization", 403},
			} {
				t.Run(tc.name, func(t *testing.T) {
					var lines []string
					if tc.auth != "" {
						lines = strings.Split(tc.auth, "\r\n")
					}
					r := rawDo(t, addr, get(tc.path, lines...))
					if r.Status != tc.want {
						t.Fatalf("status %d, want %d (%s)", r.Status, tc.want, r.Body)
					}
					if tc.want == 401 && len(r.Header["Www-Authenticate"]) == 0 {
						t.Fatalf("401 without challenges: %v", r.Header)
					}
				})
				if tc.want == 200 {
					allow++
				} else {
					deny++
				}
			}
			if !counted {
				allow, deny = 0, 0
			}
			for result, want := range map[string]float64{"allow": allow, "deny": deny} {
				if got := decisions(t, reg, "native", result); got != want {
					t.Errorf("keygate_authz_decisions_total{handler=native,result=%s} = %v, want %v", result, got, want)
				}
			}
		})
	}
	t.Run("external", func(t *testing.T) {
		ext := &recordingAuthorizer{asked: make(chan string, 16), allow: func(r *authz.Request) bool {
			return !strings.Contains(r.Actions[0].Target, "/private")
		}}
		_, addr := startProxy(t, baseConfig(routes...), Options{Authenticator: testAuth{}, Authorizer: ext})
		for _, tc := range []struct {
			name, path, auth, asked string
			want                    int
		}{
			{"anonymous allowed by the plugin", "/open/pub", "", "anonymous:||opt-open:/open/pub", 200},
			{"anonymous denied by the plugin", "/open/private", "", "anonymous:||opt-open:/open/private", 401},
			{"alice denied by the plugin", "/open/private", "Authorization: Bearer good", ":alice|acme|opt-open:/open/private", 403},
			{"anonymous refused by roles, plugin not asked", "/roles/x", "", "", 401},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var lines []string
				if tc.auth != "" {
					lines = []string{tc.auth}
				}
				r := rawDo(t, addr, get(tc.path, lines...))
				if r.Status != tc.want {
					t.Fatalf("status %d, want %d (%s)", r.Status, tc.want, r.Body)
				}
				var got string
				select {
				case got = <-ext.asked:
				default:
				}
				if got != tc.asked {
					t.Fatalf("authorizer asked %q, want %q", got, tc.asked)
				}
			})
		}
	})
}

// With forward_authorization, Authorization still does not pass when the
// client named it in Connection (hop-by-hop), and it was read first.
func TestConnectionAuthorizationForwardAuthorization(t *testing.T) {
	up := newUpstream(t)
	routes := []configs.Route{{Name: "fwd", PathPrefix: "/", Upstreams: []string{up.url()}, Auth: configs.AuthRequired, ForwardAuthorization: true}}
	_, addr := startProxy(t, baseConfig(routes...), Options{Authenticator: testAuth{}})
	for _, tc := range []struct {
		name    string
		lines   []string
		forward bool
	}{
		{"plain", []string{"Authorization: Bearer good"}, true},
		{"named in Connection", []string{"Authorization: Bearer good", "Connection: keep-alive, authorization"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDo(t, addr, get("/x", tc.lines...))
			if r.Status != 200 {
				t.Fatalf("status %d %s", r.Status, r.Body)
			}
			s := up.last(t)
			if got := s.get("Authorization") != nil; got != tc.forward {
				t.Fatalf("Authorization forwarded=%v, want %v", got, tc.forward)
			}
			if s.one(t, "X-Auth-User") != "alice" {
				t.Fatal("identity not injected")
			}
		})
	}
}

// decisions reads keygate_authz_decisions_total{handler, result} from reg (0
// when the series does not exist).
func decisions(t *testing.T, reg prometheus.Gatherer, handler, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "keygate_authz_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["handler"] == handler && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
