#!/usr/bin/env bash
# Builds the kubelet of the k8s.io/kubernetes version required in go.mod
# here, once, into ${BERTH_CACHE:-$HOME/.cache/berth}/kubelet-<version>, and
# prints the binary's path. Reruns find the cached binary and skip the
# build. A cold build compiles ~2000 packages: many minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")"
version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3 }' go.mod)
cache=${BERTH_CACHE:-$HOME/.cache/berth}
bin=$cache/kubelet-$version
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$cache"
minor=${version#v1.}
minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
start=$(date +%s)
echo "building kubelet $version from k8s.io/kubernetes (cold build: many minutes)..." >&2
GOFLAGS=-buildvcs=false GOWORK=off go build -trimpath -ldflags "$ldflags" -o "$bin.tmp" k8s.io/kubernetes/cmd/kubelet
mv "$bin.tmp" "$bin"
echo "kubelet $version built in $(($(date +%s) - start))s" >&2
echo "$bin"
