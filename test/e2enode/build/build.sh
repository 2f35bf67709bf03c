#!/usr/bin/env bash
# Builds, once, what make e2e-node needs from the k8s.io/kubernetes version
# required in go.mod here, into ${BERTH_CACHE:-$HOME/.cache/berth}, and
# prints the path of the directory holding them:
#   e2e_node.test  the node e2e suite (go test -c of test/e2e_node)
#   ginkgo         the ginkgo CLI, which runs the suite on parallel processes
#   agnhost        the agnhost test image's program, static (CGO_ENABLED=0)
#   nnp            the nonewprivs test image's program, static
#   nginx-root     Debian's nginx with its libraries, unpacked from the
#                  .debs apt downloads (the nginx test image's files)
#   hostname-root  Debian's hostname with glibc (glibc-dns-testing's)
#   netcat-root    Debian's OpenBSD netcat with its libraries (agnhost's nc)
#   kubelet        the kubelet of the same release (the suite's --k8s-bin-dir)
# Reruns find the cached files and skip their builds. A cold build compiles
# ~2800 packages: tens of minutes on 2 cores (see docs/conformance.md).
set -euo pipefail
cd "$(dirname "$0")"
version=$(awk '($1 == "require" && $2 == "k8s.io/kubernetes") { print $3 } ($1 == "k8s.io/kubernetes" && $2 ~ /^v/) { print $2 }' go.mod)
[ -n "$version" ] || { echo "no k8s.io/kubernetes version in go.mod" >&2; exit 1; }
cache=${BERTH_CACHE:-$HOME/.cache/berth}
out=$cache/e2e-node-$version
mkdir -p "$out"
minor=${version#v1.}
minor=${minor%%.*}
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
export GOFLAGS=-buildvcs=false GOWORK=off

# build NAME CMD...: runs CMD (which writes $out/NAME.tmp) unless NAME exists.
build() {
	local name=$1
	shift
	[ -x "$out/$name" ] && return 0
	local start
	start=$(date +%s)
	echo "building $name $version from k8s.io/kubernetes..." >&2
	"$@"
	mv "$out/$name.tmp" "$out/$name"
	echo "$name $version built in $(($(date +%s) - start))s" >&2
}

build e2e_node.test go test -c -vet=off -trimpath -ldflags "$ldflags" -o "$out/e2e_node.test.tmp" k8s.io/kubernetes/test/e2e_node
build ginkgo go build -trimpath -o "$out/ginkgo.tmp" github.com/onsi/ginkgo/v2/ginkgo
build agnhost env CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/agnhost.tmp" k8s.io/kubernetes/test/images/agnhost
build nnp env CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/nnp.tmp" k8s.io/kubernetes/test/images/nonewprivs
# agnhost's image holds the porter subcommand's certificate and key at /
# (netexec --tls-cert-file /localhost.crt serves the https hook specs).
if [ ! -f "$out/localhost.key" ]; then
	src=$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images/agnhost/porter
	cp "$src/localhost.crt" "$src/localhost.key" "$out/"
fi
# unpack NAME PACKAGE...: the .debs apt downloads, unpacked into $out/NAME.
unpack() {
	local name=$1 debs
	shift
	[ -d "$out/$name" ] && return 0
	debs=$(mktemp -d)
	chmod 755 "$debs" # apt downloads as _apt
	# A fresh machine may have no package lists yet.
	(cd "$debs" && { apt-get download "$@" >&2 || { apt-get update -qq && apt-get download "$@" >&2; }; })
	mkdir -p "$out/$name.tmp"
	for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$out/$name.tmp"; done
	rm -rf "$debs" "$out/$name.tmp/usr/share/doc" "$out/$name.tmp/usr/share/man" "$out/$name.tmp/usr/share/lintian"
	mv "$out/$name.tmp" "$out/$name"
}
unpack nginx-root nginx nginx-common libc6 libcrypt1 libpcre2-8-0 libssl3 zlib1g
# glibc-dns-testing: glibc's hostname (hostname -f resolves through glibc)
# and bash, as in its Debian-based image.
unpack hostname-root hostname bash libtinfo6 libc6
# agnhost's nc (OpenBSD netcat: busybox's lacks -u) and bash (probe specs run
# /bin/bash), as in its Alpine image.
unpack netcat-root netcat-openbsd libbsd0 libmd0 bash libtinfo6 libc6
# The kubelet e2e builds the same kubelet into the cache: reuse it.
if [ ! -x "$out/kubelet" ]; then
	kubelet=$(../../kubelet/build/build.sh)
	ln -sf "$kubelet" "$out/kubelet"
fi
echo "$out"
