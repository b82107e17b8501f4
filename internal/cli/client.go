package cli

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/keygate/keygate/admin/adminapi"
)

// session is one CLI invocation: options, I/O, credentials and the client.
type session struct {
	o              *opts
	stdout, stderr io.Writer
	environ        []string
	in             *bufio.Reader
	inFile         *os.File // stdin when it is a file (maybe a terminal)
	base           string
	http           *http.Client
	auth           string // Authorization value, resolved on first use
}

// apiError is an error answer of the admin API.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string {
	msg := e.message
	if msg == "" {
		msg = http.StatusText(e.status)
	}
	return fmt.Sprintf("%s (HTTP %d %s)", msg, e.status, e.code)
}

// authError is a failure to obtain credentials (exit 3).
type authError struct{ msg string }

func (e *authError) Error() string { return e.msg }

// exit prints err and maps it to an exit code.
func (s *session) exit(err error) int {
	if err == nil {
		return ExitOK
	}
	var ue *usageError
	var ae *apiError
	var au *authError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(s.stderr, "keygate: %v\n", err)
		return ExitUsage
	case errors.As(err, &au):
		fmt.Fprintf(s.stderr, "keygate: %v\n", err)
		return ExitAuth
	case errors.As(err, &ae):
		fmt.Fprintf(s.stderr, "keygate: %v\n", err)
		switch ae.status {
		case http.StatusUnauthorized:
			fmt.Fprintf(s.stderr, "keygate: authentication failed: check %s and %s (or %s)\n", EnvUsername, EnvPassword, EnvAPIKey)
			return ExitAuth
		case http.StatusForbidden:
			fmt.Fprintln(s.stderr, "keygate: you are authenticated but not allowed to do this (API keys may only read their own identity and keys)")
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			fmt.Fprintln(s.stderr, "keygate: retry in a few seconds")
		}
		return ExitAPI
	}
	fmt.Fprintf(s.stderr, "keygate: %v\n", err)
	return ExitAPI
}

// checkBase validates the admin URL.
func (s *session) checkBase() error {
	u, err := url.Parse(s.base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("admin URL %q is not an http(s) URL such as %s (--admin-url or %s)", s.base, DefaultAdminURL, EnvAdminURL)
	}
	return nil
}

// credentials resolves the Authorization header: KEYGATE_API_KEY, else
// KEYGATE_USERNAME + KEYGATE_PASSWORD, prompting for what is missing.
func (s *session) credentials() (string, error) {
	if s.auth != "" {
		return s.auth, nil
	}
	if k := strings.TrimSpace(getenv(s.environ, EnvAPIKey)); k != "" {
		if strings.HasPrefix(k, "kg_") {
			s.auth = "Bearer " + k
		} else {
			s.auth = "ApiKey " + k // the "encoded" form
		}
		return s.auth, nil
	}
	user := getenv(s.environ, EnvUsername)
	pw, havePW := lookupEnv(s.environ, EnvPassword)
	if user == "" {
		u, err := s.readLine("Username: ")
		if err != nil || u == "" {
			return "", &authError{fmt.Sprintf("no credentials: set %s and %s, or %s, or run on a terminal to be prompted", EnvUsername, EnvPassword, EnvAPIKey)}
		}
		user = u
	}
	if !havePW {
		p, err := s.readSecret("Password for " + user + ": ")
		if err != nil {
			return "", &authError{fmt.Sprintf("no password: set %s or run on a terminal to be prompted", EnvPassword)}
		}
		pw = p
	}
	s.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
	return s.auth, nil
}

func lookupEnv(environ []string, name string) (string, bool) {
	v, ok := "", false
	for _, kv := range environ {
		if k, val, found := strings.Cut(kv, "="); found && k == name {
			v, ok = val, true
		}
	}
	return v, ok
}

// readLine prompts on stderr and reads one line of stdin.
func (s *session) readLine(prompt string) (string, error) {
	fmt.Fprint(s.stderr, prompt)
	line, err := s.in.ReadString('\n')
	if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
		fmt.Fprintln(s.stderr)
		return "", errors.New("nothing to read on stdin")
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// readSecret prompts and reads one line without echo on a terminal; from a
// pipe it reads one line (no prompt).
func (s *session) readSecret(prompt string) (string, error) {
	if s.inFile == nil || !isTerminal(s.inFile) {
		line, err := s.in.ReadString('\n')
		if err != nil && (line == "" || !errors.Is(err, io.EOF)) {
			return "", errors.New("nothing to read on stdin")
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fmt.Fprint(s.stderr, prompt)
	restore, err := noEcho(s.inFile)
	if err != nil {
		return "", err
	}
	// An interrupt during the prompt must not leave the terminal without
	// echo: restore it, then end like an interrupted command.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sig:
			restore()
			fmt.Fprintln(s.stderr)
			os.Exit(130)
		case <-done:
		}
	}()
	line, err := s.in.ReadString('\n')
	close(done)
	signal.Stop(sig)
	restore()
	fmt.Fprintln(s.stderr)
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// newPassword reads a new password: twice on a terminal, once from a pipe.
func (s *session) newPassword(what string) (string, error) {
	pw, err := s.readSecret("New password for " + what + ": ")
	if err != nil || pw == "" {
		return "", usagef("no new password: type it at the prompt or pipe it on stdin (never a flag)")
	}
	if s.inFile != nil && isTerminal(s.inFile) {
		again, err := s.readSecret("Repeat the new password: ")
		if err != nil || again != pw {
			return "", usagef("the passwords do not match")
		}
	}
	return pw, nil
}

// call sends a request to the admin API and decodes a JSON answer into out
// (when out is non-nil and there is a body). raw receives the body.
func (s *session) call(method, path string, query url.Values, body, out any) ([]byte, error) {
	auth, err := s.credentials()
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	u := s.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return nil, usagef("bad request URL: %v", err)
	}
	req.Header.Set("Authorization", auth)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "keygate-cli")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := s.http.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("the admin API at %s did not answer within %s (--timeout)", s.base, s.o.timeout)
		}
		return nil, fmt.Errorf("cannot reach the admin API at %s: %w; is keygate running? check --admin-url or %s", s.base, rootCause(err), EnvAdminURL)
	}
	defer func() { _ = res.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer of %s: %w", s.base, err)
	}
	if res.StatusCode >= 400 {
		var eb adminapi.ErrorBody
		_ = json.Unmarshal(raw, &eb)
		return nil, &apiError{status: res.StatusCode, code: eb.Error.Code, message: eb.Error.Message}
	}
	if out != nil && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("unexpected answer from %s (is it keygate's admin listener?): %w", s.base, err)
		}
	}
	return raw, nil
}

// rootCause strips url.Error's method and URL (the URL is already said).
func rootCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }
