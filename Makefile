# Postgate. `make` lists the targets.
SHELL := bash
.DEFAULT_GOAL := help

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GOBIN   := $(CURDIR)/bin
STATICCHECK_VERSION := v0.8.2
FUZZTIME ?= 10s

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/gateway
	go build -ldflags "$(LDFLAGS)" -o bin/gateway ./cmd/gateway

.PHONY: services
services: ## make sure local Postgres and Redis run (installs them from Debian if missing)
	@scripts/services.sh

.PHONY: run
run: services build ## run the gateway locally (serve --dev; honours DATABASE_URL, HTTP_ADDR...): prints a token and a quick start
	./bin/gateway serve --dev

.PHONY: test
test: services ## run every test against real Postgres and Redis
	go test -race -count=1 ./...

.PHONY: e2e
e2e: services ## end-to-end and fault tests: bin/gateway against its own Postgres, Redis and receivers
	go test -tags e2e -count=1 -v -timeout 20m ./e2e/

.PHONY: console-screenshots
console-screenshots: services ## drive the console in headless Chromium and rewrite its screenshots in docs/console/
	CONSOLE_SCREENSHOTS=1 go test -tags e2e -run '^TestE2EConsole$$' -count=1 -v -timeout 5m ./e2e/

.PHONY: soak
soak: services ## mixed load with a failing tenant (SOAK_DURATION=10m); prints memory, goroutines, FDs, backlog
	SOAK_DURATION=$(or $(SOAK_DURATION),10m) go test -tags soak -run '^TestSoak$$' -count=1 -v -timeout 2h ./e2e/

.PHONY: bench
bench: services build ## measure ingest, then ingest + delivery, fan-out to 3 endpoints, an ordered endpoint against an unordered one (see docs/performance.md)
	go test -run '^$$' -bench . -benchmem ./internal/webhook/
	go run ./cmd/loadgen -gateway ./bin/gateway
	go run ./cmd/loadgen -gateway ./bin/gateway -pipeline
	go run ./cmd/loadgen -gateway ./bin/gateway -pipeline -endpoints 3 -scenarios closed:1:c64,closed:50:c8
	go run ./cmd/loadgen -gateway ./bin/gateway -ordering

.PHONY: lint
lint: ## gofmt, go vet, staticcheck and the import boundary (only internal/api imports Fiber)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt wants changes in:"; echo "$$out"; exit 1; fi
	go vet ./...
	@test -x $(GOBIN)/staticcheck || GOBIN=$(GOBIN) go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...
	@scripts/check-imports.sh

.PHONY: helm-lint
helm-lint: ## chart checks, offline: pinned helm, helm lint, strict decoding of every manifest
	@scripts/helm-lint.sh

.PHONY: image
image: ## build the image without Docker (OCI layout + tarball in bin/image) and test it
	@VERSION=$(VERSION) COMMIT=$(COMMIT) scripts/image.sh

.PHONY: fuzz
fuzz: services ## run each fuzz target briefly (FUZZTIME=10s)
	go test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/webhook/
	go test -run '^$$' -fuzz '^FuzzSignature$$' -fuzztime $(FUZZTIME) ./internal/webhook/

.PHONY: vendor-redoc
vendor-redoc: ## re-vendor the API reference renderer (redoc, version pinned in scripts/vendor-redoc.sh) from npm
	@scripts/vendor-redoc.sh

.PHONY: clean
clean: ## remove build output and the test template databases
	rm -rf bin
	-psql -h 127.0.0.1 -U postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'postgate_t%'" postgres 2>/dev/null \
	  | while read -r db; do dropdb -h 127.0.0.1 -U postgres --force "$$db"; done
