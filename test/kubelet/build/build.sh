#!/usr/bin/env bash
# Builds the kubelet of the k8s.io/kubernetes version required in go.mod
# here, once, into ${BERTH_CACHE:-$HOME/.cache/berth}/kubelet-<version>, and
# prints the binary's path. Reruns find the cached binary and skip the
# build. A cold build compiles ~2000 packages: many minutes on 2 cores.
#
# "build.sh deviceplugin" builds the test device plugin (./deviceplugin)
# the same way, keyed by a hash of its source and go.sum, and prints its
# path: the kubelet tests get it prebuilt instead of compiling it while
# their scenarios compete for the CPUs.
set -euo pipefail
cd "$(dirname "$0")"
cache=${BERTH_CACHE:-$HOME/.cache/berth}
mkdir -p "$cache"
export GOFLAGS=-buildvcs=false GOWORK=off

if [ "${1:-}" = deviceplugin ]; then
	sum=$(cat deviceplugin/*.go go.mod go.sum | sha256sum | cut -c1-16)
	bin=$cache/berth-device-plugin-$sum
	if [ ! -x "$bin" ]; then
		go build -trimpath -o "$bin.tmp" ./deviceplugin
		mv "$bin.tmp" "$bin"
	fi
	echo "$bin"
	exit 0
fi

version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" { print $3 }' go.mod)
bin=$cache/kubelet-$version
if [ -x "$bin" ]; then
	echo "$bin"
	exit 0
fi
minor=${version#v1.}
minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
start=$(date +%s)
echo "building kubelet $version from k8s.io/kubernetes (cold build: many minutes)..." >&2
go build -trimpath -ldflags "$ldflags" -o "$bin.tmp" k8s.io/kubernetes/cmd/kubelet
mv "$bin.tmp" "$bin"
echo "kubelet $version built in $(($(date +%s) - start))s" >&2
echo "$bin"
