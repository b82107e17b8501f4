// Package tokencli is the "keygate token" subcommand: it obtains an access
// token from a running keygate with the OAuth2 password grant and prints it.
//
//	keygate token --user alice [--url http://127.0.0.1:8080] [-o text|json]
//
// The password is never a flag (it would show in ps and shell history): it
// comes from the environment variable KEYGATE_PASSWORD, or is read from
// standard input (with echo off on a terminal, after a prompt on standard
// error).
package tokencli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1 // refused, unreachable, bad answer
	ExitUsage   = 2
)

// PasswordEnv is the environment variable holding the password.
const PasswordEnv = "KEYGATE_PASSWORD"

// DefaultURL is the public listener asked by default.
const DefaultURL = "http://127.0.0.1:8080"

// TokenPath is the endpoint path used (it answers whatever tokens.path is).
const TokenPath = "/v1/oauth/token" //nolint:gosec // a name, not a credential

// maxResponse bounds the response read.
const maxResponse = 64 << 10

// Main runs "keygate token" with args (after the subcommand name) and
// returns the exit code.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer, environ []string) int {
	fs := flag.NewFlagSet("keygate token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	user := fs.String("user", "", "username (required)")
	base := fs.String("url", DefaultURL, "base URL of keygate's public listener")
	output := fs.String("o", "text", "output: text (the access token) or json (the whole token response)")
	timeout := fs.Duration("timeout", 30*time.Second, "request timeout")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: keygate token --user USERNAME [--url %s] [-o text|json]\n\n", DefaultURL)
		fmt.Fprintf(stderr, "Obtains an access token with the OAuth2 password grant and prints it.\n")
		fmt.Fprintf(stderr, "The password comes from $%s, or is read from standard input.\n\n", PasswordEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		// Not echoed: it may well be a password.
		fmt.Fprintf(stderr, "keygate token: unexpected argument (the password is never an argument: use $%s or standard input)\n",
			PasswordEnv)
		return ExitUsage
	}
	if *user == "" {
		fmt.Fprintln(stderr, "keygate token: --user is required")
		return ExitUsage
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(stderr, "keygate token: -o must be text or json, not %q\n", printable(*output))
		return ExitUsage
	}
	endpoint, insecure, err := endpointURL(*base)
	if err != nil {
		fmt.Fprintf(stderr, "keygate token: --url: %v\n", err)
		return ExitUsage
	}
	if insecure {
		fmt.Fprintf(stderr, "keygate token: warning: sending a password over plain http to a non-loopback host\n")
	}
	pw, err := readPassword(*user, stdin, stderr, environ)
	if err != nil {
		fmt.Fprintf(stderr, "keygate token: %v\n", err)
		return ExitFailure
	}
	if pw == "" {
		fmt.Fprintln(stderr, "keygate token: empty password")
		return ExitFailure
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	body, err := requestToken(ctx, endpoint, *user, pw)
	if err != nil {
		fmt.Fprintf(stderr, "keygate token: %v\n", err)
		return ExitFailure
	}
	if *output == "json" {
		var out bytes.Buffer
		if err := json.Indent(&out, body.raw, "", "  "); err != nil {
			out.Reset()
			out.Write(body.raw)
		}
		out.WriteByte('\n')
		_, _ = stdout.Write(out.Bytes())
		return ExitOK
	}
	fmt.Fprintln(stdout, body.AccessToken)
	return ExitOK
}

// endpointURL returns the token endpoint under base, and whether a password
// would travel in clear to another machine.
func endpointURL(base string) (string, bool, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", false, errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return "", false, errors.New("want http://host[:port] or https://host[:port]")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", false, errors.New("no user info, query or fragment allowed")
	}
	insecure := false
	if u.Scheme == "http" {
		h := u.Hostname()
		ip := net.ParseIP(h)
		insecure = h != "localhost" && (ip == nil || !ip.IsLoopback())
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + TokenPath
	return u.String(), insecure, nil
}

// readPassword takes the password from the environment, or reads one line
// from stdin (echo off on a terminal, with a prompt).
func readPassword(user string, stdin io.Reader, stderr io.Writer, environ []string) (string, error) {
	pw, found := "", false
	for _, kv := range environ { // the last value wins, as with os.Getenv
		if v, ok := strings.CutPrefix(kv, PasswordEnv+"="); ok {
			pw, found = v, true
		}
	}
	if found {
		return pw, nil
	}
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprintf(stderr, "Password for %s: ", printable(user))
		line, err := readNoEcho(f)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return line, nil
	}
	line, err := readLine(stdin)
	if err != nil {
		return "", fmt.Errorf("read password from standard input: %w", err)
	}
	return line, nil
}

// readLine reads up to a newline (excluded, as is a preceding '\r') or EOF,
// one byte at a time so nothing after the line is consumed.
func readLine(r io.Reader) (string, error) {
	var b []byte
	var c [1]byte
	for len(b) < 4096 {
		n, err := r.Read(c[:])
		if n == 1 {
			if c[0] == '\n' {
				break
			}
			b = append(b, c[0])
			continue
		}
		if errors.Is(err, io.EOF) {
			if len(b) == 0 {
				return "", errors.New("no password given")
			}
			break
		}
		if err != nil {
			return "", err
		}
	}
	return strings.TrimSuffix(string(b), "\r"), nil
}

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	Error       string `json:"error"`
	Description string `json:"error_description"`
	raw         []byte
}

func requestToken(ctx context.Context, endpoint, user, pw string) (*tokenResponse, error) {
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {pw}, "client_id": {"anonymous"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("POST %s: %w", endpoint, err)
	}
	defer func() { _ = res.Body.Close() }()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("read response: %w", err)
	}
	tr := &tokenResponse{raw: raw}
	if err := json.Unmarshal(raw, tr); err != nil {
		return nil, fmt.Errorf("%s: unexpected response (%s)", endpoint, res.Status)
	}
	if res.StatusCode != http.StatusOK || tr.AccessToken == "" {
		msg := tr.Error
		if msg == "" {
			msg = res.Status
		}
		if tr.Description != "" {
			msg += ": " + tr.Description
		}
		if ra := res.Header.Get("Retry-After"); ra != "" {
			msg += " (retry after " + ra + "s)"
		}
		return nil, fmt.Errorf("refused: %s", msg)
	}
	return tr, nil
}

// printable shortens s and replaces control characters.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
