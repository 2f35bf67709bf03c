#!/usr/bin/env bash
# make e2e-node: the kubelet's node e2e suite (k8s.io/kubernetes/test/e2e_node,
# the kubelet e2e's release) against berthd. See test/e2enode/main_test.go
# and docs/conformance.md.
#
# Steps, only the last under /tmp/berth-runtime.lock:
#   1. build.sh: the suite, ginkgo, agnhost, nonewprivs, the kubelet (cached)
#   2. go test -c of this package (the runner)
#   3. TestBuildImages: the suite's images, built offline, as an OCI layout
#   4. TestNodeE2E: registry on 127.0.0.1, berthd, the suite (locked)
#
# Environment: BIN (berth's binaries, default bin), REPORT (default
# _output/e2e-node), E2E_NODE_FOCUS / E2E_NODE_SKIP (override the
# regexps below), E2E_NODE_PROCS (parallel ginkgo processes),
# E2E_NODE_TIMEOUT (ginkgo --timeout), E2E_NODE_PART=ci (the fixed part CI
# runs, below), E2E_NODE_DRY_RUN=1 (list the specs only).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
bin=${BIN:-$root/bin}
report=${REPORT:-$root/_output/e2e-node}

bins=$(./test/e2enode/build/build.sh)

# The kubelet's conformance subset for a CRI runtime.
focus='\[NodeConformance\]'
# Skipped, each for a reason:
skip=(
	# Specs that need the node to themselves (they restart the kubelet,
	# change its config, fill the disk or measure resources) or take
	# long: not in node conformance runs upstream either.
	'\[Serial\]' '\[Disruptive\]' '\[Flaky\]' '\[Slow\]'
	# Features not enabled by default (alpha gates): the kubelet here runs
	# with its defaults.
	'\[Alpha\]' '\[Feature:StandaloneMode\]'
	# The CRI proxy injects faults between the kubelet and the runtime; it
	# needs the suite's --cri-proxy-enabled setup (a separate job upstream).
	'\[Feature:CriProxy\]'
	# Hugepages: this kernel's hugetlb cgroup controller is not mounted
	# (cgroup v1 hybrid without hugetlb) and no huge pages are reserved.
	'\[Feature:HugePages\]'
)
FOCUS=${E2E_NODE_FOCUS:-$focus}
SKIP=${E2E_NODE_SKIP:-$(IFS='|'; echo "${skip[*]}")}

# The fixed part CI runs when the whole suite does not fit its time (see
# docs/conformance.md): the areas issue 18 names.
if [ "${E2E_NODE_PART:-}" = ci ]; then
	FOCUS="$FOCUS.*($(IFS='|'; echo "Pods|PodTemplates|Probing container|Container Runtime|Container Lifecycle Hook|InitContainer|Security Context|EmptyDir|ConfigMap|Secrets|Downward API|Projected|HostPath|Kubelet|Variable Expansion|Containers|Sysctls|pod resize|Pod InPlace Resize"))"
fi

export PATH=/usr/local/go/bin:$PATH
tags=containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper,containers_image_ostree_stub,e2enode
GOFLAGS="-buildvcs=false -tags=$tags" go test -c -o "$bin/e2enode.test" ./test/e2enode/

mkdir -p "$report"
export E2E_NODE_BIN=$bins E2E_NODE_IMAGES=$report/images E2E_NODE_REPORT=$report
export E2E_NODE_FOCUS=$FOCUS E2E_NODE_SKIP=$SKIP
export E2E_NODE_KNOWN=$root/test/e2enode/known-failures.txt
export BERTH_TEST_BIN_DIR=$bin
"$bin/e2enode.test" -test.run '^TestBuildImages$' -test.v
echo "e2e-node: focus $FOCUS"
echo "e2e-node: skip $SKIP"
exec flock /tmp/berth-runtime.lock "$bin/e2enode.test" -test.run '^TestNodeE2E$' -test.v -test.timeout 30m
