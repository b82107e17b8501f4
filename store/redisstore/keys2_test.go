package redisstore

import (
	"strings"
	"testing"
)

// TestLuaKeyFields: the field list the Lua scripts read is keyFieldsArr, in
// order (decKey reads the reply by position).
func TestLuaKeyFields(t *testing.T) {
	var want []string
	for _, f := range keyFieldsArr {
		want = append(want, "'"+f+"'")
	}
	if got := strings.Join(want, ", "); got != luaKeyFields {
		t.Fatalf("luaKeyFields = %s, want %s", luaKeyFields, got)
	}
}
