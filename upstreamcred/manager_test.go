package upstreamcred

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keygate/keygate/internal/testoauth"
	"github.com/keygate/keygate/store"
)

const clientSecret = "cc-secret-7f3a9d2e1b" //nolint:gosec // test data, not a real credential

func ccFields(srv *testoauth.Server, extra ...string) map[string]string {
	f := map[string]string{"token_url": srv.TokenURL, "client_id": "svc-client", "scopes": "read write"}
	for i := 0; i+1 < len(extra); i += 2 {
		f[extra[i]] = extra[i+1]
	}
	return f
}

func TestClientCredentialsAgainstRealServer(t *testing.T) {
	srv := testoauth.New(t)
	srv.AddClient("svc-client", clientSecret)
	f := newFixture(t)
	for _, style := range []string{"header", "params"} {
		name := "cc-" + style
		f.mustCreate("acme", name, "oauth2_client_credentials", ccFields(srv, "auth_style", style), clientSecret)
		k, v := f.header(name, "acme")
		if k != "Authorization" || !strings.HasPrefix(v, "Bearer ") || !srv.Valid(v[7:]) {
			t.Errorf("%s: header %s: %s is not a valid token of the server", style, k, v)
		}
	}
	c, err := f.st.GetUpstreamCredential(t.Context(), "acme", "cc-header")
	if err != nil || c.Validation != ValidationOK || c.ValidatedAt.IsZero() {
		t.Errorf("validation not recorded: %+v, %v", c, err)
	}
}

func TestGoogleServiceAccountAgainstRealServer(t *testing.T) {
	srv := testoauth.New(t)
	key := srv.ServiceAccountKey("robot@keygate-test.iam.gserviceaccount.com")
	f := newFixture(t)
	f.mustCreate("acme", "gsa", "google_service_account",
		map[string]string{"scopes": "https://www.googleapis.com/auth/cloud-platform"}, string(key))
	_, v := f.header("gsa", "acme")
	if !strings.HasPrefix(v, "Bearer ") || !srv.Valid(v[7:]) {
		t.Fatalf("header %q is not a valid token", v)
	}
	// A key the server does not know is refused at validation: 4xx and
	// an RFC 6749 code, nothing stored.
	other := testoauth.New(t)
	otherKey := strings.Replace(string(other.ServiceAccountKey("robot@keygate-test.iam.gserviceaccount.com")), other.TokenURL, srv.TokenURL, 1)
	err := f.create("acme", "gsa2", "google_service_account", map[string]string{"scopes": "x"}, otherKey, true)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Status < 400 || ve.Code == "" {
		t.Fatalf("unknown key: err = %v", err)
	}
	if _, err := f.st.GetUpstreamCredential(t.Context(), "acme", "gsa2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a credential that failed validation was stored: %v", err)
	}
}

func TestRefreshBeforeExpiry(t *testing.T) {
	srv := testoauth.New(t)
	srv.AddClient("svc-client", clientSecret)
	srv.SetTokenLifetime(4 * time.Second) // expires_in 3: refreshed 1 s before expiry
	f := newFixture(t)
	f.mustCreate("acme", "cc", "oauth2_client_credentials", ccFields(srv), clientSecret)
	start := time.Now()
	_, v1 := f.header("cc", "acme")
	n := srv.Fetches()
	// The background refresh replaces the token before it expires, with
	// no request waiting for it.
	var v2 string
	eventually(t, 3*time.Second, "background refresh", func() bool {
		tok := f.m.Header
		_, v, _, err := tok("cc", "acme", time.Now())
		v2 = string(v)
		return err == nil && v2 != v1
	})
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("refreshed after %v: the old token had expired", el)
	}
	if !srv.Valid(v1[7:]) {
		t.Error("the old token expired before the refresh")
	}
	if !srv.Valid(v2[7:]) {
		t.Error("the refreshed token is not valid")
	}
	if got := srv.Fetches() - n; got != 1 {
		t.Errorf("%d fetches for one refresh", got)
	}
	if testutil.CollectAndCount(f.m.met.lag) == 0 {
		t.Error("no refresh lag observed")
	}
}

