package adminapi_test

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/admin/adminapi"
)

// jsonNames lists the JSON field names of struct type t (those of an
// embedded struct without a tag are t's own, as encoding/json reads them).
func jsonNames(t reflect.Type) []string {
	var names []string
	for f := range t.Fields() {
		if f.Anonymous && f.Tag.Get("json") == "" && f.Type.Kind() == reflect.Struct {
			names = append(names, jsonNames(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Each body type has exactly the properties of its schema in
// admin/openapi.json, the contract: a field renamed, added or dropped on
// either side fails here, for the server and the CLI alike.
func TestTypesMatchOpenAPISchemas(t *testing.T) {
	raw, err := os.ReadFile("../openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		schema string
		typ    any
	}{
		{"Error", adminapi.ErrorBody{}},
		{"Identity", adminapi.Self{}},
		{"PasswordChange", adminapi.ChangePassword{}},
		{"AccountList", adminapi.Accounts{}},
		{"AccountCreate", adminapi.CreateAccount{}},
		{"AccountUpdate", adminapi.UpdateAccount{}},
		{"User", adminapi.User{}},
		{"UserList", adminapi.Users{}},
		{"UserCreate", adminapi.CreateUser{}},
		{"UserUpdate", adminapi.UpdateUser{}},
		{"APIKey", adminapi.Key{}},
		{"APIKeyPage", adminapi.KeyPage{}},
		{"APIKeyCreate", adminapi.CreateKey{}},
		{"APIKeyCreated", adminapi.CreatedKey{}},
		{"BulkRevoke", adminapi.BulkRevoke{}},
		{"BulkRevokeResult", adminapi.BulkResult{}},
	}
	for _, tt := range tests {
		t.Run(tt.schema, func(t *testing.T) {
			s, ok := doc.Components.Schemas[tt.schema]
			if !ok {
				t.Fatalf("no schema %s in openapi.json", tt.schema)
			}
			var want []string
			for p := range s.Properties {
				want = append(want, p)
			}
			slices.Sort(want)
			if got := jsonNames(reflect.TypeOf(tt.typ)); !slices.Equal(got, want) {
				t.Errorf("%T has JSON fields %v, schema %s has %v", tt.typ, got, tt.schema, want)
			}
		})
	}
}

// The nested objects match theirs: the error detail, a bulk revocation's
// error entries and the records of AccountList (the Account schema).
func TestNestedTypesMatchOpenAPI(t *testing.T) {
	raw, err := os.ReadFile("../openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	type object struct {
		Properties map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
			Items      struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"items"`
		} `json:"properties"`
	}
	var doc struct {
		Components struct {
			Schemas struct {
				Error            object                              `json:"Error"`
				BulkRevokeResult object                              `json:"BulkRevokeResult"`
				Account          struct{ Properties map[string]any } `json:"Account"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	s := doc.Components.Schemas
	tests := []struct {
		name string
		typ  reflect.Type
		want []string
	}{
		{"Error.error", reflect.TypeFor[adminapi.ErrorDetail](), keys(s.Error.Properties["error"].Properties)},
		{"BulkRevokeResult.errors[]", reflect.TypeFor[adminapi.BulkError](), keys(s.BulkRevokeResult.Properties["errors"].Items.Properties)},
		{"Account", reflect.TypeOf(adminapi.Accounts{}.Accounts).Elem(), keys(s.Account.Properties)},
	}
	for _, tt := range tests {
		if len(tt.want) == 0 {
			t.Errorf("%s: no properties in openapi.json", tt.name)
		}
		if got := jsonNames(tt.typ); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v has JSON fields %v, the schema %v", tt.name, tt.typ, got, tt.want)
		}
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
