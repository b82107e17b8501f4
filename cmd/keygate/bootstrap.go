package main

// Where the first start puts the generated admin password, and the scrub of
// secret KEYGATE_* variables (issue 12 item 8). stderr carries the JSON
// logs, which are collected and shipped: the password never goes there
// unless stderr is a terminal.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/keygate/keygate/configs"
	"github.com/keygate/keygate/store"
)

// Default names of the generated password file (admin.generated_password_file).
const (
	boltPasswordFile  = "admin-password"         // beside the bolt file
	redisPasswordFile = "keygate-admin-password" //nolint:gosec // a name, not a credential; in the working directory
)

// passwordSink chooses where a generated admin password goes: the
// configured file; else the terminal when stderr is one; else the default
// file of the store driver. Notices (never the password, except on a
// terminal) go to stderr.
func passwordSink(cfg *configs.Config, stderr io.Writer) store.PasswordSink {
	path := cfg.Admin.GeneratedPasswordFile
	if path == "" && isTerminal(stderr) {
		return &store.WriterSink{W: stderr}
	}
	if path == "" {
		if cfg.Store.Driver == configs.DriverRedis {
			path = redisPasswordFile
		} else {
			path = filepath.Join(filepath.Dir(cfg.Store.Bolt.Path), boltPasswordFile)
		}
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return &fileSink{path: path, notice: stderr}
}

// fileSink writes the password to a new file of mode 0600: first to a
// temporary file in the same directory (Prepare), renamed into place once
// the user exists (Commit) or removed (Abort). A file already at the path
// is replaced, never reused: its mode could be wider.
type fileSink struct {
	path   string
	notice io.Writer
	tmp    string
}

func (s *fileSink) Prepare(password string) error {
	dir := filepath.Dir(s.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("admin.generated_password_file: %w", err)
	}
	f, err := os.CreateTemp(dir, ".admin-password-*")
	if err != nil {
		return fmt.Errorf("admin.generated_password_file: %w", err)
	}
	s.tmp = f.Name()
	err = f.Chmod(0o600) // CreateTemp makes 0600 already; a umask cannot widen it, but say it
	if err == nil {
		_, err = f.WriteString(password + "\n")
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(s.tmp)
		return fmt.Errorf("admin.generated_password_file: writing %s: %w", s.tmp, err)
	}
	return nil
}

func (s *fileSink) Commit() error {
	if err := os.Rename(s.tmp, s.path); err != nil {
		_ = os.Remove(s.tmp)
		return fmt.Errorf("admin.generated_password_file: %w (set a new password with KEYGATE_ADMIN_PASSWORD after deleting user admin, or from another global admin)", err)
	}
	_, err := fmt.Fprintf(s.notice, "keygate: created user %q (global admin) with a generated password, written to %s "+
		"(mode 0600; not in the logs). Log in, change it (PUT /v1/user/password on the admin listener), then delete the file.\n",
		store.AdminUsername, s.path)
	return err
}

func (s *fileSink) Abort() { _ = os.Remove(s.tmp) }

// withoutSecrets returns a deep copy of environ without the secret
// variables (configs.IsSecretEnv), and the secret ones separately. The
// copies share no memory with the process's original environment block,
// which scrubProcessEnv overwrites.
func withoutSecrets(environ []string) (rest, secrets []string) {
	for _, kv := range environ {
		kv = strings.Clone(kv)
		name, _, _ := strings.Cut(kv, "=")
		if configs.IsSecretEnv(name) {
			secrets = append(secrets, kv)
		} else {
			rest = append(rest, kv)
		}
	}
	return rest, secrets
}

// scrubProcessEnv removes the secret KEYGATE_* variables from the process
// environment once they were read: os.Unsetenv (so a child process, or
// anything calling os.Getenv later, sees none), and it overwrites their
// values with NUL bytes in the process's initial environment block, which
// the kernel shows in /proc/<pid>/environ and Unsetenv leaves alone (Go
// works on a copy). It reports the names scrubbed and whether the block
// was cleared (Linux: through /proc/self/mem at the range /proc/self/stat
// gives; false elsewhere or when /proc is not mounted).
func scrubProcessEnv() (names []string, blockCleared bool) {
	for _, kv := range os.Environ() {
		if name, _, ok := strings.Cut(kv, "="); ok && configs.IsSecretEnv(name) {
			names = append(names, name)
			_ = os.Unsetenv(name)
		}
	}
	return names, clearEnvBlock(configs.IsSecretEnv) == nil
}

// clearEnvBlock overwrites with NUL bytes the values of the variables
// secret selects in the process's initial environment block.
func clearEnvBlock(secret func(name string) bool) error {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return err
	}
	lo, hi, ok := parseEnvRange(stat)
	if !ok {
		return errors.New("no environment block in /proc/self/stat")
	}
	mem, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer func() { _ = mem.Close() }()
	block := make([]byte, hi-lo)
	if _, err := mem.ReadAt(block, int64(lo)); err != nil { //nolint:gosec // an address range of this process's own environment, far below 2^63
		return err
	}
	if !clearSecretValues(block, secret) {
		return nil
	}
	_, err = mem.WriteAt(block, int64(lo)) //nolint:gosec // an address range of this process's own environment, far below 2^63
	return err
}

// clearSecretValues zeroes, in place, the value of every NAME=value entry
// of a NUL-separated environment block whose NAME secret selects, and
// reports whether it changed anything. Names, separators and other entries
// are left as they are.
func clearSecretValues(block []byte, secret func(name string) bool) bool {
	changed := false
	for off := 0; off < len(block); {
		end := bytes.IndexByte(block[off:], 0)
		if end < 0 {
			end = len(block) - off
		}
		entry := block[off : off+end]
		if name, value, ok := bytes.Cut(entry, []byte("=")); ok && len(value) > 0 && secret(string(name)) {
			clear(entry[len(name)+1:])
			changed = true
		}
		off += end + 1
	}
	return changed
}

// parseEnvRange returns the address range of the initial environment block
// from the contents of /proc/self/stat (env_start and env_end, fields 50 and
// 51, Linux 3.5+).
func parseEnvRange(stat []byte) (lo, hi uint64, ok bool) {
	i := bytes.LastIndexByte(stat, ')') // the command name may hold spaces and parentheses
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3
	if len(f) < 49 {
		return 0, 0, false
	}
	start, err1 := strconv.ParseUint(f[47], 10, 64)
	end, err2 := strconv.ParseUint(f[48], 10, 64)
	if err1 != nil || err2 != nil || start == 0 || end <= start || end-start > 16<<20 || end > 1<<62 {
		return 0, 0, false
	}
	return start, end, true
}
