package main

import (
	"crypto/rand"
	"os"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/ui"
	"github.com/keygate/keygate/configs"
)

// mountUI adds the web UI (admin.ui) to the admin server a.
func (g *gateway) mountUI(a *admin.Server, api *admin.API, auth admin.Authenticator) error {
	secret, shared := uiSecret(g.cfg)
	if !shared && g.demoLn == nil { // the demo is one process anyway
		g.log.Warn("web UI sessions are signed with a random per-process secret: they end on restart and hold on this instance only; " +
			"set KEYGATE_ADMIN_UI_SESSION_SECRET (the same on every instance) to share them")
	}
	u, err := ui.New(ui.Options{API: api, Store: g.store, Auth: auth, Secret: secret,
		ExpiryWarning: g.cfg.APIKeys.ExpiryWarning.D(), Logger: g.log.Named("ui")})
	if err != nil {
		return err
	}
	u.Mount(a)
	return nil
}

// uiSecret is the secret of the UI's session cookies: admin.ui_session_secret,
// else the HS256 tokens secret (every instance shares it already; the UI
// derives its own keys from it with HKDF), else random. shared reports
// whether other instances with the same configuration have it too.
func uiSecret(cfg *configs.Config) (secret []byte, shared bool) {
	if s := cfg.Admin.UISessionSecret; s != "" {
		return []byte(s), true
	}
	sg := cfg.Tokens.Signing
	if sg.Algorithm == configs.AlgHS256 {
		var s []byte
		if sg.SecretFile != "" {
			s, _ = os.ReadFile(sg.SecretFile)
		} else {
			s = []byte(sg.Secret)
		}
		if len(s) >= 32 {
			return s, true
		}
	}
	s := make([]byte, 32)
	_, _ = rand.Read(s)
	return s, false
}
