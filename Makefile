# etcdadm: `make demo` runs the main job, `make test` runs every test.
GO            ?= go
BIN           := _output/bin
ETCDADM       := $(BIN)/etcdadm
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
DEMO_DIR      ?= _output/demo
TEST_TIMEOUT  ?= 30m

.PHONY: all build test test-unit lint bench demo clean

all: build

build:
	$(GO) build -o $(ETCDADM) ./cmd/etcdadm

# Every test: unit, golden, kubeadm parity, CLI scripts.
test: build
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# The quick ones only (no kubeadm parity, no lab).
test-unit:
	$(GO) test -short ./pkg/... ./cmd/... ./internal/...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Benchmarks print ns/op; compare ratios within one run (the machine is shared).
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./test/bench/

# Renders the example cluster (no host is touched) and shows what each host gets.
demo: build
	rm -rf $(DEMO_DIR) && mkdir -p $(DEMO_DIR)
	cp examples/cluster.yaml $(DEMO_DIR)/cluster.yaml
	$(ETCDADM) render -f $(DEMO_DIR)/cluster.yaml -o $(DEMO_DIR)/out
	@echo; echo "== files for infra0 (mode, path):"
	@cd $(DEMO_DIR)/out/infra0 && find . -type f ! -name index.json ! -name SHA256SUMS -printf '%m %p\n' | sort -k2
	@echo; echo "== verify a carried bundle: (cd $(DEMO_DIR)/out/infra0 && sha256sum -c SHA256SUMS)"
	@cd $(DEMO_DIR)/out/infra0 && sha256sum --quiet -c SHA256SUMS && echo "all files OK"
	@echo; echo "== certificates:"
	$(ETCDADM) certs check-expiration -f $(DEMO_DIR)/cluster.yaml

clean:
	rm -rf _output
