# etcdadm: `make demo` runs the main job, `make test` runs every test.
GO            ?= go
BIN           := _output/bin
ETCDADM       := $(BIN)/etcdadm
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
DEMO_DIR      ?= _output/demo
DEMO_LAB      ?= /var/tmp/etcdadm-demo
LAB           := $(BIN)/lab
TEST_TIMEOUT  ?= 30m

.PHONY: all build test test-unit lint bench demo demo-down demo-render lab-build clean

all: build

build:
	$(GO) build -o $(ETCDADM) ./cmd/etcdadm
	$(GO) build -o $(LAB) ./test/lab/cmd/lab

# Every test: unit, golden, kubeadm parity, CLI scripts, SSH against real sshd,
# and the lab end-to-end tests (these need root and the packages .ci/run installs).
test: build lab-build
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

# The main job on this machine: a 3-host lab (network namespaces with real sshd,
# containerd, kubelet), `etcdadm apply` over SSH, then `etcdadm status`. Needs root.
demo: build lab-build
	@if [ "$$(id -u)" != 0 ]; then echo "make demo needs root: the lab creates network namespaces, mounts and users (run: sudo make demo)"; exit 1; fi
	mkdir -p $(DEMO_DIR)
	$(LAB) up --hosts 3 --dir $(DEMO_LAB) --prefix demo --inventory $(abspath $(DEMO_DIR))/cluster.yaml
	$(ETCDADM) apply -f $(DEMO_DIR)/cluster.yaml
	@echo
	$(ETCDADM) status -f $(DEMO_DIR)/cluster.yaml
	@echo
	@echo "Try: $(ETCDADM) apply -f $(DEMO_DIR)/cluster.yaml   (again: nothing changes)"
	@echo "     $(ETCDADM) diff -f $(DEMO_DIR)/cluster.yaml"
	@echo "Tear down with: make demo-down"

demo-down:
	$(LAB) down --dir $(DEMO_LAB)

# Renders the example cluster (no host touched): what an air-gapped operator carries.
demo-render: build
	rm -rf $(DEMO_DIR)/render && mkdir -p $(DEMO_DIR)/render
	cp examples/cluster.yaml $(DEMO_DIR)/render/cluster.yaml
	$(ETCDADM) certs generate -f $(DEMO_DIR)/render/cluster.yaml >/dev/null
	$(ETCDADM) render -f $(DEMO_DIR)/render/cluster.yaml -o $(DEMO_DIR)/render/out
	@cd $(DEMO_DIR)/render/out/infra0 && find . -type f ! -name index.json ! -name SHA256SUMS -printf '%m %p\n' | sort -k2
	@cd $(DEMO_DIR)/render/out/infra0 && sha256sum --quiet -c SHA256SUMS && echo "infra0: all files match SHA256SUMS"
	$(ETCDADM) certs check-expiration -f $(DEMO_DIR)/render/cluster.yaml

# kubelet, etcd, pause and their images for the lab (cached in _output/lab).
lab-build:
	$(LAB) build

clean:
	rm -rf _output
