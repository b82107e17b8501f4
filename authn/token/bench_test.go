package token

import (
	"testing"
	"time"

	"github.com/keygate/keygate/configs"
)

func benchSigner(b *testing.B, alg string) *Signer {
	b.Helper()
	testKeys(b)
	clock := func() time.Time { return time.Now() }
	switch alg {
	case configs.AlgEdDSA:
		return mustSigner(b, keyConfig(b, alg, pkcs8PEM(b, edKey)), clock)
	case configs.AlgRS256:
		return mustSigner(b, keyConfig(b, alg, pkcs8PEM(b, rsaKey)), clock)
	}
	return mustSigner(b, hsConfig(testSecret), clock)
}

var benchSubject = Subject{Username: "alice", Account: "acme", Roles: []string{"dev", "ops"}, Generation: 3,
	UserCreated: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}

func benchVerify(b *testing.B, alg string) {
	s := benchSigner(b, alg)
	tok, _, err := s.Issue(benchSubject)
	if err != nil {
		b.Fatal(err)
	}
	v := s.Verifier()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyHS256(b *testing.B) { benchVerify(b, configs.AlgHS256) }
func BenchmarkVerifyEdDSA(b *testing.B) { benchVerify(b, configs.AlgEdDSA) }
func BenchmarkVerifyRS256(b *testing.B) { benchVerify(b, configs.AlgRS256) }

func BenchmarkIssue(b *testing.B) {
	for _, alg := range []string{configs.AlgHS256, configs.AlgEdDSA, configs.AlgRS256} {
		b.Run(alg, func(b *testing.B) {
			s := benchSigner(b, alg)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.Issue(benchSubject); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
