package main

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/upstreamcred"
)

// buildUpstreamCredentials makes the upstream credentials manager
// (DESIGN.md §12): the keyring from upstream_credentials (none configured:
// the API refuses to store a credential, and configs refused any route
// naming one), metrics on reg. It must run before buildChain: the manager
// is one of the invalidation subscribers.
func (g *gateway) buildUpstreamCredentials(reg prometheus.Registerer) error {
	u := g.cfg.UpstreamCredentials
	cur, err := upstreamKey(u.Key, u.KeyFile, "upstream_credentials.key_file", "KEYGATE_UPSTREAM_CREDENTIALS_KEY")
	if err != nil {
		return err
	}
	prev, err := upstreamKey(u.PreviousKey, u.PreviousKeyFile, "upstream_credentials.previous_key_file", "KEYGATE_UPSTREAM_CREDENTIALS_PREVIOUS_KEY")
	if err != nil {
		return err
	}
	var ring *upstreamcred.Keyring
	if cur != nil {
		if ring, err = upstreamcred.NewKeyring(cur, prev); err != nil {
			return fmt.Errorf("upstream_credentials: %w", err)
		}
	}
	g.ucred = upstreamcred.New(upstreamcred.Options{Store: g.store, Keys: ring, Registerer: reg,
		Logger: g.log.Named("upstreamcred")})
	g.closers = append(g.closers, managerCloser{g.ucred})
	return nil
}

// upstreamKey reads a key given inline (env) or as a file; nil when
// neither is set. Errors never quote the key.
func upstreamKey(inline, file, fileKey, envName string) ([]byte, error) {
	switch {
	case inline != "":
		k, err := upstreamcred.ParseKey(inline)
		if err != nil {
			return nil, fmt.Errorf("%s (or its YAML key): %w", envName, err)
		}
		return k, nil
	case file != "":
		k, err := upstreamcred.ReadKeyFile(file)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fileKey, err)
		}
		return k, nil
	}
	return nil, nil
}

// managerCloser stops the manager's background refreshes at shutdown.
type managerCloser struct{ m *upstreamcred.Manager }

func (c managerCloser) Close() error { c.m.Close(); return nil }
