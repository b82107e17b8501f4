# keygate — make targets. `make test` is what CI runs (.ci/run).
GO            ?= go
BIN           ?= bin/keygate
STATICCHECK_VERSION ?= v0.8.2
GOLANGCI_LINT_VERSION ?= v2.15.0
GOVULNCHECK_VERSION ?= v1.9.0
# The Go vulnerability database, taken as the Go module golang.org/x/vulndb
# (its data/osv reports) and indexed by its own cmd/indexdb: govulncheck
# then needs no network but the module proxy. Move it forward to see newer
# reports.
VULNDB_VERSION ?= v0.0.0-20261105234957-e22db6528018
GOBIN         := $(shell $(GO) env GOPATH)/bin
STATICCHECK   := $(GOBIN)/staticcheck
# Tools pinned by version live in tmp/tools/<version>/ (git-ignored), so a
# version bump installs the new one.
TOOLS         := $(CURDIR)/tmp/tools
GOLANGCI_LINT := $(TOOLS)/golangci-lint@$(GOLANGCI_LINT_VERSION)/golangci-lint
GOVULNCHECK   := $(TOOLS)/govulncheck@$(GOVULNCHECK_VERSION)/govulncheck
VULNDB        := $(CURDIR)/tmp/vulndb/$(VULNDB_VERSION)
PKGS          := ./...

.PHONY: all build run test unit lint vet staticcheck golangci-lint govulncheck fuzz bench bench-micro chaos clean tools openapi-lint-deps node-deps axe-core

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN) ./cmd/keygate

## run: the gateway on the embedded store with an in-process demo upstream.
run:
	$(GO) run ./cmd/keygate serve --demo

## test: the linters (vet, staticcheck, golangci-lint with gofmt/goimports,
## govulncheck) and the whole suite with the race detector (Redis tests included).
test: lint unit

unit: node-deps
	$(GO) test -race -shuffle=on -timeout 12m -count=1 $(PKGS)

## node-deps: the pinned npm tools the tests run, each installed with npm ci
## from its own lock file: tools/openapi-lint (@redocly/cli, admin's
## TestOpenAPILint) and tools/oauth-clients (simple-oauth2, e2e's
## TestTokenClientSimpleOAuth2). Reinstalled only when a lock file changes;
## npm's cache is ./tmp/npm-cache. Without npm those tests skip, except under
## CI=true, where this target and they fail.
NODE_TOOLS := tools/openapi-lint tools/oauth-clients
node-deps: $(addsuffix /node_modules/.package-lock.json,$(NODE_TOOLS))
openapi-lint-deps: tools/openapi-lint/node_modules/.package-lock.json

## axe-core: refresh the vendored axe-core of the web UI's accessibility
## check (admin/ui/testdata/axe.min.js, committed: the tests need no npm)
## from the version pinned in tools/axe-core/package-lock.json.
axe-core: tools/axe-core/node_modules/.package-lock.json
	cp tools/axe-core/node_modules/axe-core/axe.min.js admin/ui/testdata/axe.min.js
	cp tools/axe-core/node_modules/axe-core/LICENSE admin/ui/testdata/axe-core.LICENSE

tools/%/node_modules/.package-lock.json: tools/%/package-lock.json tools/%/package.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd tools/$* && npm ci --no-audit --no-fund --ignore-scripts --prefer-offline --cache "$(CURDIR)/tmp/npm-cache"; \
	elif [ "$$CI" = true ]; then \
	  echo "npm is missing: the tests using tools/$* need node and npm" >&2; exit 1; \
	else \
	  echo "npm is missing: the tests using tools/$* will skip"; \
	fi

lint: vet staticcheck golangci-lint govulncheck

vet:
	$(GO) vet $(PKGS)

## golangci-lint: the linters of .golangci.yml (errcheck, errorlint, gosec,
## exhaustive, dupl, …) and the gofmt/goimports check (`$(GOLANGCI_LINT) fmt`
## fixes formatting).
$(GOLANGCI_LINT):
	GOFLAGS= GOBIN=$(dir $@) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

