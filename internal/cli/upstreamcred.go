package cli

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/admin/adminapi"
)

// EnvUpstreamSecret holds the secret of `keygate upstream-credential
// add|update` (else --secret-file, else a no-echo prompt; never a flag).
const EnvUpstreamSecret = "KEYGATE_UPSTREAM_SECRET" //nolint:gosec // a name, not a credential

// ucOpts are the flags of the upstream-credential verbs.
type ucOpts struct {
	fields     fieldList
	secretFile string
	validate   bool
	newSecret  bool
}

// fieldList is a repeatable --field key=value flag.
type fieldList struct{ m map[string]string }

func (f *fieldList) String() string { return "" }

func (f *fieldList) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("--field takes key=value (e.g. token_url=https://…)")
	}
	if f.m == nil {
		f.m = map[string]string{}
	}
	f.m[strings.TrimSpace(k)] = val
	return nil
}

func ucFlags(write bool) func(fs *flag.FlagSet, o *opts) {
	return func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.account, "account", "", "account of the credential (required)")
		fs.StringVar(&o.account, "a", "", "short for --account")
		if !write {
			return
		}
		fs.Var(&o.uc.fields, "field", "non-secret setting key=value (repeatable): username, name, token_url, client_id, scopes, audience, auth_style, validate_url")
		fs.StringVar(&o.uc.secretFile, "secret-file", "", "read the secret from this file (e.g. a Google JSON key); else "+EnvUpstreamSecret+", else a prompt")
		fs.BoolVar(&o.uc.validate, "validate", true, "validate the credential (token fetch, validate_url) before storing it")
	}
}

func init() {
	nouns["upstream-credential"] = []verb{
		{name: "list", summary: "list an account's upstream credentials", flags: ucFlags(false), run: ucList},
		{name: "get", args: "NAME", nargs: 1, summary: "show an upstream credential (never its secret)", flags: ucFlags(false), run: ucGet},
		{name: "add", args: "NAME", nargs: 1, summary: "add a credential: --type basic|bearer|header|oauth2_client_credentials|google_service_account, --field k=v; the secret from " + EnvUpstreamSecret + ", --secret-file or a prompt",
			flags: func(fs *flag.FlagSet, o *opts) {
				ucFlags(true)(fs, o)
				fs.StringVar(&o.typ, "type", "", "credential type (required)")
			}, run: ucAdd},
		{name: "update", args: "NAME", nargs: 1, summary: "change fields (--field, all of them) and/or the secret (--new-secret, " + EnvUpstreamSecret + " or --secret-file)",
			flags: func(fs *flag.FlagSet, o *opts) {
				ucFlags(true)(fs, o)
				fs.BoolVar(&o.uc.newSecret, "new-secret", false, "prompt for a new secret")
			}, run: ucUpdate},
		{name: "delete", args: "NAME", nargs: 1, summary: "delete an upstream credential", flags: ucFlags(false), run: ucDelete},
	}
	Commands = append(Commands, Command{"upstream-credential", "manage upstream credentials (list, get, add, update, delete)"})
}

func ucPath(o *opts, name string) string {
	p := "/v1/accounts/" + seg(o.account) + "/upstream-credentials"
	if name != "" {
		p += "/" + seg(name)
	}
	return p
}

func ucQuery(o *opts) url.Values {
	if o.uc.validate {
		return nil
	}
	return url.Values{"validate": {"false"}}
}

