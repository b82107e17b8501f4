package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/admin/adminapi"
	"github.com/keygate/keygate/store"
)

// Flag sets shared by verbs.
func accountFlag(required bool) func(fs *flag.FlagSet, o *opts) {
	return func(fs *flag.FlagSet, o *opts) {
		help := "account of the user"
		if required {
			help += " (required)"
		}
		fs.StringVar(&o.account, "account", "", help)
		fs.StringVar(&o.account, "a", "", "short for --account")
	}
}

func rolesFlag(fs *flag.FlagSet, o *opts, help string) {
	fs.Var(&o.roles, "role", help+" (repeatable or comma-separated)")
	fs.Var(&o.roles, "roles", "same as --role")
}

func listFlags(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.name, "name", "", "only keys with this name")
	fs.StringVar(&o.status, "status", "", "active (default), expired, revoked or all")
	fs.IntVar(&o.limit, "limit", 0, "page size (default: all pages)")
	fs.StringVar(&o.cursor, "cursor", "", "continue after a previous page (its next_cursor)")
}

var nouns = map[string][]verb{
	"account": {
		{name: "list", summary: "list accounts (global admin)", run: accountList},
		{name: "get", args: "NAME", nargs: 1, summary: "show an account", run: accountGet},
		{name: "create", args: "NAME", nargs: 1, summary: "create an account (global admin)", run: accountCreate},
		{name: "update", args: "NAME", nargs: 1, summary: "enable or disable an account (--state), or set its rate limit and quota (shared by its users)",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.state, "state", "", "enabled or disabled")
				limitFlags(fs, o)
			}, run: accountUpdate},
		{name: "delete", args: "NAME", nargs: 1, summary: "delete an account with its users and keys", run: accountDelete},
	},
	"user": {
		{name: "list", summary: "list the users of an account", flags: accountFlag(true), run: userList},
		{name: "get", args: "USERNAME", nargs: 1, summary: "show a user", flags: accountFlag(true), run: userGet},
		{name: "create", args: "USERNAME", nargs: 1, summary: "create a user; the password is prompted for (or read from stdin)",
			flags: func(fs *flag.FlagSet, o *opts) {
				accountFlag(true)(fs, o)
				fs.StringVar(&o.typ, "type", "", "user (default), account_admin, admin or service (a service account: no password)")
				rolesFlag(fs, o, "role of the user")
			}, run: userCreate},
		{name: "update", args: "USERNAME", nargs: 1, summary: "change roles, state, type or (with --password) the password",
			flags: func(fs *flag.FlagSet, o *opts) {
				accountFlag(true)(fs, o)
				fs.StringVar(&o.typ, "type", "", "new type: user, account_admin or admin")
				fs.StringVar(&o.state, "state", "", "enabled or disabled")
				rolesFlag(fs, o, "the user's complete new role list; --roles '' clears")
				fs.BoolVar(&o.password, "password", false, "set a new password (prompted for, or read from stdin)")
				limitFlags(fs, o)
			}, run: userUpdate},
		{name: "delete", args: "USERNAME", nargs: 1, summary: "delete a user and their keys", flags: accountFlag(true), run: userDelete},
		{name: "password", summary: "change your own password (prompts for the current and the new one)", run: userPassword},
		{name: "whoami", summary: "show who the credentials authenticate as", run: userWhoami},
	},
	"key": {
		{name: "list", summary: "list your keys, or with --account/--user search keys (admins)",
			flags: func(fs *flag.FlagSet, o *opts) {
				fs.StringVar(&o.account, "account", "", "search keys of this account (admins)")
				fs.StringVar(&o.user, "user", "", "search keys of this user (admins)")
				listFlags(fs, o)
			}, run: keyList},
		{name: "get", args: "ID", nargs: 1, summary: "show one of your keys, or with --account and --user a user's key",
			flags: ownerFlags, run: keyGet},
		{name: "create", args: "NAME", nargs: 1, summary: "create a key for yourself, or with --account and --user for a user; its value is shown once",
			flags: func(fs *flag.FlagSet, o *opts) {
				ownerFlags(fs, o)
				fs.StringVar(&o.description, "description", "", "what the key is for")
				fs.StringVar(&o.expiresIn, "expires-in", "", "lifetime, e.g. 720h (default: api_keys.max_lifetime)")
				fs.StringVar(&o.expiresAt, "expires-at", "", "expiry time, RFC 3339, e.g. 2030-01-31T00:00:00Z")
				rolesFlag(fs, o, "role of the key, a subset of the owner's (default: all of them)")
				limitFlags(fs, o)
			}, run: keyCreate},
		{name: "revoke", args: "ID...", nargs: 0, minOnly: true,
			summary: "revoke keys: one of yours, a user's (--account, --user), or in bulk (--bulk with ids and/or --name, --username, --account)",
			flags: func(fs *flag.FlagSet, o *opts) {
				ownerFlags(fs, o)
				fs.BoolVar(&o.bulk, "bulk", false, "revoke through DELETE /v1/api-keys: the ids given and/or every key matching --name, --username, --account")
				fs.StringVar(&o.name, "name", "", "with --bulk: keys with this name")
				fs.StringVar(&o.username, "username", "", "with --bulk: keys of this user")
			}, run: keyRevoke},
	},
}

