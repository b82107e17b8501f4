package cli

import (
	"errors"
	"testing"

	"github.com/keygate/keygate/store"
)

// FuzzParseQuota: --quota never panics; what it accepts is a valid quota
// (or the removal), what it refuses is a usage error.
func FuzzParseQuota(f *testing.F) {
	for _, s := range []string{"1000/day", "5/month", "none", "NONE", " 7 / Day ", "0/day", "-1/day", "1/week", "x", "", "/", "9223372036854775807/month", "99999999999999999999/day"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := parseQuota(s)
		if err != nil {
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("%q: %v is not a usage error", s, err)
			}
			return
		}
		if q.Requests == 0 && q.Per == "" {
			return // none
		}
		if err := q.Validate(); err != nil || (q.Per != store.QuotaDay && q.Per != store.QuotaMonth) {
			t.Fatalf("%q accepted as %+v: %v", s, q, err)
		}
	})
}
