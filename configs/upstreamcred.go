package configs

import (
	"fmt"
	"strings"
	"unicode"
)

// UpstreamCredentials configures the encryption of upstream credential
// secrets at rest (DESIGN.md §12): a 32-byte AES-256 key, base64, from
// key_file or KEYGATE_UPSTREAM_CREDENTIALS_KEY; previous_key_file holds the
// key being rotated out (records sealed under it are read and re-sealed
// under the current key on their next write). No key: creating a credential
// is refused, and a route naming one does not validate.
type UpstreamCredentials struct {
	KeyFile         string `yaml:"key_file"`
	Key             string `yaml:"key"` // normally from KEYGATE_UPSTREAM_CREDENTIALS_KEY
	PreviousKeyFile string `yaml:"previous_key_file"`
	PreviousKey     string `yaml:"previous_key"` // KEYGATE_UPSTREAM_CREDENTIALS_PREVIOUS_KEY
}

// Configured reports whether a current key is configured.
func (u *UpstreamCredentials) Configured() bool { return u.Key != "" || u.KeyFile != "" }

// secretSource checks a secret given inline (name, usually from the
// environment) or as a file (name_file): not both, and the file readable.
// The secret itself is never repeated.
func (p *problems) secretSource(group, name, inline, file string) {
	if inline != "" && file != "" {
		p.add(group, "%s and %s_file are mutually exclusive", name, name)
	}
	if file != "" {
		p.readable(group+"."+name+"_file", file)
	}
}

func (p *problems) upstreamCredentials(c *Config) {
	u := &c.UpstreamCredentials
	p.secretSource("upstream_credentials", "key", u.Key, u.KeyFile)
	p.secretSource("upstream_credentials", "previous_key", u.PreviousKey, u.PreviousKeyFile)
	if !u.Configured() && (u.PreviousKey != "" || u.PreviousKeyFile != "") {
		p.add("upstream_credentials", "a previous key needs a current key (key_file or KEYGATE_UPSTREAM_CREDENTIALS_KEY)")
	}
	for i, r := range c.Routes {
		if r.UpstreamCredential == "" {
			continue
		}
		path := fmt.Sprintf("routes[%d].upstream_credential", i)
		n := r.UpstreamCredential
		if len(n) > 255 || strings.ContainsAny(n, "/:") || strings.IndexFunc(n, unicode.IsControl) >= 0 || strings.TrimSpace(n) != n {
			p.add(path, "%s is not a credential name (1-255 bytes, no '/', ':', control characters or surrounding spaces)", quote(n))
		}
		if !u.Configured() {
			p.add(path, "names a credential but no upstream_credentials key is configured (upstream_credentials.key_file or KEYGATE_UPSTREAM_CREDENTIALS_KEY)")
		}
		if r.ForwardAuthorization {
			p.add(path, "cannot go with forward_authorization: the client's Authorization is never forwarded on such a route")
		}
	}
}