func init() {
	// "key delete" is "key revoke": revocation is how a key is deleted.
	for _, v := range nouns["key"] {
		if v.name == "revoke" {
			v.name, v.summary = "delete", "same as revoke"
			nouns["key"] = append(nouns["key"], v)
			break
		}
	}
}

func ownerFlags(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.account, "account", "", "account of the key's owner (with --user)")
	fs.StringVar(&o.user, "user", "", "owner of the key (with --account); default: yourself")
}

// ownerPath is the keys collection of --account/--user, or your own.
func ownerPath(o *opts) (string, error) {
	switch {
	case o.user == "" && o.account == "":
		return "/v1/user/api-keys", nil
	case o.user == "" || o.account == "":
		return "", usagef("give both --account and --user (or neither, for your own keys)")
	}
	return "/v1/accounts/" + seg(o.account) + "/users/" + seg(o.user) + "/api-keys", nil
}

// Output helpers.

// printJSON re-indents a JSON answer.
func (s *session) printJSON(raw []byte) error {
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		_, err = s.stdout.Write(raw)
		return err
	}
	b.WriteByte('\n')
	_, err := s.stdout.Write(b.Bytes())
	return err
}

func (s *session) table(header string, rows [][]string) error {
	tw := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// fields prints name/value pairs.
func (s *session) fields(kv ...string) error {
	tw := tabwriter.NewWriter(s.stdout, 0, 4, 2, ' ', 0)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(tw, "%s:\t%s\n", kv[i], kv[i+1])
	}
	return tw.Flush()
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func tsp(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return ts(*t)
}

func roles(r []string) string {
	if len(r) == 0 {
		return "-"
	}
	return strings.Join(r, ",")
}

// Accounts.

func accountList(s *session, _ []string) error {
	var out adminapi.Accounts
	raw, err := s.call("GET", "/v1/accounts", nil, nil, &out)
	if err != nil {
		return err
	}
	if s.o.output == "json" {
		return s.printJSON(raw)
	}
	rows := make([][]string, 0, len(out.Accounts))
	for _, a := range out.Accounts {
		rows = append(rows, []string{a.Name, string(a.State), ts(a.CreatedAt)})
	}
	return s.table("NAME\tSTATE\tCREATED", rows)
}

func (s *session) showAccount(raw []byte, a *adminapi.Account) error {
	if s.o.output == "json" {
		return s.printJSON(raw)
	}
	return s.fields(append([]string{"Name", a.Name, "State", string(a.State), "Created", ts(a.CreatedAt)}, limitFields(a.Limits)...)...)
}

func accountGet(s *session, args []string) error {
	var a adminapi.Account
	raw, err := s.call("GET", "/v1/accounts/"+seg(args[0]), nil, nil, &a)
	if err != nil {
		return err
	}
	return s.showAccount(raw, &a)
}

func accountCreate(s *session, args []string) error {
	var a adminapi.Account
	raw, err := s.call("POST", "/v1/accounts", nil, adminapi.CreateAccount{Name: args[0]}, &a)
	if err != nil {
		return err
	}
	return s.showAccount(raw, &a)
}

func accountUpdate(s *session, args []string) error {
	lim, err := setLimits(s.o)
	if err != nil {
		return err
	}
	if s.o.state == "" && !lim.Any() {
		return usagef("nothing to change: give --state enabled or --state disabled, --rate-limit or --quota")
	}
	body := adminapi.UpdateAccount{SetLimits: lim}
	if s.o.state != "" {
		state := store.State(s.o.state)
		body.State = &state
	}
	var a adminapi.Account
	raw, err := s.call("PATCH", "/v1/accounts/"+seg(args[0]), nil, body, &a)
	if err != nil {
		return err
	}
	return s.showAccount(raw, &a)
}

func accountDelete(s *session, args []string) error {
	if _, err := s.call("DELETE", "/v1/accounts/"+seg(args[0]), nil, nil, nil); err != nil {
		return err
	}
	return s.done("account " + args[0] + " deleted, with its users and their keys")
}

// done reports a success without a body.
func (s *session) done(msg string) error {
	if s.o.output == "json" {
		return s.printJSON([]byte(`{"ok":true}`))
	}
	_, err := fmt.Fprintln(s.stdout, msg)
	return err
}

// Users.

func needAccount(o *opts) error {
	if o.account == "" {
		return usagef("give the user's account with --account")
	}
	return nil
}

func userPath(o *opts, username string) string {
	p := "/v1/accounts/" + seg(o.account) + "/users"
	if username != "" {
		p += "/" + seg(username)
	}
	return p
}

func userList(s *session, _ []string) error {
	if err := needAccount(s.o); err != nil {
		return err
	}
	var out adminapi.Users
	raw, err := s.call("GET", userPath(s.o, ""), nil, nil, &out)
	if err != nil {
		return err
	}
	if s.o.output == "json" {
		return s.printJSON(raw)
	}
	rows := make([][]string, 0, len(out.Users))
	for _, u := range out.Users {
		rows = append(rows, []string{u.Username, u.Account, string(u.Type), roles(u.Roles), string(u.State), ts(u.CreatedAt)})
	}
	return s.table("USERNAME\tACCOUNT\tTYPE\tROLES\tSTATE\tCREATED", rows)
}

func (s *session) showUser(raw []byte, u *adminapi.User) error {
	if s.o.output == "json" {
		return s.printJSON(raw)
	}
	return s.fields(append([]string{"Username", u.Username, "Account", u.Account, "Type", string(u.Type), "Roles", roles(u.Roles),
		"State", string(u.State), "Created", ts(u.CreatedAt), "Updated", ts(u.UpdatedAt)}, limitFields(u.Limits)...)...)
}

func userGet(s *session, args []string) error {
	if err := needAccount(s.o); err != nil {
		return err
	}
	var u adminapi.User
	raw, err := s.call("GET", userPath(s.o, args[0]), nil, nil, &u)
	if err != nil {
		return err
	}
	return s.showUser(raw, &u)
}

func userCreate(s *session, args []string) error {
	if err := needAccount(s.o); err != nil {
		return err
	}
	if _, err := s.credentials(); err != nil { // prompt for the caller's first
		return err
	}
	body := adminapi.CreateUser{Username: args[0], Type: store.UserType(s.o.typ)}
	if body.Type != store.TypeService { // a service account has no password
		pw, err := s.newPassword(args[0])
		if err != nil {
			return err
		}
		body.Password = &pw
	}
	if s.o.rolesSet {
		body.Roles = nonNil(s.o.roles.vals)
	}
	var u adminapi.User
	raw, err := s.call("POST", userPath(s.o, ""), nil, body, &u)
	if err != nil {
		return err
	}
	return s.showUser(raw, &u)
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func userUpdate(s *session, args []string) error {
	if err := needAccount(s.o); err != nil {
		return err
	}
	lim, err := setLimits(s.o)
	if err != nil {
		return err
	}
	body := adminapi.UpdateUser{SetLimits: lim}
	if s.o.typ != "" {
		t := store.UserType(s.o.typ)
		body.Type = &t
	}
	if s.o.state != "" {
		st := store.State(s.o.state)
		body.State = &st
	}
	if s.o.rolesSet {
		r := nonNil(s.o.roles.vals)
		body.Roles = &r
	}
	if s.o.password {
		if _, err := s.credentials(); err != nil {
			return err
		}
		pw, err := s.newPassword(args[0])
		if err != nil {
			return err
		}
		body.Password = &pw
	}
	if body == (adminapi.UpdateUser{}) {
		return usagef("nothing to change: give --roles, --state, --type, --password, --rate-limit or --quota")
	}
	var u adminapi.User
	raw, err := s.call("PATCH", userPath(s.o, args[0]), nil, body, &u)
	if err != nil {
		return err
	}
	return s.showUser(raw, &u)
}

func userDelete(s *session, args []string) error {
	if err := needAccount(s.o); err != nil {
		return err
	}
	if _, err := s.call("DELETE", userPath(s.o, args[0]), nil, nil, nil); err != nil {
		return err
	}
	return s.done("user " + args[0] + " deleted, with their keys")
}

func userPassword(s *session, _ []string) error {
	if _, err := s.credentials(); err != nil {
		return err
	}
	cur, err := s.readSecret("Current password: ")
	if err != nil {
		return usagef("no current password: type it at the prompt or pipe it on stdin")
	}
	pw, err := s.newPassword("yourself")
	if err != nil {
		return err
	}
	if _, err := s.call("PUT", "/v1/user/password", nil, adminapi.ChangePassword{Current: &cur, New: &pw}, nil); err != nil {
		return err
	}
	return s.done("password changed; use the new one from now on")
}

func userWhoami(s *session, _ []string) error {
	var id adminapi.Self
	raw, err := s.call("GET", "/v1/user", nil, nil, &id)
	if err != nil {
		return err
	}
	if s.o.output == "json" {
		return s.printJSON(raw)
	}
	kv := []string{"Username", id.Username, "Account", id.Account, "Type", string(id.Type), "Roles", roles(id.Roles), "Method", id.Method}
	if id.KeyID != "" {
		kv = append(kv, "Key", id.KeyID+" ("+id.KeyName+")")
	}
	return s.fields(kv...)
}

// Keys.

func keyRows(keys []adminapi.Key) [][]string {
	rows := make([][]string, 0, len(keys))
	for _, k := range keys {
		last := "-"
		if k.LastUsedAt != nil {
			last = ts(*k.LastUsedAt)
		}
		rows = append(rows, []string{k.ID, k.Name, k.Username, k.Account, roles(k.Roles), string(k.Status), tsp(k.ExpiresAt), last})
	}
	return rows
}

const keyHeader = "ID\tNAME\tUSER\tACCOUNT\tROLES\tSTATUS\tEXPIRES\tLAST USED"

func keyList(s *session, _ []string) error {
	path := "/v1/user/api-keys"
	q := url.Values{}
	if s.o.account != "" || s.o.user != "" {
		path = "/v1/api-keys"
		if s.o.account != "" {
			q.Set("account", s.o.account)
		}
		if s.o.user != "" {
			q.Set("username", s.o.user)
		}
	}
	if s.o.name != "" {
		q.Set("name", s.o.name)
	}
	if s.o.status != "" {
		q.Set("status", s.o.status)
	}
	if s.o.keys2.expiringWithin != "" {
		q.Set("expiring_within", s.o.keys2.expiringWithin)
	}
	if s.o.limit < 0 {
		return usagef("--limit must be positive")
	}
	if s.o.limit > 0 {
		q.Set("limit", strconv.Itoa(s.o.limit))
	}
	cursor := s.o.cursor
	var all []adminapi.Key
	for {
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var page adminapi.KeyPage
		raw, err := s.call("GET", path, q, nil, &page)
		if err != nil {
			return err
		}
		if s.o.limit > 0 {
			// One page, as asked.
			if s.o.output == "json" {
				return s.printJSON(raw)
			}
			if err := s.table(keyHeader, keyRows(page.APIKeys)); err != nil {
				return err
			}
			if page.NextCursor != "" {
				fmt.Fprintf(s.stderr, "more keys: add --cursor %s\n", page.NextCursor)
			}
			return nil
		}
		all = append(all, page.APIKeys...)
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if s.o.output == "json" {
		b, err := json.Marshal(adminapi.KeyPage{APIKeys: append([]adminapi.Key{}, all...)})
		if err != nil {
			return err
		}
		return s.printJSON(b)
	}
	return s.table(keyHeader, keyRows(all))
}

func (s *session) showKey(raw []byte, k *adminapi.Key) error {
	if s.o.output == "json" {
		return s.printJSON(raw)
	}
	last := "-"
	if k.LastUsedAt != nil {
		last = ts(*k.LastUsedAt)
	}
	revoked := "-"
	if k.RevokedAt != nil {
		revoked = ts(*k.RevokedAt)
	}
	return s.fields(append([]string{"ID", k.ID, "Name", k.Name, "Description", k.Description, "Owner", k.Username + " (" + k.Account + ")",
		"Roles", roles(k.Roles), "Status", string(k.Status), "Created", ts(k.CreatedAt), "Expires", tsp(k.ExpiresAt),
		"Revoked", revoked, "Last used", last}, limitFields(k.Limits)...)...)
}

func keyGet(s *session, args []string) error {
	p, err := ownerPath(s.o)
	if err != nil {
		return err
	}
	var k adminapi.Key
	raw, err := s.call("GET", p+"/"+seg(args[0]), nil, nil, &k)
	if err != nil {
		return err
	}
	return s.showKey(raw, &k)
}

func keyCreate(s *session, args []string) error {
	p, lim, err := keyWriteArgs(s.o)
	if err != nil {
		return err
	}
	body := adminapi.CreateKey{Name: args[0], Description: s.o.description, SetLimits: lim}
	if s.o.expiresIn != "" {
		body.ExpiresIn = &s.o.expiresIn
	}
	if s.o.expiresAt != "" {
		body.ExpiresAt = &s.o.expiresAt
	}
	if s.o.rolesSet {
		r := nonNil(s.o.roles.vals)
		body.Roles = &r
	}
	if err := createKeyExtras(s.o, &body); err != nil {
		return err
	}
	var k adminapi.CreatedKey
	raw, err := s.call("POST", p, nil, body, &k)
	if err != nil {
		return err
	}
	return s.showNewKey(raw, &k, "Use it as 'Authorization: Bearer <API key>' or 'Authorization: ApiKey <Encoded>'.")
}

// showNewKey prints a key's one answer that holds its value (creation,
// rotation) with the warning that it is not shown again; more are extra
// name, value pairs after the ID and Name, note a line after the value.
func (s *session) showNewKey(raw []byte, k *adminapi.CreatedKey, note string, more ...string) error {
	const warn = "Store this API key now: it is shown only once and cannot be shown again."
	if s.o.output == "json" {
		fmt.Fprintln(s.stderr, "keygate: "+warn)
		return s.printJSON(raw)
	}
	kv := append([]string{"ID", k.ID, "Name", k.Name}, more...)
	kv = append(kv, "Roles", roles(k.Roles), "Created", ts(k.CreatedAt), "Expires", tsp(k.ExpiresAt))
	if err := s.fields(kv...); err != nil {
		return err
	}
	fmt.Fprintf(s.stdout, "\nAPI key:  %s\nEncoded:  %s\n\n", k.APIKey, k.Encoded)
	fmt.Fprintln(s.stdout, note)
	fmt.Fprintln(s.stderr, "WARNING: "+warn)
	return nil
}

func keyRevoke(s *session, args []string) error {
	if s.o.bulk {
		return keyBulkRevoke(s, args)
	}
	if s.o.name != "" || s.o.username != "" {
		return usagef("--name and --username select keys only with --bulk")
	}
	if len(args) != 1 {
		return usagef("give one key ID (or --bulk to revoke several)")
	}
	p, err := ownerPath(s.o)
	if err != nil {
		return err
	}
	var k adminapi.Key
	raw, err := s.call("DELETE", p+"/"+seg(args[0]), nil, nil, &k)
	if err != nil {
		return err
	}
	if s.o.output == "json" {
		return s.printJSON(raw)
	}
	_, err = fmt.Fprintf(s.stdout, "key %s (%s) revoked at %s\n", k.ID, k.Name, tsp(k.RevokedAt))
	return err
}

func keyBulkRevoke(s *session, ids []string) error {
	if s.o.user != "" {
		return usagef("with --bulk, select the owner with --username")
	}
	if len(ids) == 0 && s.o.name == "" && s.o.username == "" && s.o.account == "" {
		return usagef("say which keys to revoke: ids, or --name, --username, --account")
	}
	body := adminapi.BulkRevoke{IDs: ids, Name: s.o.name, Username: s.o.username, Account: s.o.account}
	var res adminapi.BulkResult
	raw, err := s.call("DELETE", "/v1/api-keys", nil, body, &res)
	if err != nil {
		return err
	}
	if s.o.output == "json" {
		if err := s.printJSON(raw); err != nil {
			return err
		}
	} else {
		rows := [][]string{}
		for _, id := range res.Invalidated {
			rows = append(rows, []string{id, "revoked", ""})
		}
		for _, id := range res.PreviouslyInvalidated {
			rows = append(rows, []string{id, "already revoked", ""})
		}
		for _, e := range res.Errors {
			rows = append(rows, []string{or(e.ID, "-"), "error: " + e.Code, e.Message})
		}
		if err := s.table("ID\tRESULT\tDETAIL", rows); err != nil {
			return err
		}
	}
	if res.ErrorCount > 0 {
		return fmt.Errorf("%d of the keys could not be revoked (see above)", res.ErrorCount)
	}
	return nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// keyWriteArgs checks what key create and key update share: the owner's
// path, one expiry flag at most, and the rate limit and quota flags.
func keyWriteArgs(o *opts) (string, adminapi.SetLimits, error) {
	p, err := ownerPath(o)
	if err != nil {
		return "", adminapi.SetLimits{}, err
	}
	if o.expiresIn != "" && o.expiresAt != "" {
		return "", adminapi.SetLimits{}, usagef("give --expires-in or --expires-at, not both")
	}
	lim, err := setLimits(o)
	return p, lim, err
}
