package upstreamcred

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/keygate/keygate/store"
)

// KeySize is the size of an encryption key: AES-256.
const KeySize = 32

// Keyring seals secrets with the current key and opens them with the
// current or the previous one (rotation: a record sealed under the previous
// key is re-sealed under the current one on its next write).
type Keyring struct {
	cur, prev     cipher.AEAD
	curID, prevID string
}

// ParseKey decodes a key: 32 bytes in standard or URL-safe base64 (padded
// or not). White space around it (a trailing newline in a file) is ignored.
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != KeySize {
				return nil, fmt.Errorf("upstream credentials key: %d bytes after base64, want %d", len(b), KeySize)
			}
			return b, nil
		}
	}
	return nil, errors.New("upstream credentials key: not base64")
}

// ReadKeyFile reads a key file (see ParseKey). The error never quotes the
// file's content.
func ReadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path) //nolint:gosec // operator-configured path
	if err != nil {
		return nil, fmt.Errorf("upstream credentials key file: %w", err)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// NewKeyring makes a keyring of the current key and, optionally, the
// previous one (nil).
func NewKeyring(cur, prev []byte) (*Keyring, error) {
	k := &Keyring{}
	var err error
	if k.cur, k.curID, err = aead(cur); err != nil {
		return nil, err
	}
	if prev != nil {
		if k.prev, k.prevID, err = aead(prev); err != nil {
			return nil, err
		}
	}
	return k, nil
}

func aead(key []byte) (cipher.AEAD, string, error) {
	if len(key) != KeySize {
		return nil, "", fmt.Errorf("upstream credentials key: %d bytes, want %d", len(key), KeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, "", err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, "", err
	}
	// The id names the key without revealing it: a hash under a fixed
	// domain label, truncated.
	sum := sha256.Sum256(append([]byte("keygate upstream credentials key id\x00"), key...))
	return g, hex.EncodeToString(sum[:8]), nil
}

// CurrentID is the id of the key new records are sealed under.
func (k *Keyring) CurrentID() string { return k.curID }

// aad binds a ciphertext to its record: it cannot be moved to another
// account, name or type.
func aad(account, name, typ string) []byte {
	return []byte("keygate/upstream-credential/v1\x00" + account + "\x00" + name + "\x00" + typ)
}

// Seal encrypts secret for the record c (account, name, type) and sets
// c.Sealed and c.KeyID.
func (k *Keyring) Seal(c *store.UpstreamCredential, secret []byte) error {
	if k == nil {
		return ErrNoKey
	}
	nonce := make([]byte, k.cur.NonceSize(), k.cur.NonceSize()+len(secret)+k.cur.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	c.Sealed = k.cur.Seal(nonce, nonce, secret, aad(c.Account, c.Name, c.Type))
	c.KeyID = k.curID
	return nil
}

// Open decrypts c's secret with the key it was sealed under. The error
// says which key was missing or that the ciphertext did not authenticate
// (tampered, or moved from another record), never any content.
func (k *Keyring) Open(c *store.UpstreamCredential) ([]byte, error) {
	if k == nil {
		return nil, ErrNoKey
	}
	var g cipher.AEAD
	switch c.KeyID {
	case k.curID:
		g = k.cur
	case k.prevID:
		g = k.prev
	}
	if g == nil {
		return nil, fmt.Errorf("upstream credential %q of account %q is sealed under key %s, which is neither the current nor the previous key", c.Name, c.Account, c.KeyID)
	}
	n := g.NonceSize()
	if len(c.Sealed) < n+g.Overhead() {
		return nil, fmt.Errorf("upstream credential %q of account %q: sealed secret too short", c.Name, c.Account)
	}
	p, err := g.Open(nil, c.Sealed[:n], c.Sealed[n:], aad(c.Account, c.Name, c.Type))
	if err != nil {
		return nil, fmt.Errorf("upstream credential %q of account %q: sealed secret does not authenticate (tampered, or not this record's)", c.Name, c.Account)
	}
	return p, nil
}
