#!/usr/bin/env bash
# Builds containerd v2 (daemon and runc shim) from the Go module
# github.com/containerd/containerd/v2 at $CONTAINERD_VERSION (default: the
# newest release the module proxy lists), once, into
# ${BERTH_CACHE:-$HOME/.cache/berth}/containerd-<version>/, and prints that
# directory. Reruns find the cached binaries and skip the build.
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
mod=github.com/containerd/containerd/v2
cache=${BERTH_CACHE:-$HOME/.cache/berth}
version=${CONTAINERD_VERSION:-}
if [ -z "$version" ]; then
	# The newest cached build wins when the proxy cannot be asked.
	version=$(GOFLAGS=-buildvcs=false GOWORK=off go list -m -versions "$mod" 2>/dev/null | tr ' ' '\n' | grep -E '^v2\.[0-9]+\.[0-9]+$' | sort -V | tail -1 || true)
	if [ -z "$version" ]; then
		version=$(ls -d "$cache"/containerd-v2.* 2>/dev/null | sed 's/.*containerd-//' | sort -V | tail -1)
	fi
fi
out=$cache/containerd-$version
if [ -x "$out/containerd" ] && [ -x "$out/containerd-shim-runc-v2" ]; then
	echo "$out"
	exit 0
fi
scratch=$(mktemp -d /tmp/containerd-build.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
cd "$scratch"
echo "building containerd $version from $mod (cold build: several minutes)..." >&2
start=$(date +%s)
export GOFLAGS=-buildvcs=false GOWORK=off
go mod init berth-containerd-build >/dev/null 2>&1
# Getting the two commands (not just the module) records go.sum entries
# for everything they import.
go get "$mod/cmd/containerd@$version" "$mod/cmd/containerd-shim-runc-v2@$version" >&2
pkg=$mod/version
ldflags="-s -w -X $pkg.Version=$version -X $pkg.Package=$mod"
mkdir -p "$out.tmp"
tags="no_btrfs no_devmapper no_zfs"
go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out.tmp/containerd" "$mod/cmd/containerd"
CGO_ENABLED=0 go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$out.tmp/containerd-shim-runc-v2" "$mod/cmd/containerd-shim-runc-v2"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "containerd $version built in $(($(date +%s) - start))s" >&2
echo "$out"
