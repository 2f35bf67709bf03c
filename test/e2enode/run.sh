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
export E2E_NODE_PROCS=${E2E_NODE_PROCS:-8}
FOCUS=${E2E_NODE_FOCUS:-$focus}
SKIP=${E2E_NODE_SKIP:-$(IFS='|'; echo "${skip[*]}")}

# The suite does not fit one locked run of ~25 minutes here, so it runs in
# parts, each its own run (and report dir) under the lock:
#   lifecycle  the sidecar and init container matrix (158 specs)
#   rest       every other [NodeConformance] spec (274)
#   ci         the fixed, representative part CI runs (182 specs of "rest"):
#              pods, probes, container runtime, volumes (emptyDir,
#              configMap, secret, downwardAPI, projected, hostPath),
#              security context, lifecycle hooks, init containers, logs,
#              exec, termination message (no pod resize spec is
#              [NodeConformance] in v1.37: they are [Serial] or features)
# E2E_NODE_PART picks one; unset runs lifecycle, then rest.
lifecycle='\[sig-node\] (Containers Lifecycle|Probing restartable init|Restartable Init)'
ci='(\[sig-node\] (Pods |Kubelet when|Container Runtime|Container Lifecycle Hook|InitContainer|Security Context|Probing container|Variable Expansion|Containers should|Downward API|ConfigMap|Secrets|Pod Extended)|\[sig-storage\] (EmptyDir|ConfigMap|Secrets|Downward API volume|Projected|HostPath))'

export PATH=/usr/local/go/bin:$PATH
tags=containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper,containers_image_ostree_stub,e2enode
GOFLAGS="-buildvcs=false -tags=$tags" go test -c -o "$bin/e2enode.test" ./test/e2enode/

export E2E_NODE_BIN=$bins E2E_NODE_IMAGES=$report/images
export E2E_NODE_KNOWN=$root/test/e2enode/known-failures.txt
export BERTH_TEST_BIN_DIR=$bin
mkdir -p "$report"
"$bin/e2enode.test" -test.run '^TestBuildImages$' -test.v

# run PART FOCUS SKIP: one locked run of the suite, reporting to $report/PART.
run() {
	echo "e2e-node $1: focus $2"
	echo "e2e-node $1: skip $3"
	E2E_NODE_REPORT=$report/$1 E2E_NODE_FOCUS=$2 E2E_NODE_SKIP=$3 \
		flock /tmp/berth-runtime.lock "$bin/e2enode.test" -test.run '^TestNodeE2E$' -test.v -test.timeout 30m
}
case ${E2E_NODE_PART:-all} in
lifecycle) run lifecycle "$lifecycle.*$FOCUS" "$SKIP" ;;
rest) run rest "$FOCUS" "$SKIP|$lifecycle" ;;
ci) run ci "$ci.*$FOCUS" "$SKIP" ;;
all)
	status=0
	run lifecycle "$lifecycle.*$FOCUS" "$SKIP" || status=$?
	run rest "$FOCUS" "$SKIP|$lifecycle" || status=$?
	exit $status
	;;
*) echo "E2E_NODE_PART: lifecycle, rest, ci or unset" >&2; exit 2 ;;
esac
