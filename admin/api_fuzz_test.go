package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
)

// fixedIdentity authenticates every request as one identity.
type fixedIdentity struct{ id *authn.Identity }

func (f fixedIdentity) Authenticate(context.Context, []byte, netip.Addr) (*authn.Identity, error) {
	return f.id, nil
}

// FuzzAPI sends arbitrary methods, paths, queries and bodies to the API as
// an account admin and as a global admin: never a 500, always a JSON body,
// never a hash.
func FuzzAPI(f *testing.F) {
	seeds := []struct {
		method byte
		path   string
		body   string
	}{
		{0, "/v1/user", ""},
		{1, "/v1/user/api-keys", `{"name":"ci","expires_in":"1h","roles":["read"]}`},
		{1, "/v1/user/api-keys", `{"name":"ci","expires_at":"2026-13-01T00:00:00Z"}`},
		{1, "/v1/accounts", `{"name":"x\u0000"}`},
		{1, "/v1/accounts/acme/users", `{"username":"carl","password":"Carl-Pa55word-long","type":"admin","roles":[]}`},
		{2, "/v1/accounts/acme/users/alice", `{"roles":null,"state":"disabled","type":"user","password":"x"}`},
		{3, "/v1/api-keys", `{"ids":["a","b",""],"name":"ci"}`},
		{0, "/v1/api-keys?status=all&limit=1&cursor=azEuQUFB", ""},
		{0, "/v1/api-keys?limit=99999999999999999999", ""},
		{4, "/v1/user/password", `{"current":"","new":"\ud800"}`},
		{3, "/v1/accounts/%2e%2e", ""},
		{1, "/v1/user/api-keys", `[1,2,3]`},
		{1, "/v1/user/api-keys", `{"name":"` + string(bytes.Repeat([]byte("a"), 300)) + `"}`},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, []byte(s.body), false)
		f.Add(s.method, s.path, []byte(s.body), true)
	}
	dir := f.TempDir()
	st, err := boltstore.Open(filepath.Join(dir, "kg.db"), boltstore.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	ctx := context.Background()
	if _, err := store.Bootstrap(ctx, st, apiTestHasher.Hash, pwRoot, io.Discard); err != nil {
		f.Fatal(err)
	}
	if err := st.CreateAccount(ctx, &store.Account{Name: "acme"}); err != nil {
		f.Fatal(err)
	}
	h, _ := apiTestHasher.Hash(pwAlice)
	if err := st.CreateUser(ctx, &store.User{Username: "alice", Account: "acme", Roles: []string{"read"}, PasswordHash: h}); err != nil {
		f.Fatal(err)
	}
	if err := st.CreateUser(ctx, &store.User{Username: "aadmin", Account: "acme", Type: store.TypeAccountAdmin, Roles: []string{"read"}, PasswordHash: h}); err != nil {
		f.Fatal(err)
	}
	routers := [2]*Router{{}, {}}
	for i, id := range []*authn.Identity{
		{Username: "aadmin", Account: "acme", UserType: "account_admin", Method: authn.MethodBasic},
		{Username: "admin", Account: "admin", UserType: "admin", Method: authn.MethodBasic},
	} {
		if err := RegisterAPI(routers[i], APIDeps{Store: st, Auth: fixedIdentity{id}, Hasher: apiTestHasher,
			APIKeys: configs.APIKeys{MaxLifetime: configs.Duration(8760 * 3600e9)}}); err != nil {
			f.Fatal(err)
		}
	}
	methods := []string{"GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"}
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	f.Fuzz(func(t *testing.T, m byte, path string, body []byte, global bool) {
		var req fasthttp.Request
		req.Header.SetMethod(methods[int(m)%len(methods)])
		req.SetRequestURI(path)
		req.Header.SetContentType("application/json")
		req.SetBody(body)
		var rc fasthttp.RequestCtx
		rc.Init(&req, remote, nil)
		r := routers[0]
		if global {
			r = routers[1]
		}
		r.Serve(&rc)
		status := rc.Response.StatusCode()
		out := rc.Response.Body()
		if status >= 500 && status != fasthttp.StatusServiceUnavailable {
			t.Fatalf("%s %q %q: status %d %s", req.Header.Method(), path, body, status, out)
		}
		if len(out) > 0 && !json.Valid(out) {
			t.Fatalf("not JSON: %s", out)
		}
		if bytes.Contains(out, []byte("$argon2")) {
			t.Fatalf("hash in response: %s", out)
		}
	})
}
