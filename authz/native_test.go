package authz_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authz"
	"github.com/keygate/keygate/configs"
)

func TestAllowRoute(t *testing.T) {
	t.Parallel()
	alice := ident("alice", "acme", "dev", "ops") // sorted
	none := ident("nobody", "acme")
	cases := []struct {
		name  string
		id    *authn.Identity
		roles []string
		want  bool
	}{
		{"no roles required, authenticated", alice, nil, true},
		{"no roles required, no roles held", none, nil, true},
		{"no roles required, anonymous", nil, nil, false},
		{"roles required, anonymous", nil, []string{"dev"}, false},
		{"first of any", alice, []string{"dev", "admin"}, true},
		{"last of any", alice, []string{"admin", "ops"}, true},
		{"none held", alice, []string{"admin", "billing"}, false},
		{"no roles held", none, []string{"dev"}, false},
		{"case matters", alice, []string{"DEV"}, false},
		{"prefix is not a role", alice, []string{"de"}, false},
		{"empty role name", alice, []string{""}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := authz.AllowRoute(tc.id, tc.roles); got != tc.want {
				t.Fatalf("AllowRoute = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNativeAuthorize(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	n, err := authz.NewNative([]authz.RouteRule{
		{Name: "api", Roles: []string{"dev", " ops "}},
		{Name: "billing", Roles: []string{"billing"}, Methods: []string{"get", "POST"}},
		{Name: "public"},
	}, authz.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	alice := ident("alice", "acme", "dev")
	bob := ident("bob", "acme", "billing")
	cases := []struct {
		name    string
		req     *authz.Request
		allowed bool
	}{
		{"role held", request(alice, act("GET", "api:/x")), true},
		{"trimmed role", request(ident("o", "acme", "ops"), act("GET", "api:/x")), true},
		{"role missing", request(bob, act("GET", "api:/x")), false},
		{"method allowed", request(bob, act("POST", "billing:/invoices")), true},
		{"method upper-cased at compile", request(bob, act("GET", "billing:/invoices")), true},
		{"method not allowed", request(bob, act("DELETE", "billing:/invoices")), false},
		{"any authenticated", request(ident("x", "y"), act("PUT", "public:/")), true},
		{"every action must pass", request(alice, act("GET", "api:/a"), act("GET", "billing:/b")), false},
		{"all pass", request(alice, act("GET", "api:/a"), act("PUT", "public:/b")), true},
		{"unknown route", request(alice, act("GET", "nope:/")), false},
		{"no route separator", request(alice, act("GET", "api")), false},
		{"route name prefix is not the route", request(alice, act("GET", "ap:/x")), false},
		{"colon in path keeps the route", request(alice, act("GET", "api:/a:b")), true},
		{"no actions", request(alice), false},
		{"nil identity", &authz.Request{Actions: []authz.Action{act("GET", "public:/")}}, false},
		{"nil request", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := n.Authorize(context.Background(), tc.req)
			if tc.allowed {
				if err != nil || !d.Allowed {
					t.Fatalf("Authorize = %+v, %v; want allowed", d, err)
				}
				return
			}
			if !errors.Is(err, authz.ErrDenied) || d.Allowed {
				t.Fatalf("Authorize = %+v, %v; want ErrDenied", d, err)
			}
			if authz.Status(err) != 403 {
				t.Fatalf("Status = %d", authz.Status(err))
			}
		})
	}
	// Both the Authorizer and the fast path count decisions.
	n.AllowRoute(alice, []string{"dev"})
	n.AllowRoute(nil, nil)
	text := exposition(t, reg)
	for _, want := range []string{
		`keygate_authz_decisions_total{handler="native",result="allow"} 8`,
		`keygate_authz_decisions_total{handler="native",result="deny"} 10`,
		`keygate_authz_decisions_total{handler="native",result="error"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s:\n%s", want, text)
		}
	}
}

func TestNewNativeErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		rules []authz.RouteRule
		want  string
	}{
		{"duplicate", []authz.RouteRule{{Name: "a"}, {Name: "a"}}, `route "a" defined twice`},
		{"empty name", []authz.RouteRule{{Name: ""}}, "must be non-empty"},
		{"colon", []authz.RouteRule{{Name: "a:b"}}, "contain no ':'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := authz.NewNative(tc.rules, authz.Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestNewSelectsHandler(t *testing.T) {
	t.Parallel()
	cfg := configs.Default()
	cfg.Routes = []configs.Route{{Name: "api", Roles: []string{"dev"}}}
	a, err := authz.New(cfg, authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.(*authz.Native); !ok {
		t.Fatalf("default handler is %T", a)
	}
	if _, err := a.Authorize(context.Background(), request(ident("a", "b", "dev"), act("GET", "api:/"))); err != nil {
		t.Fatal(err)
	}
	cfg.Authorization.Handler = configs.HandlerExternal
	a, err = authz.New(cfg, authz.Options{MaxEntries: 100})
	if err != nil {
		t.Fatal(err)
	}
	e, ok := a.(*authz.External)
	if !ok {
		t.Fatalf("external handler is %T", a)
	}
	_ = e.Close()
	cfg.Authorization.Handler = "opa"
	if _, err := authz.New(cfg, authz.Options{}); err == nil {
		t.Fatal("unknown handler accepted")
	}
}

func TestRequestPool(t *testing.T) {
	t.Parallel()
	r := authz.AcquireRequest()
	method, path := []byte("GET"), []byte("/v1/things")
	r.AddRouteAction(method, "api", path)
	method[0], path[1] = 'X', 'X' // the request owns copies
	r.AddRouteAction([]byte("POST"), "api", []byte(strings.Repeat("/p", 300)))
	if r.Actions[0] != act("GET", "api:/v1/things") {
		t.Fatalf("first action = %+v", r.Actions[0])
	}
	if r.Actions[1].Action != "POST" || r.Actions[1].Target != "api:"+strings.Repeat("/p", 300) {
		t.Fatalf("second action = %+v", r.Actions[1])
	}
	r.AddAction("create_user", "admin:acme")
	if len(r.Actions) != 3 || r.Actions[2].Target != "admin:acme" {
		t.Fatalf("actions = %+v", r.Actions)
	}
	authz.ReleaseRequest(r)
	r = authz.AcquireRequest()
	if r.Identity != nil || r.Domain != "" || len(r.Actions) != 0 {
		t.Fatalf("pooled request not reset: %+v", r)
	}
	authz.ReleaseRequest(r)
}

func TestStatus(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want int
	}{
		{nil, 200},
		{authz.ErrDenied, 403},
		{authz.ErrUnavailable, 503},
		{errors.New("other"), 403},
	}
	for _, tc := range cases {
		if got := authz.Status(tc.err); got != tc.want {
			t.Errorf("Status(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
