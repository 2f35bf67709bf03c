# berth build, test and benchmark entry points.
export GOFLAGS := -buildvcs=false -tags=containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper,containers_image_ostree_stub
BIN := bin
# Go lives here on the machines berth targets, whatever the caller's PATH.
export PATH := /usr/local/go/bin:$(PATH)

all: build

.PHONY: all deps build test lint bench bench-compare demo clean e2e-kubelet e2e-node chaos install deb fuzz

# Debian packages and Go modules berth and its tests need (idempotent).
deps:
	./hack/install-deps.sh

build:
	go build -o $(BIN)/ ./cmd/berthd ./cmd/berth
	CGO_ENABLED=0 go build -o $(BIN)/ ./cmd/berth-pause

# Install as a node component (see hack/install.sh): binaries to
# $(PREFIX)/bin, the systemd unit, /etc/berth/berth.toml, and a CNI network
# and policy.json where the node has none. DESTDIR stages elsewhere.
PREFIX ?= /usr/local
install: build
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" BIN="$(BIN)" ./hack/install.sh

# A Debian package built with dpkg-deb, into $(BIN) (see hack/mkdeb.sh).
deb: build
	BIN="$(BIN)" ./hack/mkdeb.sh

# Tests need root: they run real runc, conmon, CNI and overlay storage.
test: deps build
	gofmt -l . | (! grep .) || (echo "gofmt needed on the files above"; exit 1)
	go vet ./...
	go test -count=1 -timeout 25m ./...

# A real kubelet (v1.37, built once from k8s.io/kubernetes and cached in
# ~/.cache/berth) runs static pods on berthd: see test/kubelet.
e2e-kubelet: deps build
	kubelet=$$(./test/kubelet/build/build.sh) && KUBELET=$$kubelet BERTH_TEST_BIN_DIR=$(CURDIR)/$(BIN) \
		GOFLAGS="$(GOFLAGS),kubelet" go test -count=1 -v -timeout 30m ./test/kubelet/

# The kubelet's node e2e suite (k8s.io/kubernetes/test/e2e_node, the same
# release; [NodeConformance], skips named in the script) against berthd:
# see test/e2enode/run.sh and docs/conformance.md. E2E_NODE_PART=ci runs
# the fixed part CI runs.
e2e-node: deps build
	BIN=$(CURDIR)/$(BIN) ./test/e2enode/run.sh

# Fuzz targets, each run for FUZZTIME; seed corpora are in each package's
# testdata/fuzz. A failing input is written there too: commit it with the fix.
FUZZTIME ?= 20s
FUZZ_TARGETS := \
	./internal/spec:FuzzGenerate \
	./internal/spec:FuzzValidateMounts \
	./internal/config:FuzzLoad \
	./internal/image:FuzzImageName \
	./internal/pod:FuzzSysctl \
	./internal/runtime:FuzzReadSync \
	./cmd/berth:FuzzCRILog

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -parallel 1 $$pkg; \
	done

# The chaos soak of the e2e suite (3 minutes there) for 20 minutes.
chaos: deps build
	BERTH_CHAOS_DURATION=20m BERTH_TEST_BIN_DIR=$(CURDIR)/$(BIN) go test -count=1 -v -timeout 40m -run 'TestChaosSoak$$' ./test/e2e/

lint:
	gofmt -l . | (! grep .)
	go vet ./...

bench: deps build
	go run ./hack/bench

# berth beside containerd 1.6 (Debian's package, installed here if missing)
# and containerd v2 (built once from its Go module, cached in
# ~/.cache/berth), one runtime at a time: see docs/performance.md.
# BENCH_ARGS passes flags, e.g. BENCH_ARGS="-n 30 -pods 100".
bench-compare: deps build
	command -v containerd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y containerd
	ctrd2=$$(./hack/benchcompare/build-containerd.sh) && flock /tmp/berth-runtime.lock \
		go run ./hack/benchcompare -containerd-2-dir "$$ctrd2" -json bench-compare.json $(BENCH_ARGS)

demo: deps build
	./hack/demo.sh

clean:
	rm -rf $(BIN)
