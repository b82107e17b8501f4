package authz_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authz"
)

func TestNativeAllow(t *testing.T) {
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
		{"no roles required, anonymous", nil, nil, true},
		{"roles required, anonymous", nil, []string{"dev"}, false},
		{"first of any", alice, []string{"dev", "admin"}, true},
		{"last of any", alice, []string{"admin", "ops"}, true},
		{"none held", alice, []string{"admin", "billing"}, false},
		{"no roles held", none, []string{"dev"}, false},
		{"case matters", alice, []string{"DEV"}, false},
		{"prefix is not a role", alice, []string{"de"}, false},
		{"empty role name", alice, []string{""}, false},
	}
	reg := prometheus.NewPedanticRegistry()
	n := authz.NewNative(authz.Options{Registerer: reg})
	var nilNative *authz.Native // the external handler's: same rule, not counted
	allow, deny := 0, 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := n.Allow(tc.id, tc.roles); got != tc.want {
				t.Fatalf("Allow = %v, want %v", got, tc.want)
			}
			if got := nilNative.Allow(tc.id, tc.roles); got != tc.want {
				t.Fatalf("nil Native: Allow = %v, want %v", got, tc.want)
			}
		})
		if tc.want {
			allow++
		} else {
			deny++
		}
	}
	text := exposition(t, reg)
	for _, want := range []string{
		fmt.Sprintf(`keygate_authz_decisions_total{handler="native",result="allow"} %d`, allow),
		fmt.Sprintf(`keygate_authz_decisions_total{handler="native",result="deny"} %d`, deny),
		`keygate_authz_decisions_total{handler="native",result="error"} 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s:\n%s", want, text)
		}
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
