# extauthz — run `make help` for the targets.
GO        ?= go
BIN       ?= bin/extauthz
DEV_CFG   ?= examples/dev/config.yaml
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.revision=$(REVISION)
FUZZTIME  ?= 20s
IMAGE     ?= extauthz:$(VERSION)

.PHONY: help run build test test-short fuzz bench loadtest lint check-config image clean

help: ## Show the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: ## Build bin/extauthz.
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/extauthz

run: build ## Serve the self-contained development config and print how to try it.
	@scripts/dev-run.sh $(BIN) $(DEV_CFG)

# Two Go modules: the product (.) and the Kubernetes manifest tests (k8s/,
# its own go.mod, so the product's go.mod carries no Kubernetes modules).
# -vet=all runs every go vet check inside go test, on the packages it has
# compiled anyway (a separate `go vet` would type-check everything again,
# without -race). Tests that build binaries (k8s, loadtest) build them with
# -race too, so they only link what go test has compiled.
test: ## Run the whole suite: both modules, race detector and every vet check on (real Redis and nginx when installed).
	$(GO) test -race -vet=all -count=1 -timeout 8m ./...
	cd k8s && $(GO) test -race -vet=all -count=1 -timeout 4m ./...

test-short: ## Run the suite without the slower integration tests (no race detector).
	$(GO) test -short -count=1 ./...
	cd k8s && $(GO) test -short -count=1 ./...

fuzz: ## Run every fuzz target for FUZZTIME each (default 20s).
	@scripts/fuzz.sh $(FUZZTIME)

bench: ## Run the in-process benchmarks with allocations.
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./...

loadtest: ## End-to-end gRPC load test against a do-nothing floor server.
	$(GO) run ./loadtest $(LOADTEST_ARGS)

lint: ## gofmt, go vet, go.mod tidiness of both modules (and staticcheck when installed).
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd k8s && $(GO) vet ./...
	$(GO) mod tidy -diff
	cd k8s && $(GO) mod tidy -diff
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck ./... && (cd k8s && staticcheck ./...); else echo "staticcheck not installed (go install honnef.co/go/tools/cmd/staticcheck@latest) — skipped"; fi

check-config: build ## Validate every example config in the repository.
	@for f in examples/*/config.yaml k8s/base/config.yaml; do [ -f $$f ] && $(BIN) check-config --config $$f || exit 1; done

image: ## Build the container image (needs a Docker engine).
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE) .

clean: ## Remove build outputs.
	rm -rf bin
