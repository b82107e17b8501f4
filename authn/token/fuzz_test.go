package token

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzVerify: Verify never panics, its errors are credential errors, and
// whatever it accepts was signed with the configured key.
func FuzzVerify(f *testing.F) {
	clock := func() time.Time { return t0 }
	s, err := NewSigner(hsConfig(testSecret), WithClock(clock))
	if err != nil {
		f.Fatal(err)
	}
	valid, _, _ := s.Issue(Subject{Username: "alice", Account: "acme", Generation: 1})
	for _, seed := range []string{valid, "", ".", "..", "a.b.c", valid + "x", tamperSig(valid),
		"eyJhbGciOiJub25lIn0.e30.", "eyJhbGciOiJIUzI1NiIsImtpZCI6IngifQ.e30.AAAA"} {
		f.Add(seed)
	}
	v := s.Verifier()
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(tok)
		if err != nil {
			if !isCredentialError(err) {
				t.Fatalf("error %v is not a credential error", err)
			}
			return
		}
		if c.Subject == "" || c.Generation == 0 || c.IssuedAt == nil || c.ExpiresAt == nil {
			t.Fatalf("accepted claims %+v", c)
		}
		// Only tokens we signed verify, and the only subject we signed for
		// is alice (workers are separate processes: the seed differs from
		// this process's token by its jti, so compare the claims).
		if c.Subject != "alice" || c.Account != "acme" || c.Generation != 1 {
			t.Fatalf("accepted a token we did not issue: %q", tok)
		}
	})
}

// FuzzParseRefresh: the refresh token parser never panics and only accepts
// the documented shape.
func FuzzParseRefresh(f *testing.F) {
	for _, s := range []string{"", ".", "AAAAAAAAAAAAAAAAAAAAAA." + "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", "a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		fam, ok := parseRefresh(v)
		if ok && (len(v) != refreshValueLen || fam != v[:familyLen]) {
			t.Fatalf("accepted %q", v)
		}
	})
}

// FuzzAuthenticateClient: client authentication never panics and accepts
// only the public client "anonymous" without a secret: no form id or
// "anonymous", no form secret, and a header (if any) that is Basic with
// the form-urlencoded id "anonymous" and the empty secret.
func FuzzAuthenticateClient(f *testing.F) {
	f.Add("", "", false, "")
	f.Add("Basic YW5vbnltb3VzOg==", "anonymous", true, "")
	f.Add("Basic YW5vbiU3OW1vdXM6", "", false, "")
	f.Add("Basic YW5vbnltb3VzOnM=", "", false, "")
	f.Add("Bearer x", "webapp", true, "s")
	f.Fuzz(func(t *testing.T, header, formID string, hasFormID bool, formSecret string) {
		if !authenticateClient([]byte(header), formID, hasFormID, formSecret) {
			return
		}
		if formSecret != "" || (hasFormID && formID != AnonymousClient) {
			t.Fatalf("accepted form id %q (present %v), secret %q", formID, hasFormID, formSecret)
		}
		h := strings.Trim(header, " \t")
		if h == "" {
			return
		}
		scheme, payload, _ := strings.Cut(h, " ")
		dec, err := base64.StdEncoding.DecodeString(strings.TrimLeft(payload, " "))
		if !strings.EqualFold(scheme, "basic") || err != nil {
			t.Fatalf("accepted header %q", header)
		}
		id, secret, ok := bytes.Cut(dec, []byte(":"))
		uid, err := url.QueryUnescape(string(id))
		if !ok || err != nil || uid != AnonymousClient || len(secret) != 0 {
			t.Fatalf("accepted header %q (%q)", header, dec)
		}
	})
}

// FuzzParseJSONParams: the JSON body parser never panics, and what it
// accepts is one JSON object of strings whose members it reported in full.
func FuzzParseJSONParams(f *testing.F) {
	for _, s := range []string{`{}`, `{"grant_type":"password","username":"a","password":"b"}`, `{"a":1}`,
		`{"a":"b","a":"c"}`, `[]`, `{"a":"b"} x`, `{"a":{"b":"c"}}`, `{"\u0000":"\ud800"}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := map[string]string{}
		n := 0
		err := parseJSONParams(body, func(k, v []byte) { got[string(k)] = string(v); n++ })
		if err != nil {
			return
		}
		var want map[string]string
		if json.Unmarshal(body, &want) != nil || want == nil {
			t.Fatalf("accepted %q, which is not a JSON object of strings", body)
		}
		if len(got) != len(want) || n < len(want) {
			t.Fatalf("%q: reported %v (%d calls), json.Unmarshal reads %v", body, got, n, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Fatalf("%q: %q = %q, json.Unmarshal reads %q", body, k, got[k], v)
			}
		}
	})
}
