package configs

import (
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// Docker cannot run where the tests run, so the compose file and the
// build context are checked as data: the YAML is parsed (merge keys
// resolved by yaml.v3 as Compose does) and the properties issue 13 item 10
// asks for are asserted. This does not prove `docker compose up` works;
// it keeps the file from losing these properties.

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image      string            `yaml:"image"`
	Build      map[string]string `yaml:"build"`
	PullPolicy string            `yaml:"pull_policy"`
	Command    []string          `yaml:"command"`
	Restart    string            `yaml:"restart"`
	Ports      []string          `yaml:"ports"`
	DependsOn  map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	Environment map[string]string `yaml:"environment"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	// depends_on is a list for prometheus and a map for keygate: decode
	// the map form only where it is one.
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		t.Fatalf("docker-compose.yml is not YAML: %v", err)
	}
	services, _ := raw["services"].(map[string]any)
	for _, s := range services {
		if m, ok := s.(map[string]any); ok {
			if l, ok := m["depends_on"].([]any); ok {
				deps := map[string]any{}
				for _, d := range l {
					deps[d.(string)] = map[string]any{"condition": "service_started"}
				}
				m["depends_on"] = deps
			}
		}
	}
	norm, err := yaml.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(norm, &f); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return f
}

func TestComposeFile(t *testing.T) {
	f := loadCompose(t)
	for _, name := range []string{"redis", "upstream", "keygate", "prometheus"} {
		if _, ok := f.Services[name]; !ok {
			t.Fatalf("service %s missing", name)
		}
	}
	redis, kg, up := f.Services["redis"], f.Services["keygate"], f.Services["upstream"]

	t.Run("redis healthcheck gates keygate", func(t *testing.T) {
		hc := redis.Healthcheck
		if hc == nil || !slices.Equal(hc.Test, []string{"CMD", "redis-cli", "ping"}) || hc.Interval == "" || hc.Retries < 1 {
			t.Errorf("redis healthcheck = %+v, want CMD redis-cli ping with an interval and retries", hc)
		}
		if c := kg.DependsOn["redis"].Condition; c != "service_healthy" {
			t.Errorf("keygate depends_on redis condition = %q, want service_healthy", c)
		}
	})
	t.Run("restart policies", func(t *testing.T) {
		for name, s := range f.Services {
			if !slices.Contains([]string{"always", "unless-stopped", "on-failure"}, s.Restart) {
				t.Errorf("service %s: restart = %q", name, s.Restart)
			}
		}
	})
	t.Run("admin port on loopback only", func(t *testing.T) {
		admin := kg.Environment["KEYGATE_ADMIN_LISTEN"]
		_, port, _ := strings.Cut(admin, ":")
		if port == "" {
			t.Fatalf("KEYGATE_ADMIN_LISTEN = %q", admin)
		}
		published := false
		for name, s := range f.Services {
			for _, p := range s.Ports {
				host, container := splitPort(p)
				if name == "keygate" && container == port {
					published = true
					if !strings.HasPrefix(host, "127.0.0.1:") {
						t.Errorf("admin port published as %q: not on loopback", p)
					}
				}
			}
		}
		if !published {
			t.Error("the admin port is not published (on loopback)")
		}
		for _, p := range kg.Ports {
			if host, c := splitPort(p); c == "8080" && strings.HasPrefix(host, "127.") {
				t.Errorf("public port %q is loopback only", p)
			}
		}
	})
	t.Run("one image for keygate and the upstream", func(t *testing.T) {
		if kg.Image == "" || kg.Image != up.Image {
			t.Errorf("images: keygate %q, upstream %q; want one", kg.Image, up.Image)
		}
		if kg.Build["context"] != ".." || kg.Build["dockerfile"] != "Dockerfile" {
			t.Errorf("keygate build = %v", kg.Build)
		}
		if kg.PullPolicy != "build" || up.PullPolicy != "build" {
			t.Errorf("pull_policy keygate %q upstream %q, want build (the image exists nowhere else)", kg.PullPolicy, up.PullPolicy)
		}
		if len(up.Command) == 0 || up.Command[0] != "echo" {
			t.Errorf("upstream command = %v, want keygate echo", up.Command)
		}
	})
	t.Run("keygate environment is valid configuration", func(t *testing.T) {
		var env []string
		subst := regexp.MustCompile(`^\$\{[A-Z_]+:\?.*\}$`)
		for k, v := range kg.Environment {
			if subst.MatchString(v) {
				v = "compose-test-" + strings.Repeat("x", 40) // required from the shell
			}
			env = append(env, k+"="+v)
		}
		env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "KEYGATE_ADMIN_PASSWORD=") })
		if _, err := Load("keygate.yaml", env); err != nil {
			t.Errorf("keygate.yaml with the compose environment: %v", err)
		}
	})
}

// splitPort splits a short-syntax port mapping into its host part
// ("127.0.0.1:8081", "8080") and its container port.
func splitPort(p string) (host, container string) {
	i := strings.LastIndexByte(p, ':')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// TestDockerignore: the Dockerfile's `COPY . .` must not send the git
// history, local databases or binaries into the build.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	var patterns []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	tests := []struct {
		path     string
		excluded bool
	}{
		{".git/HEAD", true},
		{"data/keygate.db", true},
		{"store/boltstore/testdata/x.db", true},
		{"bin/keygate", true},
		{"keygate", true},
		{"bench/results/run.txt", true},
		{"go.mod", false},
		{"cmd/keygate/main.go", false},
		{"configs/keygate.yaml", false},
	}
	for _, tc := range tests {
		if got := dockerignored(patterns, tc.path); got != tc.excluded {
			t.Errorf("%s: excluded = %v, want %v", tc.path, got, tc.excluded)
		}
	}
}

// dockerignored applies .dockerignore patterns the way Docker does for the
// forms used here: a pattern matches the path or one of its parent
// directories; "**/" matches any number of leading directories.
func dockerignored(patterns []string, p string) bool {
	excluded := false
	for _, pat := range patterns {
		neg := strings.HasPrefix(pat, "!")
		pat = strings.TrimSuffix(strings.TrimPrefix(pat, "!"), "/")
		if matchDockerPattern(pat, p) {
			excluded = !neg
		}
	}
	return excluded
}

func matchDockerPattern(pat, p string) bool {
	for q := p; q != "." && q != ""; q = path.Dir(q) {
		if ok, _ := path.Match(pat, q); ok {
			return true
		}
		if rest, ok := strings.CutPrefix(pat, "**/"); ok {
			for r := q; ; {
				if ok, _ := path.Match(rest, r); ok {
					return true
				}
				i := strings.IndexByte(r, '/')
				if i < 0 {
					break
				}
				r = r[i+1:]
			}
		}
	}
	return false
}
