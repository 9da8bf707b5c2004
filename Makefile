# etcdadm: `make demo` runs the main job, `make test` runs every test.
GO            ?= go
BIN           := _output/bin
ETCDADM       := $(BIN)/etcdadm
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
DEMO_DIR      ?= _output/demo
DEMO_LAB      ?= /var/tmp/etcdadm-demo
LAB           := $(BIN)/lab
TEST_TIMEOUT  ?= 38m

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
# containerd, kubelet), `etcdadm apply` over SSH, then `etcdadm status`. Needs
# root; installs the lab's missing Debian packages first (no sudo needed).
DEMO_PREFIX   := demo
ETCDCTL       := _output/lab/bin/etcdctl
DEMO_CLIENT   := $(DEMO_DIR)/pki/hosts/$(DEMO_PREFIX)0/apiserver-etcd-client
demo:
	@if [ "$$(id -u)" != 0 ]; then echo "make demo needs root: the lab creates network namespaces, mounts and users (run it as root, or: sudo make demo)"; exit 1; fi
	@echo "make demo: first, the lab's Debian packages that are missing (hack/install-lab-packages.sh)"
	hack/install-lab-packages.sh
	$(MAKE) --no-print-directory build lab-build
	mkdir -p $(DEMO_DIR)
	$(LAB) up --hosts 3 --dir $(DEMO_LAB) --prefix $(DEMO_PREFIX) --inventory $(abspath $(DEMO_DIR))/cluster.yaml
	$(ETCDADM) apply -f $(DEMO_DIR)/cluster.yaml
	@echo
	$(ETCDADM) status -f $(DEMO_DIR)/cluster.yaml
	@echo
	@endpoints=$$(sed -n 's|.*address: *\([0-9.]*\).*|https://\1:2379|p' $(DEMO_DIR)/cluster.yaml | paste -sd, -); \
	etcdctl="$(ETCDCTL) --endpoints $$endpoints --cacert $(DEMO_DIR)/pki/etcd/ca.crt --cert $(DEMO_CLIENT).crt --key $(DEMO_CLIENT).key"; \
	echo "+ $$etcdctl endpoint health"; $$etcdctl endpoint health || exit 1; \
	echo; \
	echo "Files: the inventory $(DEMO_DIR)/cluster.yaml and its PKI $(DEMO_DIR)/pki/ (the CA key, every host's"; \
	echo "       certificates); the lab (hosts' files, SSH key, logs) in $(DEMO_LAB)/."; \
	echo "Reach the members with etcdctl (from this directory), as kube-apiserver does:"; \
	echo "  $$etcdctl member list -w table"; \
	echo "Try: $(ETCDADM) apply -f $(DEMO_DIR)/cluster.yaml   (again: nothing changes)"; \
	echo "     $(ETCDADM) diff -f $(DEMO_DIR)/cluster.yaml"; \
	echo "Tear down with: make demo-down"

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
