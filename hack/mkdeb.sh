#!/usr/bin/env bash
# Builds berth's Debian package with dpkg-deb (`make deb`): the tree of
# hack/install.sh under /usr, /etc/berth/berth.toml as a conffile, and
# contrib/deb's maintainer scripts. Environment: BIN (the built
# binaries, default bin), DEBDIR (where the .deb goes, default BIN),
# VERSION (default berth's version).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
DEBDIR=${DEBDIR:-$BIN}
VERSION=${VERSION:-$(sed -n 's/^var Version = "\(.*\)"$/\1/p' internal/version/version.go)}
# Debian versions have no '-' outside the revision: 0.1.0-dev -> 0.1.0~dev.
debversion=${VERSION//-/\~}
arch=$(dpkg --print-architecture)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root

DESTDIR=$root PREFIX=/usr SYSTEMDUNITDIR=/usr/lib/systemd/system BIN=$BIN PACKAGE=1 ./hack/install.sh >/dev/null
install -d "$root/DEBIAN"
install -m 0755 contrib/deb/postinst contrib/deb/prerm contrib/deb/postrm "$root/DEBIAN/"
echo /etc/berth/berth.toml >"$root/DEBIAN/conffiles"

# The C library berthd and berth link, as dpkg-shlibdeps finds it.
mkdir -p "$work/src/debian"
printf 'Source: berth\n\nPackage: berth\nArchitecture: any\n' >"$work/src/debian/control"
bins=$(realpath "$BIN/berthd" "$BIN/berth")
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O $(printf -- '-e%s ' $bins) 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: berth
Version: $debversion
Architecture: $arch
Maintainer: berth developers <berth@localhost>
Installed-Size: $size
Depends: ${shlibs:+$shlibs, }runc, conmon, containernetworking-plugins
Recommends: iptables
Section: admin
Priority: optional
Homepage: https://github.com/berth-cri/berth
Description: Kubernetes container runtime (CRI) running containers under conmon and runc
 berthd serves the Container Runtime Interface on /run/berth/berth.sock for
 the kubelet. Each container runs under its own conmon, so containers keep
 running while berthd restarts. The berth CLI talks to the same socket.
CONTROL
mkdir -p "$DEBDIR"
out=$DEBDIR/berth_${debversion}_${arch}.deb
dpkg-deb --root-owner-group -Zgzip --build "$root" "$out" >/dev/null
echo "$out"
