# Infinivirt. `make test` and `make demo` are the README's two commands:
# each installs what it needs on a fresh Debian 12 machine (as root).
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := $(CURDIR)/bin
# The suite boots real guests under TCG on shared cores: generous but bounded.
TEST_TIMEOUT ?= 28m
# Linters, pinned; go run builds each once into the Go build cache.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOLANGCI_LINT := github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0

.PHONY: all build deps check test bench demo demo-status demo-down clean

all: build

deps:
	@bash scripts/install-deps.sh

# Static, pure-Go binaries: no libc or NSS modules mapped into every shim.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(GOLANGCI_LINT) run ./...

# The whole suite, race detector on: unit tests, goldens, and the end-to-end
# tests on a real systemd test bed with real QEMU guests and PostgreSQL.
test: deps check
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

# Benchmarks print the speed and memory numbers the issues set targets for.
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./e2e/ ./pkg/... | tee bench.out

demo: deps build
	@bash scripts/demo.sh up

demo-status:
	@bash scripts/demo.sh status

demo-down:
	@bash scripts/demo.sh down

clean:
	rm -rf $(BIN) bench.out