func TestConcurrentRequestsShareOneFetch(t *testing.T) {
	srv := testoauth.New(t)
	srv.AddClient("svc-client", clientSecret)
	f := newFixture(t)
	if err := f.create("acme", "cc", "oauth2_client_credentials", ccFields(srv), clientSecret, false); err != nil {
		t.Fatal(err)
	}
	n := srv.Fetches()
	var wg sync.WaitGroup
	vals := make([]string, 64)
	for i := range vals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, v, _, err := f.m.Header("cc", "acme", time.Now())
			if err != nil {
				t.Error(err)
			}
			vals[i] = string(v)
		}()
	}
	wg.Wait()
	if got := srv.Fetches() - n; got != 1 {
		t.Errorf("%d token fetches for 64 concurrent first requests, want 1", got)
	}
	for _, v := range vals {
		if v != vals[0] {
			t.Fatal("concurrent requests got different tokens")
		}
	}
}

func TestFallbackWhileTokenEndpointFails(t *testing.T) {
	srv := testoauth.New(t)
	srv.AddClient("svc-client", clientSecret)
	srv.SetTokenLifetime(4 * time.Second) // expires_in 3, refresh at 2
	f := newFixture(t)
	f.mustCreate("acme", "cc", "oauth2_client_credentials", ccFields(srv), clientSecret)
	start := time.Now()
	_, v1 := f.header("cc", "acme")
	srv.Fail(http.StatusServiceUnavailable)
	// Past the planned refresh, the refresh fails: the old token is used.
	time.Sleep(time.Until(start.Add(2500 * time.Millisecond)))
	if _, v := f.header("cc", "acme"); v != v1 {
		t.Fatalf("token changed while the endpoint fails")
	}
	if testutil.ToFloat64(f.m.met.failures.WithLabelValues("oauth2_client_credentials")) == 0 {
		t.Error("failed refresh not counted")
	}
	// Past expiry: unavailable (502), never the expired token.
	time.Sleep(time.Until(start.Add(3200 * time.Millisecond)))
	_, _, missing, err := f.m.Header("cc", "acme", time.Now())
	if missing || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after expiry with the endpoint down: missing %v, err %v", missing, err)
	}
	if strings.Contains(err.Error(), clientSecret) {
		t.Error("error has the secret")
	}
	// Requests meanwhile answer at once and do not hammer the endpoint:
	// attempts follow the retry schedule (200 ms doubling), not the
	// request rate.
	n := srv.Fetches()
	begin := time.Now()
	for time.Since(begin) < time.Second {
		reqStart := time.Now()
		if _, _, _, err := f.m.Header("cc", "acme", time.Now()); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("during the outage: %v", err)
		}
		if d := time.Since(reqStart); d > 500*time.Millisecond {
			t.Fatalf("a request waited %v for the dead endpoint", d)
		}
		time.Sleep(time.Millisecond)
	}
	if d := srv.Fetches() - n; d > 6 {
		t.Errorf("%d token requests in 1 s of outage", d)
	}
	// The endpoint recovers: a new token follows the next retry.
	srv.Fail(0)
	eventually(t, 15*time.Second, "token after recovery", func() bool {
		_, v, _, err := f.m.Header("cc", "acme", time.Now())
		return err == nil && string(v) != v1 && srv.Valid(string(v[7:]))
	})
}

func TestUpstream401RefreshesOnce(t *testing.T) {
	srv := testoauth.New(t)
	srv.AddClient("svc-client", clientSecret)
	f := newFixture(t)
	f.mustCreate("acme", "cc", "oauth2_client_credentials", ccFields(srv), clientSecret)
	_, v1 := f.header("cc", "acme")
	srv.Revoke() // the upstream now answers 401 to v1
	n := srv.Fetches()
	var wg sync.WaitGroup
	got := make([]string, 16)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, v, ok := f.m.Rejected("cc", "acme", []byte(v1))
			if ok {
				got[i] = string(v)
			}
		}()
	}
	wg.Wait()
	for _, v := range got {
		if v == "" || v == v1 || !srv.Valid(v[7:]) {
			t.Fatalf("Rejected gave %q", v)
		}
	}
	if d := srv.Fetches() - n; d != 1 {
		t.Errorf("%d fetches for 16 concurrent 401s, want 1", d)
	}
	// A static credential has nothing to refresh.
	f.mustCreate("acme", "static", "bearer", nil, "tok")
	f.header("static", "acme")
	if _, _, ok := f.m.Rejected("static", "acme", []byte("Bearer tok")); ok {
		t.Error("a static credential was 'refreshed'")
	}
}