golangci-lint: $(GOLANGCI_LINT)
	$(GOLANGCI_LINT) run $(PKGS)

## govulncheck: known vulnerabilities reachable from our code, against the
## database of VULNDB_VERSION. A vulnerable module fails. A vulnerable
## standard library is fixed by a newer Go toolchain, which is the
## project's choice (README, "Development"): it is printed and fails only
## with VULNCHECK_STDLIB=fail. Without the module proxy the check is
## skipped with a message, except under CI=true, where it fails.
VULNCHECK_STDLIB ?= warn
$(GOVULNCHECK):
	GOFLAGS= GOBIN=$(dir $@) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)

$(VULNDB)/index/db.json:
	@src=$$(GOFLAGS= $(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^\t"Dir": "\(.*\)",$$/\1/p'); \
	if [ -z "$$src" ] || [ ! -d "$$src/data/osv" ]; then \
	  echo "govulncheck: cannot download golang.org/x/vulndb@$(VULNDB_VERSION) from the module proxy" >&2; exit 1; \
	fi; \
	rm -rf "$(VULNDB).tmp" && \
	GOFLAGS= $(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION) -vulns "$$src/data/osv" -out "$(VULNDB).tmp" && \
	rm -rf "$(VULNDB)" && mv "$(VULNDB).tmp" "$(VULNDB)"

govulncheck: $(GOVULNCHECK)
	@if ! $(MAKE) -s --no-print-directory $(VULNDB)/index/db.json; then \
	  if [ "$$CI" = true ]; then echo "govulncheck: no vulnerability database" >&2; exit 1; fi; \
	  echo "govulncheck: SKIPPED: the vulnerability database (golang.org/x/vulndb from the Go module proxy) could not be built"; exit 0; \
	fi; \
	out=$$($(GOVULNCHECK) -db "file://$(VULNDB)" $(PKGS) 2>&1); rc=$$?; \
	if [ $$rc -eq 0 ]; then echo "govulncheck: no vulnerability reachable (database $(VULNDB_VERSION))"; exit 0; fi; \
	if [ $$rc -ne 3 ] || echo "$$out" | grep -E '^ +Found in: ' | grep -vq '@go1\.'; then \
	  echo "$$out"; echo "govulncheck: FAIL: a module we use has a reachable vulnerability: upgrade it to the version of 'Fixed in'" >&2; exit 1; \
	fi; \
	echo "$$out" | grep -E '^(Vulnerability #|    Found in|    Fixed in|Your code)'; \
	echo "govulncheck: WARNING: only the standard library of $$($(GO) env GOVERSION) is affected: a newer Go toolchain fixes it (the project's choice; VULNCHECK_STDLIB=fail makes this fail)"; \
	[ "$(VULNCHECK_STDLIB)" != fail ]

$(STATICCHECK):
	GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

staticcheck: $(STATICCHECK)
	$(STATICCHECK) $(PKGS)

## fuzz: run every fuzz target for FUZZTIME each (default 10s).
FUZZTIME ?= 10s
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

## chaos: fault scenarios against the built binary and real Redis processes
## (cluster failover, memory bounds, slow readers, idle floods, restarts).
## Not part of `make test`; bounded to about 10 minutes. Figures are printed
## as lines starting with CHAOS and summarised in README.md.
chaos:
	CI=$${CI:-true} $(GO) test -tags chaos -run '^TestChaos' -count=1 -timeout 12m -v ./e2e/ 2>&1 | tee /tmp/keygate-chaos.log | grep -E '^(=== RUN|--- |\s+.*CHAOS|PASS|FAIL|ok)'

## bench-micro: Go micro-benchmarks of the hot path, compared by benchstat
## with bench/micro/baseline.txt (bench/micro.sh --baseline saves a new one).
bench-micro:
	GO=$(GO) bench/micro.sh

## bench: load tests of keygate against real peers (bench/README.md);
## BENCH_1M=1 adds the 1M-key working set. Results in bench/results/.
bench:
	GO=$(GO) bench/run.sh

clean:
	rm -rf bin
