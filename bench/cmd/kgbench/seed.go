package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/authn/apikey"
	"github.com/keygate/keygate/authn/password"
	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
	"github.com/keygate/keygate/store/boltstore"
	"github.com/keygate/keygate/store/redisstore"
)

// The bench's principals. The password is random-looking so that a password
// policy on the admin API accepts it.
const (
	benchAccount  = "bench"
	benchUser     = "alice"
	benchPassword = "Bench-7c1e9a-Pw-4f2d" //nolint:gosec // the bench's throw-away password for its local peers
	adminUser     = "admin"
	adminPassword = "Admin-bench-93b1-e7a0" //nolint:gosec // the bench's throw-away password for its local peers
)

// fixture is what the scenarios authenticate with.
type fixture struct {
	keyID, keyValue string // an API key of benchUser
	via             string // "admin API" or "store"
}

func basicAuth(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

// forms are the credential forms of DESIGN.md §3 for the fixture, in order.
func (f *fixture) forms() [][2]string {
	return [][2]string{
		{"basic", basicAuth(benchUser, benchPassword)},
		{"basic_api_key", basicAuth("_api_key", f.keyValue)},
		{"apikey", "ApiKey " + base64.StdEncoding.EncodeToString([]byte(f.keyID+":"+f.keyValue))},
		{"bearer_kg", "Bearer " + f.keyValue},
	}
}

// seeder creates the fixture: through the admin API when it answers (the
// path every operator uses), else straight into the store.
type seeder interface {
	seed(ctx context.Context, keyName string) (*fixture, error)
}

// adminSeeder uses DESIGN.md §6.
type adminSeeder struct{ base string }

// adminAPIAnswers reports whether GET /v1/user with the admin's credentials
// answers 200, i.e. the admin API exists and authenticates.
func adminAPIAnswers(base string) bool {
	code, err := get(base+"/v1/user", basicAuth(adminUser, adminPassword))
	return err == nil && code == http.StatusOK
}

func (a adminSeeder) call(method, path string, body any, want ...int) ([]byte, error) {
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(method, a.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", basicAuth(adminUser, adminPassword))
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(resp.Body)
	for _, w := range want {
		if resp.StatusCode == w {
			return out, nil
		}
	}
	return nil, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, out)
}

func (a adminSeeder) seed(_ context.Context, keyName string) (*fixture, error) {
	if _, err := a.call(http.MethodPost, "/v1/accounts", map[string]string{"name": benchAccount}, 201, 200, 409); err != nil {
		return nil, err
	}
	if _, err := a.call(http.MethodPost, "/v1/accounts/"+benchAccount+"/users", map[string]any{
		"username": benchUser, "password": benchPassword, "type": "user", "roles": []string{"read"},
	}, 201, 200, 409); err != nil {
		return nil, err
	}
	out, err := a.call(http.MethodPost, "/v1/accounts/"+benchAccount+"/users/"+benchUser+"/api-keys",
		map[string]any{"name": keyName, "description": "keygate bench"}, 201, 200)
	if err != nil {
		return nil, err
	}
	var k struct {
		ID     string `json:"id"`
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal(out, &k); err != nil || k.APIKey == "" || k.ID == "" {
		return nil, fmt.Errorf("create api key: unexpected answer %s", out)
	}
	return &fixture{keyID: k.ID, keyValue: k.APIKey, via: "admin API"}, nil
}

// storeSeeder writes to a store directly, the way the store tests do.
type storeSeeder struct{ st store.Store }

func (s storeSeeder) seed(ctx context.Context, keyName string) (*fixture, error) {
	if err := s.st.CreateAccount(ctx, &store.Account{Name: benchAccount}); err != nil && !errors.Is(err, store.ErrConflict) {
		return nil, fmt.Errorf("create account: %w", err)
	}
	if _, err := s.st.GetUser(ctx, benchUser); errors.Is(err, store.ErrNotFound) {
		h, err := password.New(password.DefaultParams, 1).Hash(benchPassword)
		if err != nil {
			return nil, err
		}
		if err := s.st.CreateUser(ctx, &store.User{Username: benchUser, Account: benchAccount,
			Type: store.TypeUser, Roles: []string{"read"}, PasswordHash: h}); err != nil {
			return nil, fmt.Errorf("create user: %w", err)
		}
	} else if err != nil {
		return nil, err
	}
	k, value, err := createKey(ctx, s.st, benchUser, keyName)
	if err != nil {
		return nil, err
	}
	return &fixture{keyID: k.ID, keyValue: value, via: "store"}, nil
}

// createKey creates an API key of user directly in st and returns its value.
func createKey(ctx context.Context, st store.Store, user, name string) (*store.APIKey, string, error) {
	secret, err := apikey.NewSecret()
	if err != nil {
		return nil, "", err
	}
	h, err := apikey.Hash([]byte(secret))
	if err != nil {
		return nil, "", err
	}
	k := &store.APIKey{Name: name, Username: user, Roles: []string{"read"}, Hash: h}
	if err := st.CreateAPIKey(ctx, k); err != nil {
		return nil, "", fmt.Errorf("create api key: %w", err)
	}
	return k, apikey.Format(k.ID, secret), nil
}

// seedBolt opens the bolt file (keygate must not be running: bbolt holds
// an exclusive lock) and seeds it.
func seedBolt(path, keyName string) (*fixture, error) {
	st, err := boltstore.Open(path, boltstore.Options{})
	if err != nil {
		return nil, err
	}
	defer func() { _ = st.Close() }()
	return storeSeeder{st}.seed(context.Background(), keyName)
}

func openRedis(addr string) (*redisstore.Store, error) {
	return redisstore.New(configs.Redis{Addrs: []string{addr}, KeyPrefix: "kg:", PoolSize: 64}, redisstore.Options{})
}

// wsUsers is how many users the working-set keys are spread over.
const wsUsers = 100

// loadKeys creates keys from..to-1 of the working set in Redis (straight
// into the store: one script per key, 64 at once) and appends their
// Authorization values ("Bearer kg_…") to file, in order of index.
func loadKeys(st *redisstore.Store, file string, from, to int, progress func(done int)) error {
	ctx := context.Background()
	if from == 0 {
		for u := range wsUsers {
			name := fmt.Sprintf("ws%03d", u)
			h, err := password.New(password.Params{Memory: 8 * 1024, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, 1).Hash("unused-" + name)
			if err != nil {
				return err
			}
			err = st.CreateUser(ctx, &store.User{Username: name, Account: benchAccount, Type: store.TypeUser,
				Roles: []string{"read"}, PasswordHash: h})
			if err != nil && !errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("create user %s: %w", name, err)
			}
		}
	}
	values := make([]string, to-from)
	var next, done atomic.Int64
	next.Store(int64(from))
	var wg sync.WaitGroup
	var firstErr error
	var mu sync.Mutex
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				progress(from + int(done.Load()))
			case <-stopProgress:
				return
			}
		}
	}()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= to {
					return
				}
				_, v, err := createKey(ctx, st, fmt.Sprintf("ws%03d", i%wsUsers), fmt.Sprintf("k%d", i))
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				values[i-from] = "Bearer " + v
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stopProgress)
	if firstErr != nil {
		return firstErr
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600) //nolint:gosec // the bench's own key list file
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, v := range values {
		_, _ = w.WriteString(v) // a write error sticks: Flush returns it
		_ = w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// firstLines copies the first n lines of src to dst.
func firstLines(src, dst string, n int) error {
	in, err := os.Open(src) //nolint:gosec // the bench's own key list file
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.Create(dst) //nolint:gosec // the bench's own key list file
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	sc := bufio.NewScanner(in)
	for i := 0; i < n && sc.Scan(); i++ {
		_, _ = w.WriteString(sc.Text()) // a write error sticks: Flush returns it
		_ = w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return out.Close()
}

// fetchJWT asks the token endpoint for an access token (password grant).
// ok is false when the endpoint does not answer with a token.
func fetchJWT(base string) (token string, why string) {
	form := url.Values{"grant_type": {"password"}, "username": {benchUser}, "password": {benchPassword}, "client_id": {"anonymous"}}
	resp, err := httpClient.Post(base+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Sprintf("POST /oauth/token answered %d", resp.StatusCode)
	}
	var t struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &t); err != nil || t.AccessToken == "" {
		return "", "POST /oauth/token answered 200 without an access_token"
	}
	return t.AccessToken, ""
}