func TestValidationFailures(t *testing.T) {
	srv := testoauth.New(t)
	srv.AddClient("svc-client", clientSecret)
	// An endpoint that echoes what it was sent, secret included, in its
	// error and in a made-up error code.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		u, p, _ := r.BasicAuth()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		//nolint:gosec // a test token endpoint that echoes the secret on purpose (JSON, not HTML)
		_, _ = w.Write([]byte(`{"error":"` + p + `","error_description":"bad client ` + u + `:` + p + `"}`))
	}))
	t.Cleanup(echo.Close)
	denied := upstream(t, func(*http.Request) bool { return false })
	okUp := upstream(t, func(r *http.Request) bool { return srv.Valid(bearerOf(r)) })
	f := newFixture(t)

	tests := []struct {
		name   string
		fields map[string]string
		secret string
		step   string
		status int
		code   string
	}{
		{"wrong secret", ccFields(srv), "wrong-secret-4411", "token", 401, "invalid_client"},
		{"echoing endpoint", map[string]string{"token_url": echo.URL, "client_id": "c"}, "Echoed_Secret_9931", "token", 400, "other"},
		{"unreachable", map[string]string{"token_url": "http://127.0.0.1:1/token", "client_id": "c"}, clientSecret, "token", 0, ""}, //nolint:gosec // test data
		{"validate_url refuses", ccFields(srv, "validate_url", denied.URL), clientSecret, "validate_url", 401, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := f.create("acme", "v", "oauth2_client_credentials", tc.fields, tc.secret, true)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			if ve.Step != tc.step || ve.Status != tc.status || ve.Code != tc.code {
				t.Errorf("got %+v, want step %s status %d code %q", ve, tc.step, tc.status, tc.code)
			}
			if strings.Contains(err.Error(), tc.secret) {
				t.Errorf("error has the secret: %v", err)
			}
			if _, err := f.st.GetUpstreamCredential(t.Context(), "acme", "v"); !errors.Is(err, store.ErrNotFound) {
				t.Error("stored after a failed validation")
			}
			// validate=false stores it without asking anyone.
			if err := f.create("acme", "v", "oauth2_client_credentials", tc.fields, tc.secret, false); err != nil {
				t.Fatal(err)
			}
			c, _ := f.st.GetUpstreamCredential(t.Context(), "acme", "v")
			if c == nil || c.Validation != ValidationSkipped {
				t.Errorf("skipped validation not recorded: %+v", c)
			}
			_ = f.st.DeleteUpstreamCredential(t.Context(), "acme", "v")
		})
	}
	f.mustCreate("acme", "good", "oauth2_client_credentials", ccFields(srv, "validate_url", okUp.URL), clientSecret)
}

func TestResolutionAndIsolation(t *testing.T) {
	f := newFixture(t)
	f.mustCreate("acme", "svc", "bearer", nil, "acme-token")
	f.mustCreate(store.AdminAccount, "svc", "bearer", nil, "global-token")
	f.mustCreate("beta", "own", "header", map[string]string{"name": "X-Api-Key"}, "beta-key")
	tests := []struct {
		name, account string
		want          string // "" : missing
	}{
		{"svc", "acme", "Bearer acme-token"},
		{"svc", "beta", "Bearer global-token"},
		{"svc", "", "Bearer global-token"},
		{"svc", store.AdminAccount, "Bearer global-token"},
		{"own", "beta", "beta-key"},
		{"own", "acme", ""}, // beta's credential never serves acme
		{"own", "", ""},
		{"nothing", "acme", ""},
	}
	for range 2 { // cold, then cached
		for _, tc := range tests {
			_, v, missing, err := f.m.Header(tc.name, tc.account, time.Now())
			if err != nil || missing != (tc.want == "") || string(v) != tc.want {
				t.Errorf("Header(%s, %q) = %q, missing %v, err %v; want %q", tc.name, tc.account, v, missing, err, tc.want)
			}
		}
	}
}

