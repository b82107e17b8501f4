# keygate — make targets. `make test` is what CI runs (.ci/run).
GO            ?= go
BIN           ?= bin/keygate
STATICCHECK_VERSION ?= v0.8.2
GOBIN         := $(shell $(GO) env GOPATH)/bin
STATICCHECK   := $(GOBIN)/staticcheck
PKGS          := ./...

.PHONY: all build run test unit lint vet staticcheck fuzz bench bench-micro chaos clean tools openapi-lint-deps

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(BIN) ./cmd/keygate

## run: the gateway on the embedded store with an in-process demo upstream.
run:
	$(GO) run ./cmd/keygate serve --demo

## test: vet, staticcheck and the whole suite with the race detector (Redis tests included).
test: lint unit

unit: openapi-lint-deps
	$(GO) test -race -shuffle=on -timeout 12m -count=1 $(PKGS)

## openapi-lint-deps: the pinned OpenAPI linter (@redocly/cli, npm ci from
## tools/openapi-lint/package-lock.json) that admin's TestOpenAPILint runs.
## Reinstalled only when the lock file changes; npm's cache is ./tmp/npm-cache.
## Without npm the test skips, except under CI=true, where both fail.
OPENAPI_LINT := tools/openapi-lint
openapi-lint-deps: $(OPENAPI_LINT)/node_modules/.package-lock.json

$(OPENAPI_LINT)/node_modules/.package-lock.json: $(OPENAPI_LINT)/package-lock.json $(OPENAPI_LINT)/package.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd $(OPENAPI_LINT) && npm ci --no-audit --no-fund --ignore-scripts --prefer-offline --cache "$(CURDIR)/tmp/npm-cache"; \
	elif [ "$$CI" = true ]; then \
	  echo "npm is missing: the OpenAPI lint test (admin TestOpenAPILint) needs node and npm" >&2; exit 1; \
	else \
	  echo "npm is missing: admin TestOpenAPILint will skip"; \
	fi

lint: vet staticcheck

vet:
	$(GO) vet $(PKGS)

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
