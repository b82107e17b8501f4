package cli

// Issue 18: `keygate key update`, `keygate key rotate`, and the metadata,
// allow-list and expiring-within flags of `key create` and `key list`.

import (
	"encoding/json"
	"flag"
	"fmt"
	"strings"

	"github.com/keygate/keygate/admin/adminapi"
)

// keys2Opts are the flags of issue 18.
type keys2Opts struct {
	metadata       optString
	description    optString // key update: given (even empty) or not
	cidrs          stringList
	cidrsSet       bool
	grace          string
	expiringWithin string
}

// optString is a string flag that knows whether it was given.
type optString struct {
	val string
	set bool
}

func (o *optString) String() string     { return o.val }
func (o *optString) Set(v string) error { o.val, o.set = v, true; return nil }

func metadataFlag(fs *flag.FlagSet, o *opts, help string) {
	fs.Var(&o.keys2.metadata, "metadata", help)
}

func cidrsFlag(fs *flag.FlagSet, o *opts, help string) {
	fs.Var(&o.keys2.cidrs, "allowed-cidrs", help+" (repeatable or comma-separated)")
	fs.Var(&o.keys2.cidrs, "allowed-cidr", "same as --allowed-cidrs")
}

// metadataArg checks --metadata is a JSON object before it is sent.
func metadataArg(v string) (json.RawMessage, error) {
	if v == "" {
		return nil, nil
	}
	m := json.RawMessage(v)
	if !json.Valid(m) || !strings.HasPrefix(strings.TrimSpace(v), "{") {
		return nil, usagef(`--metadata must be a JSON object, e.g. '{"team":"core"}' ('{}' clears)`)
	}
	return m, nil
}

func init() {
	keys := nouns["key"]
	for i := range keys {
		v := &keys[i]
		prev := v.flags
		switch v.name {
		case "create":
			v.flags = func(fs *flag.FlagSet, o *opts) {
				prev(fs, o)
				metadataFlag(fs, o, `metadata of the key: a JSON object, e.g. '{"team":"core"}'`)
				cidrsFlag(fs, o, "client address or CIDR the key may be used from (default: any)")
			}
		case "list":
			v.flags = func(fs *flag.FlagSet, o *opts) {
				prev(fs, o)
				fs.StringVar(&o.keys2.expiringWithin, "expiring-within", "", "only keys expiring within this duration, e.g. 168h")
			}
		}
	}
	nouns["key"] = append(keys,
		verb{name: "update", args: "ID", nargs: 1,
			summary: "change a key: description, metadata, roles, allowed CIDRs, an earlier expiry, rate limit, quota (yours, or with --account and --user a user's)",
			flags: func(fs *flag.FlagSet, o *opts) {
				ownerFlags(fs, o)
				fs.Var(&o.keys2.description, "description", "new description ('' clears)")
				metadataFlag(fs, o, `new metadata, a JSON object replacing the old ('{}' clears)`)
				cidrsFlag(fs, o, "the complete new allow-list; --allowed-cidrs '' clears")
				rolesFlag(fs, o, "the key's complete new role list, a subset of the owner's")
				fs.StringVar(&o.expiresIn, "expires-in", "", "expire this long from now (only earlier than now set)")
				fs.StringVar(&o.expiresAt, "expires-at", "", "expire at this RFC 3339 time (only earlier than now set)")
				limitFlags(fs, o)
			}, run: keyUpdate},
		verb{name: "rotate", args: "ID", nargs: 1,
			summary: "replace a key by a new one (shown once); the old one works for --grace more (default 0: dies at once)",
			flags: func(fs *flag.FlagSet, o *opts) {
				ownerFlags(fs, o)
				fs.StringVar(&o.keys2.grace, "grace", "", "how long the old key keeps working, e.g. 24h (default 0s)")
			}, run: keyRotate},
	)
}

func keyUpdate(s *session, args []string) error {
	p, lim, err := keyWriteArgs(s.o)
	if err != nil {
		return err
	}
	// Only the flags given are sent: an empty --description clears it.
	body := adminapi.UpdateKey{SetLimits: lim}
	if s.o.keys2.description.set {
		body.Description = &s.o.keys2.description.val
	}
	if s.o.keys2.metadata.set {
		m, err := metadataArg(s.o.keys2.metadata.val)
		if err != nil {
			return err
		}
		if m == nil {
			m = json.RawMessage("{}")
		}
		body.Metadata = &m
	}
	if s.o.keys2.cidrsSet {
		c := nonNil(s.o.keys2.cidrs.vals)
		body.AllowedCIDRs = &c
	}
	if s.o.rolesSet {
		r := nonNil(s.o.roles.vals)
		body.Roles = &r
	}
	if s.o.expiresIn != "" {
		body.ExpiresIn = &s.o.expiresIn
	}
	if s.o.expiresAt != "" {
		body.ExpiresAt = &s.o.expiresAt
	}
	if body.Description == nil && body.Metadata == nil && body.AllowedCIDRs == nil && body.Roles == nil &&
		body.ExpiresIn == nil && body.ExpiresAt == nil && !body.Any() {
		return usagef("nothing to change: give --description, --metadata, --allowed-cidrs, --roles, --expires-in, --expires-at, --rate-limit or --quota")
	}
	var k adminapi.Key
	raw, err := s.call("PATCH", p+"/"+seg(args[0]), nil, body, &k)
	if err != nil {
		return err
	}
	return s.showKey(raw, &k)
}

func keyRotate(s *session, args []string) error {
	p, err := ownerPath(s.o)
	if err != nil {
		return err
	}
	var body adminapi.RotateKey
	if s.o.keys2.grace != "" {
		body.Grace = &s.o.keys2.grace
	}
	var k adminapi.CreatedKey
	raw, err := s.call("POST", p+"/"+seg(args[0])+"/rotate", nil, body, &k)
	if err != nil {
		return err
	}
	return s.showNewKey(raw, &k, fmt.Sprintf("Key %s keeps working for the grace period (%s), then expires.", k.RotatedFrom, orZero(s.o.keys2.grace)),
		"Replaces", k.RotatedFrom)
}

func orZero(g string) string {
	if g == "" {
		return "0s"
	}
	return g
}

// createKeyExtras adds --metadata and --allowed-cidrs to a key creation.
func createKeyExtras(o *opts, body *adminapi.CreateKey) error {
	m, err := metadataArg(o.keys2.metadata.val)
	if err != nil {
		return err
	}
	body.Metadata = m
	body.AllowedCIDRs = o.keys2.cidrs.vals
	return nil
}