func TestInvalidationReachesCache(t *testing.T) {
	f := newFixture(t)
	f.mustCreate(store.AdminAccount, "svc", "bearer", nil, "v1")
	if _, v := f.header("svc", "acme"); v != "Bearer v1" {
		t.Fatal(v)
	}
	// Update: the next request uses the new secret.
	if _, err := f.m.Update(t.Context(), store.AdminAccount, "svc", nil, []byte("v2"), false); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "update seen", func() bool { _, v := f.header("svc", "acme"); return v == "Bearer v2" })
	// acme's own credential shadows admin's at once.
	f.mustCreate("acme", "svc", "bearer", nil, "acme")
	eventually(t, 2*time.Second, "shadow seen", func() bool { _, v := f.header("svc", "acme"); return v == "Bearer acme" })
	// Deletions: back to admin's, then missing.
	if err := f.m.Delete(t.Context(), "acme", "svc"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "delete seen", func() bool { _, v := f.header("svc", "acme"); return v == "Bearer v2" })
	if err := f.m.Delete(t.Context(), store.AdminAccount, "svc"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "delete seen", func() bool {
		_, _, missing, _ := f.m.Header("svc", "acme", time.Now())
		return missing
	})
}

func TestKeyRotationReencryptsOnWrite(t *testing.T) {
	f := newFixture(t)
	f.mustCreate("acme", "svc", "basic", map[string]string{"username": "u"}, "pw-rotation")
	old, _ := f.st.GetUpstreamCredential(t.Context(), "acme", "svc")
	newKey := testKey(t)
	f.m = f.manager(testKeyring(t, newKey, f.key))
	if _, v := f.header("svc", "acme"); v != "Basic dTpwdy1yb3RhdGlvbg==" {
		t.Fatalf("record under the previous key: %q", v)
	}
	if _, err := f.m.Update(t.Context(), "acme", "svc", map[string]string{"username": "u"}, nil, false); err != nil {
		t.Fatal(err)
	}
	c, _ := f.st.GetUpstreamCredential(t.Context(), "acme", "svc")
	if c.KeyID == old.KeyID || c.KeyID != testKeyring(t, newKey, nil).CurrentID() {
		t.Errorf("not re-sealed under the current key: %s (was %s)", c.KeyID, old.KeyID)
	}
	if p, err := testKeyring(t, newKey, nil).Open(c); err != nil || string(p) != "pw-rotation" {
		t.Errorf("re-sealed record: %q, %v", p, err)
	}
	// Without a key nothing is stored.
	noKey := f.manager(nil)
	err := noKey.Create(t.Context(), &store.UpstreamCredential{Account: "acme", Name: "x", Type: "bearer"}, []byte("t"), false)
	if !errors.Is(err, ErrNoKey) {
		t.Errorf("create without a key: %v", err)
	}
}

func TestBoltFileHasNoSecret(t *testing.T) {
	srv := testoauth.New(t)
	srv.AddClient("svc-client", clientSecret)
	f := newFixture(t)
	secrets := map[string]string{"basic": "Basic-Password-5521", "bearer": "Bearer-Token-8812", "header": "Header-Value-3391"} //nolint:gosec // test data
	f.mustCreate("acme", "b", "basic", map[string]string{"username": "u"}, secrets["basic"])
	f.mustCreate("acme", "t", "bearer", nil, secrets["bearer"])
	f.mustCreate("acme", "h", "header", map[string]string{"name": "X-Key"}, secrets["header"])
	f.mustCreate("acme", "cc", "oauth2_client_credentials", ccFields(srv), clientSecret)
	secrets["cc"] = clientSecret
	_ = f.st.Close()
	b, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	for k, s := range secrets {
		if strings.Contains(string(b), s) {
			t.Errorf("the bolt file has the %s secret in clear", k)
		}
	}
	if !strings.Contains(string(b), "svc-client") {
		t.Error("sanity: the non-secret client_id is not in the file")
	}
}

func TestHeaderWarmAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under -race")
	}
	srv := testoauth.New(t)
	srv.AddClient("svc-client", clientSecret)
	f := newFixture(t)
	f.mustCreate("acme", "cc", "oauth2_client_credentials", ccFields(srv), clientSecret)
	f.mustCreate(store.AdminAccount, "static", "bearer", nil, "t")
	f.header("cc", "acme")
	f.header("static", "acme")
	now := time.Now()
	for _, name := range []string{"cc", "static"} {
		if n := testing.AllocsPerRun(1000, func() {
			_, _, _, _ = f.m.Header(name, "acme", now)
		}); n != 0 {
			t.Errorf("warm Header(%s) allocates %.1f times", name, n)
		}
	}
}

// BenchmarkHeaderWarm: the request-path cost of a cached credential.
func BenchmarkHeaderWarm(b *testing.B) {
	f := newFixture(b)
	f.mustCreate(store.AdminAccount, "static", "bearer", nil, "t")
	f.header("static", "acme")
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _, _, _ = f.m.Header("static", "acme", now)
		}
	})
}
