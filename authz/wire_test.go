package authz

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/internal/httpx"
)

func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"", "alice", `quote " back \ slash`, "ctl \x00\x01\x1f\x7f", "\n\r\t", "émoji 🙂",
		"bad \xff utf8 \xc3", "<script>&", "\u2028\u2029",
	} {
		checkJSONString(t, s)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\xff", "\x00", "🙂"} {
		f.Add(s)
	}
	f.Fuzz(checkJSONString)
}

func checkJSONString(t *testing.T, s string) {
	b := httpx.AppendJSONString(nil, s)
	var got string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("AppendJSONString(%q) = %s: %v", s, b, err)
	}
	want := s
	if !utf8.ValidString(s) {
		want = string([]rune(s)) // invalid bytes → U+FFFD, as encoding/json
	}
	if got != want {
		t.Fatalf("round trip of %q = %q, want %q", s, got, want)
	}
}

func TestAppendAuthorizeBody(t *testing.T) {
	t.Parallel()
	req := &Request{
		Identity: &authn.Identity{Username: "al\"ice", UserType: "user"},
		Domain:   "acme",
		Actions:  []Action{{"GET", "api:/a"}, {"POST", "api:/b"}, {"DELETE", "api:/c"}},
	}
	for _, tc := range []struct {
		name string
		sel  func(int) bool
		want []Action
	}{
		{"all", nil, req.Actions},
		{"selected", func(i int) bool { return i != 1 }, []Action{req.Actions[0], req.Actions[2]}},
		{"none", func(int) bool { return false }, []Action{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got AuthorizeRequest
			b := appendAuthorizeBody(nil, req, tc.sel)
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			if got.Principal != (Principal{"al\"ice", "user"}) || got.Domain != "acme" || len(got.Actions) != len(tc.want) {
				t.Fatalf("decoded %+v", got)
			}
			for i := range tc.want {
				if got.Actions[i] != tc.want[i] {
					t.Fatalf("action %d = %+v, want %+v", i, got.Actions[i], tc.want[i])
				}
			}
		})
	}
}

func TestJudge(t *testing.T) {
	t.Parallel()
	req := &Request{Actions: []Action{{"GET", "api:/a"}, {"DELETE", "api:/a"}}}
	const (
		get = `{"action":"GET","target":"api:/a"}`
		del = `{"action":"DELETE","target":"api:/a"}`
	)
	cases := []struct {
		name    string
		body    string
		sel     func(int) bool
		err     error
		verdict []bool
	}{
		{"all allowed", `{"allowed":[` + get + `,` + del + `],"denied":[]}`, nil, nil, []bool{true, true}},
		{"one denied", `{"allowed":[` + get + `],"denied":[` + del + `]}`, nil, nil, []bool{true, false}},
		{"in both lists: denied", `{"allowed":[` + get + `,` + del + `],"denied":[` + del + `]}`, nil, nil, []bool{true, false}},
		{"unknown fields ignored", `{"allowed":[` + get + `,` + del + `],"reason":"x"}`, nil, nil, []bool{true, true}},
		{"duplicates fine", `{"allowed":[` + get + `,` + get + `,` + del + `]}`, nil, nil, []bool{true, true}},
		{"only selected asked", `{"allowed":[` + del + `]}`, func(i int) bool { return i == 1 }, nil, []bool{false, true}},
		{"partial", `{"allowed":[` + get + `]}`, nil, errIncomplete, nil},
		{"empty object", `{}`, nil, errIncomplete, nil},
		{"null", `null`, nil, errIncomplete, nil},
		{"tuple not asked", `{"allowed":[` + get + `,` + del + `,{"action":"PUT","target":"api:/a"}]}`, nil, errUnexpected, nil},
		{"unselected tuple", `{"allowed":[` + get + `,` + del + `]}`, func(i int) bool { return i == 1 }, errUnexpected, nil},
		{"case differs", `{"allowed":[` + get + `,{"action":"delete","target":"api:/a"}]}`, nil, errUnexpected, nil},
		{"trailing garbage", `{"allowed":[` + get + `,` + del + `]} x`, nil, errMalformed, nil},
		{"two objects", `{"allowed":[` + get + `,` + del + `]}{}`, nil, errMalformed, nil},
		{"array", `[]`, nil, errMalformed, nil},
		{"allowed is true", `{"allowed":true}`, nil, errMalformed, nil},
		{"allowed strings", `{"allowed":["GET api:/a"]}`, nil, errMalformed, nil},
		{"html", `<html>ok</html>`, nil, errMalformed, nil},
		{"empty", ``, nil, errMalformed, nil},
		{"truncated", `{"allowed":[` + get, nil, errMalformed, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			verdict := make([]bool, len(req.Actions))
			err := judge([]byte(tc.body), req, tc.sel, verdict)
			if !errors.Is(err, tc.err) {
				t.Fatalf("judge = %v, want %v", err, tc.err)
			}
			if err == nil {
				for i := range verdict {
					if verdict[i] != tc.verdict[i] {
						t.Fatalf("verdict = %v, want %v", verdict, tc.verdict)
					}
				}
			}
		})
	}
}

// FuzzJudge: whatever the plugin answers, a tuple is allowed only if the
// answer lists it as allowed and not as denied, and the answer is valid JSON.
func FuzzJudge(f *testing.F) {
	f.Add([]byte(`{"allowed":[{"action":"GET","target":"api:/a"}],"denied":[]}`))
	f.Add([]byte(`{"allowed":[{"action":"GET","target":"api:/a"}],"denied":[{"action":"GET","target":"api:/a"}]}`))
	f.Add([]byte(`{"allowed":[{"action":"GET","target":"api:/a"}]}garbage`))
	f.Add([]byte(`{"ALLOWED":[{"ACTION":"GET","TARGET":"api:/a"}]}`))
	req := &Request{Actions: []Action{{"GET", "api:/a"}}}
	f.Fuzz(func(t *testing.T, body []byte) {
		verdict := make([]bool, 1)
		if err := judge(body, req, nil, verdict); err != nil || !verdict[0] {
			return
		}
		var resp AuthorizeResponse
		if json.Unmarshal(body, &resp) != nil {
			t.Fatalf("allowed on invalid JSON %q", body)
		}
		if !contains(resp.Allowed, req.Actions[0]) || contains(resp.Denied, req.Actions[0]) {
			t.Fatalf("allowed without an allow, or despite a deny: %q", body)
		}
	})
}
