package authn

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/keygate/keygate/authn/apikey"
)

const (
	testSecretA = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg"
	testSecretB = "zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJ"
	testJWT     = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

var (
	keyA = apikey.Format("abc123", testSecretA)
	keyB = apikey.Format("XYZ", testSecretB)
	// keyA with its last checksum character changed.
	keyABadSum = keyA[:len(keyA)-1] + string(otherB62(keyA[len(keyA)-1]))
	// id of A with secret and checksum of B.
	keyAwithB = "kg_abc123_" + keyB[len(keyB)-apikey.SecretLen-apikey.ChecksumLen:]
)

func otherB62(c byte) byte {
	if c == 'a' {
		return 'b'
	}
	return 'a'
}

func enc64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseAuthorization(t *testing.T) {
	type want struct {
		kind       CredKind
		user, pass string
		keyID      string
		secret     string
		key        string
		token      string
	}
	basic := func(u, p string) want { return want{kind: KindBasic, user: u, pass: p} }
	apiKey := func(id, secret, key string) want { return want{kind: KindAPIKey, keyID: id, secret: secret, key: key} }
	wantA := apiKey("abc123", testSecretA, keyA)
	bearer := func(tok string) want { return want{kind: KindBearer, token: tok} }
	oneMB := strings.Repeat("A", 1<<20)
	maxUser := strings.Repeat("u", 512) + ":" + strings.Repeat("p", MaxDecodedLen-513)

	tests := []struct {
		name    string
		h       string
		wantErr error
		want    want
	}{
		// Empty and schemes.
		{"empty", "", ErrNoCredentials, want{}},
		{"spaces only", "   ", ErrNoCredentials, want{}},
		{"tab only", "\t", ErrNoCredentials, want{}},
		{"scheme only", "Basic", ErrMalformedCredentials, want{}},
		{"scheme and space", "Basic ", ErrMalformedCredentials, want{}},
		{"unknown scheme", "Digest username=\"alice\"", ErrMalformedCredentials, want{}},
		{"negotiate", "Negotiate YWxpY2U6cHc=", ErrMalformedCredentials, want{}},
		{"bare token", "YWxpY2U6cHc=", ErrMalformedCredentials, want{}},
		{"unicode fold scheme (Kelvin sign)", "API\u212aEY " + enc64("abc123:"+keyA), ErrMalformedCredentials, want{}},
		{"unicode fold scheme (long s)", "ba\u017fic " + enc64("alice:pw"), ErrMalformedCredentials, want{}},

		// Basic.
		{"basic", "Basic " + enc64("alice:s3cret"), nil, basic("alice", "s3cret")},
		{"basic lower", "basic " + enc64("alice:s3cret"), nil, basic("alice", "s3cret")},
		{"basic upper", "BASIC " + enc64("alice:s3cret"), nil, basic("alice", "s3cret")},
		{"basic mixed", "bAsIc " + enc64("alice:s3cret"), nil, basic("alice", "s3cret")},
		{"basic many spaces", "Basic    " + enc64("alice:s3cret"), nil, basic("alice", "s3cret")},
		{"basic trailing spaces", "Basic " + enc64("alice:s3cret") + "   ", nil, basic("alice", "s3cret")},
		{"basic trailing tab", "Basic " + enc64("alice:s3cret") + "\t", nil, basic("alice", "s3cret")},
		{"basic leading space", "  Basic " + enc64("alice:s3cret"), nil, basic("alice", "s3cret")},
		{"basic tab separator", "Basic\t" + enc64("alice:s3cret"), ErrMalformedCredentials, want{}},
		{"basic space then tab", "Basic \t" + enc64("alice:s3cret"), ErrMalformedCredentials, want{}},
		{"basic no space", "Basic" + enc64("alice:s3cret"), ErrMalformedCredentials, want{}},
		{"basic no colon", "Basic " + enc64("alice"), ErrMalformedCredentials, want{}},
		{"basic colon in password", "Basic " + enc64("alice:pa:ss:"), nil, basic("alice", "pa:ss:")},
		{"basic empty password", "Basic " + enc64("alice:"), nil, basic("alice", "")},
		{"basic empty user", "Basic " + enc64(":s3cret"), ErrMalformedCredentials, want{}},
		{"basic only colon", "Basic " + enc64(":"), ErrMalformedCredentials, want{}},
		{"basic emoji password", "Basic " + enc64("alice:🔑🔒 pässwörd"), nil, basic("alice", "🔑🔒 pässwörd")},
		{"basic UTF-8 username", "Basic " + enc64("zoë:pw"), nil, basic("zoë", "pw")},
		{"basic non-UTF-8 password", "Basic " + enc64("alice:\xff\xfepw"), ErrMalformedCredentials, want{}},
		{"basic non-UTF-8 username", "Basic " + enc64("al\xe9ice:pw"), ErrMalformedCredentials, want{}},
		{"basic NUL in password", "Basic " + enc64("alice:pw\x00"), ErrMalformedCredentials, want{}},
		{"basic newline in username", "Basic " + enc64("ali\nce:pw"), ErrMalformedCredentials, want{}},
		{"basic DEL in password", "Basic " + enc64("alice:p\x7fw"), ErrMalformedCredentials, want{}},
		{"basic C1 control in password", "Basic " + enc64("alice:p\u0085w"), ErrMalformedCredentials, want{}},
		{"basic bad base64", "Basic !!!!", ErrMalformedCredentials, want{}},
		{"basic unpadded base64", "Basic YWxpY2U6cHc", ErrMalformedCredentials, want{}},
		{"basic url-safe base64", "Basic " + strings.NewReplacer("+", "-", "/", "_").Replace(enc64("alice:??>>")), ErrMalformedCredentials, want{}},
		{"basic padding inside", "Basic YQ==YWxpY2U6cHc=", ErrMalformedCredentials, want{}},
		{"basic newline inside base64", "Basic YWxp\nY2U6cHc=", ErrMalformedCredentials, want{}},
		{"basic CR inside base64", "Basic YWxp\rY2U6cHc=", ErrMalformedCredentials, want{}},
		{"basic space inside base64", "Basic YWxp Y2U6cHc=", ErrMalformedCredentials, want{}},
		{"basic non-canonical padding bits", "Basic YWxpY2U6cHd=", ErrMalformedCredentials, want{}},
		{"basic two payloads", "Basic " + enc64("alice:pw") + " " + enc64("bob:pw"), ErrMalformedCredentials, want{}},
		{"basic max length", "Basic " + enc64(maxUser), nil, basic(strings.Repeat("u", 512), strings.Repeat("p", MaxDecodedLen-513))},
		{"basic one byte too long", "Basic " + enc64(maxUser+"p"), ErrMalformedCredentials, want{}},
		{"basic unpadded 1026 bytes", "Basic " + strings.Repeat("QUJD", 342), ErrMalformedCredentials, want{}},
		{"basic 1 MB", "Basic " + oneMB, ErrMalformedCredentials, want{}},

		// Basic with an API key.
		{"basic _api_key", "Basic " + enc64("_api_key:"+keyA), nil, wantA},
		{"basic _api_key bad checksum", "Basic " + enc64("_api_key:"+keyABadSum), ErrInvalidCredentials, want{}},
		{"basic _api_key A id B secret", "Basic " + enc64("_api_key:"+keyAwithB), ErrInvalidCredentials, want{}},
		{"basic _api_key not a key", "Basic " + enc64("_api_key:hunter2"), ErrMalformedCredentials, want{}},
		{"basic _api_key empty", "Basic " + enc64("_api_key:"), ErrMalformedCredentials, want{}},
		{"basic _api_key key one short", "Basic " + enc64("_api_key:"+keyA[:len(keyA)-1]), ErrMalformedCredentials, want{}},
		{"basic _API_KEY is a username", "Basic " + enc64("_API_KEY:"+keyA), nil, basic("_API_KEY", keyA)},

		// ApiKey.
		{"apikey", "ApiKey " + enc64("abc123:"+keyA), nil, wantA},
		{"apikey upper", "APIKEY " + enc64("abc123:"+keyA), nil, wantA},
		{"apikey lower", "apikey " + enc64("abc123:"+keyA), nil, wantA},
		{"apikey other key", "ApiKey " + enc64("XYZ:"+keyB), nil, apiKey("XYZ", testSecretB, keyB)},
		{"apikey mismatched id", "ApiKey " + enc64("XYZ:"+keyA), ErrMalformedCredentials, want{}},
		{"apikey id case differs", "ApiKey " + enc64("ABC123:"+keyA), ErrMalformedCredentials, want{}},
		{"apikey empty id", "ApiKey " + enc64(":"+keyA), ErrMalformedCredentials, want{}},
		{"apikey no colon", "ApiKey " + enc64(keyA), ErrMalformedCredentials, want{}},
		{"apikey bad checksum", "ApiKey " + enc64("abc123:"+keyABadSum), ErrInvalidCredentials, want{}},
		{"apikey A id B secret", "ApiKey " + enc64("abc123:"+keyAwithB), ErrInvalidCredentials, want{}},
		{"apikey raw key not base64", "ApiKey " + keyA, ErrMalformedCredentials, want{}},
		{"apikey no space", "ApiKey" + enc64("abc123:"+keyA), ErrMalformedCredentials, want{}},
		{"apikey 1 MB", "ApiKey " + oneMB, ErrMalformedCredentials, want{}},

		// Bearer.
		{"bearer api key", "Bearer " + keyA, nil, wantA},
		{"bearer api key lower scheme", "bearer " + keyA, nil, wantA},
		{"bearer api key trailing space", "Bearer " + keyA + "  ", nil, wantA},
		{"bearer jwt", "Bearer " + testJWT, nil, bearer(testJWT)},
		{"bearer jwt upper scheme", "BEARER " + testJWT, nil, bearer(testJWT)},
		{"bearer padded token68", "Bearer abc+/-._~==", nil, bearer("abc+/-._~==")},
		{"bearer api key bad checksum", "Bearer " + keyABadSum, ErrInvalidCredentials, want{}},
		{"bearer api key A id B secret", "Bearer " + keyAwithB, ErrInvalidCredentials, want{}},
		{"bearer api key truncated", "Bearer " + keyA[:40], ErrMalformedCredentials, want{}},
		{"bearer api key plus char", "Bearer " + keyA + "x", ErrMalformedCredentials, want{}},
		{"bearer kg_ prefix only", "Bearer kg_", ErrMalformedCredentials, want{}},
		{"bearer token with space", "Bearer abc def", ErrMalformedCredentials, want{}},
		{"bearer token with tab", "Bearer abc\tdef", ErrMalformedCredentials, want{}},
		{"bearer padding inside", "Bearer ab=cd", ErrMalformedCredentials, want{}},
		{"bearer only padding", "Bearer ==", ErrMalformedCredentials, want{}},
		{"bearer non-ASCII", "Bearer tökén", ErrMalformedCredentials, want{}},
		{"bearer quote", "Bearer \"abc\"", ErrMalformedCredentials, want{}},
		{"bearer comma", "Bearer abc,def", ErrMalformedCredentials, want{}},
		{"bearer max length", "Bearer " + strings.Repeat("a", MaxTokenLen), nil, bearer(strings.Repeat("a", MaxTokenLen))},
		{"bearer one too long", "Bearer " + strings.Repeat("a", MaxTokenLen+1), ErrMalformedCredentials, want{}},
		{"bearer 1 MB", "Bearer " + oneMB, ErrMalformedCredentials, want{}},
		{"bearer no space", "Bearer" + testJWT, ErrMalformedCredentials, want{}},
		{"1 MB of spaces", strings.Repeat(" ", 1<<20), ErrMalformedCredentials, want{}},
		{"16 KiB of spaces", strings.Repeat(" ", MaxAuthorizationLen), ErrNoCredentials, want{}},
	}
	var c Credentials
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := []byte(tc.h)
			err := ParseAuthorization(h, &c)
			if (err == nil) != (tc.wantErr == nil) || !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if errors.Is(err, ErrMalformedCredentials) && errors.Is(err, ErrInvalidCredentials) {
					t.Fatal("error is both malformed and invalid")
				}
				if v := strings.TrimSpace(tc.h); len(v) > 8 && strings.Contains(err.Error(), v) {
					t.Fatal("error echoes the header")
				}
				if c.Kind != KindNone || c.Username != nil || c.Password != nil || c.KeyID != nil ||
					c.Secret != nil || c.APIKey != nil || c.Token != nil {
					t.Fatalf("fields set on error: %+v", c.Kind)
				}
				return
			}
			got := want{c.Kind, string(c.Username), string(c.Password), string(c.KeyID), string(c.Secret), string(c.APIKey), string(c.Token)}
			if got != tc.want {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// The results alias the header (Bearer) or c's buffer (decoded forms).
func TestParseAuthorizationAliasing(t *testing.T) {
	var c Credentials
	h := []byte("Bearer " + testJWT)
	if err := ParseAuthorization(h, &c); err != nil {
		t.Fatal(err)
	}
	if !within(c.Token, h) {
		t.Fatal("bearer token does not alias the header")
	}
	h = []byte("Basic " + enc64("alice:pw"))
	if err := ParseAuthorization(h, &c); err != nil {
		t.Fatal(err)
	}
	if !within(c.Username, c.buf[:]) || !within(c.Password, c.buf[:]) {
		t.Fatal("basic fields do not alias the buffer")
	}
	if c.Token != nil {
		t.Fatal("token from the previous parse survived")
	}
	c.Reset()
	if c.Kind != KindNone || c.Username != nil || c.used != 0 || !bytes.Equal(c.buf[:], make([]byte, len(c.buf))) {
		t.Fatal("Reset left data behind")
	}
}

func TestCredKindString(t *testing.T) {
	for k, want := range map[CredKind]string{KindNone: "none", KindBasic: "basic", KindAPIKey: "api_key", KindBearer: "bearer", 99: "none"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q, want %q", k, k.String(), want)
		}
	}
}

// within reports whether s lies inside base's backing array (or is nil).
func within(s, base []byte) bool {
	if s == nil {
		return true
	}
	if len(base) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(base))) //nolint:gosec // audited: the test checks a zero-copy view
	hi := lo + uintptr(len(base))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s))) //nolint:gosec // audited: the test checks a zero-copy view
	return p >= lo && p+uintptr(len(s)) <= hi
}

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		"", "Basic " + enc64("alice:pw"), "basic " + enc64("a:b:c"), "Basic " + enc64("_api_key:"+keyA),
		"ApiKey " + enc64("abc123:"+keyA), "Bearer " + keyA, "Bearer " + testJWT, "Bearer " + keyABadSum,
		"BASIC\t" + enc64("x:y"), "Basic  " + enc64("🔑:🔒") + " ", "Basic " + strings.Repeat("QUJD", 342),
		"Bearer abc==", "Digest x",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, h []byte) {
		orig := bytes.Clone(h)
		var c Credentials
		err := ParseAuthorization(h, &c)
		if !bytes.Equal(h, orig) {
			t.Fatal("input modified")
		}
		if err != nil {
			if !errors.Is(err, ErrNoCredentials) && !errors.Is(err, ErrMalformedCredentials) && !errors.Is(err, ErrInvalidCredentials) {
				t.Fatalf("unexpected error %v", err)
			}
			if c.Kind != KindNone || c.Username != nil || c.Password != nil || c.APIKey != nil || c.Token != nil {
				t.Fatal("fields set on error")
			}
			return
		}
		for _, s := range [][]byte{c.Username, c.Password, c.KeyID, c.Secret, c.APIKey, c.Token} {
			if !within(s, h) && !within(s, c.buf[:MaxDecodedLen]) {
				t.Fatal("result slice outside the header and the buffer")
			}
		}
		switch c.Kind {
		case KindBasic:
			if len(c.Username) == 0 || !utf8.Valid(c.Username) || !utf8.Valid(c.Password) {
				t.Fatal("bad basic result")
			}
		case KindAPIKey:
			id, secret, err := apikey.Parse(c.APIKey)
			if err != nil || !bytes.Equal(id, c.KeyID) || !bytes.Equal(secret, c.Secret) {
				t.Fatal("bad api key result")
			}
		case KindBearer:
			if len(c.Token) == 0 || len(c.Token) > MaxTokenLen || apikey.LooksLikeKey(c.Token) {
				t.Fatal("bad bearer result")
			}
		default:
			t.Fatalf("success with kind %v", c.Kind)
		}
	})
}

// forms are the well-formed inputs of the allocation test and benchmark.
var forms = []struct{ name, h string }{
	{"basic", "Basic " + enc64("alice:correct horse battery staple")},
	{"basic_api_key", "Basic " + enc64("_api_key:"+keyA)},
	{"apikey", "ApiKey " + enc64("abc123:"+keyA)},
	{"bearer_api_key", "Bearer " + keyA},
	{"bearer_jwt", "Bearer " + testJWT},
	{"malformed", "Basic !!!!"},
	{"bad_checksum", "Bearer " + keyABadSum},
}

func BenchmarkParseAuthorization(b *testing.B) {
	for _, f := range forms {
		b.Run(f.name, func(b *testing.B) {
			h := []byte(f.h)
			var c Credentials
			b.ReportAllocs()
			b.SetBytes(int64(len(h)))
			for b.Loop() {
				_ = ParseAuthorization(h, &c)
			}
		})
	}
}