// ucSecret reads the secret: --secret-file, else KEYGATE_UPSTREAM_SECRET,
// else a prompt without echo (or one line of stdin from a pipe).
func (s *session) ucSecret(required bool) (*string, error) {
	if f := s.o.uc.secretFile; f != "" {
		b, err := os.ReadFile(f) //nolint:gosec // the operator names the file
		if err != nil {
			return nil, usagef("--secret-file: %v", err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return nil, usagef("--secret-file %s is empty", f)
		}
		return &v, nil
	}
	if v, ok := lookupEnv(s.environ, EnvUpstreamSecret); ok && v != "" {
		return &v, nil
	}
	if !required && !s.o.uc.newSecret {
		return nil, nil
	}
	v, err := s.readSecret("Secret: ")
	if err != nil || v == "" {
		return nil, usagef("no secret: set %s, use --secret-file, or type it at the prompt (never a flag)", EnvUpstreamSecret)
	}
	return &v, nil
}

func ucList(s *session, _ []string) error {
	if err := needAccount(s.o); err != nil {
		return err
	}
	var out adminapi.UpstreamCredentials
	raw, err := s.call("GET", ucPath(s.o, ""), nil, nil, &out)
	if err != nil {
		return err
	}
	if s.o.output == "json" {
		return s.printJSON(raw)
	}
	rows := make([][]string, 0, len(out.UpstreamCredentials))
	for _, c := range out.UpstreamCredentials {
		rows = append(rows, []string{c.Name, c.Type, orDash(c.Validation), tsPtr(c.UpdatedAt)})
	}
	return s.table("NAME\tTYPE\tVALIDATION\tUPDATED", rows)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func tsPtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return ts(*t)
}

func (s *session) showUC(raw []byte, c *adminapi.UpstreamCredential) error {
	if s.o.output == "json" {
		return s.printJSON(raw)
	}
	keys := make([]string, 0, len(c.Fields))
	for k := range c.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fields := make([]string, 0, len(keys))
	for _, k := range keys {
		fields = append(fields, k+"="+c.Fields[k])
	}
	secret := "-"
	if c.SecretSet {
		secret = "set (write-only)" //nolint:gosec // a label, not a credential
	}
	kv := []string{"Name", c.Name, "Type", c.Type, "Fields", orDash(strings.Join(fields, " ")), "Secret", secret,
		"Validation", orDash(c.Validation)}
	if c.UpdatedAt != nil {
		kv = append(kv, "Updated", ts(*c.UpdatedAt))
	}
	return s.fields(kv...)
}

func ucGet(s *session, args []string) error {
	if err := needAccount(s.o); err != nil {
		return err
	}
	var c adminapi.UpstreamCredential
	raw, err := s.call("GET", ucPath(s.o, args[0]), nil, nil, &c)
	if err != nil {
		return err
	}
	return s.showUC(raw, &c)
}

func ucAdd(s *session, args []string) error {
	if err := needAccount(s.o); err != nil {
		return err
	}
	if s.o.typ == "" {
		return usagef("--type is required: basic, bearer, header, oauth2_client_credentials or google_service_account")
	}
	if _, err := s.credentials(); err != nil { // prompt for the caller's first
		return err
	}
	secret, err := s.ucSecret(true)
	if err != nil {
		return err
	}
	body := adminapi.CreateUpstreamCredential{Name: args[0], Type: s.o.typ, Fields: s.o.uc.fields.m, Secret: secret}
	var c adminapi.UpstreamCredential
	raw, err := s.call("POST", ucPath(s.o, ""), ucQuery(s.o), body, &c)
	if err != nil {
		return err
	}
	return s.showUC(raw, &c)
}

func ucUpdate(s *session, args []string) error {
	if err := needAccount(s.o); err != nil {
		return err
	}
	if _, err := s.credentials(); err != nil {
		return err
	}
	secret, err := s.ucSecret(false)
	if err != nil {
		return err
	}
	var body adminapi.UpdateUpstreamCredential
	if s.o.uc.fields.m != nil {
		body.Fields = &s.o.uc.fields.m
	}
	body.Secret = secret
	if body.Fields == nil && body.Secret == nil {
		return usagef("nothing to change: give --field, --new-secret, --secret-file or %s", EnvUpstreamSecret)
	}
	var c adminapi.UpstreamCredential
	raw, err := s.call("PATCH", ucPath(s.o, args[0]), ucQuery(s.o), body, &c)
	if err != nil {
		return err
	}
	return s.showUC(raw, &c)
}

func ucDelete(s *session, args []string) error {
	if err := needAccount(s.o); err != nil {
		return err
	}
	if _, err := s.call("DELETE", ucPath(s.o, args[0]), nil, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(s.stdout, "Upstream credential %s deleted.\n", args[0])
	return nil
}
