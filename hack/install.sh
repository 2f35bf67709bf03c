#!/usr/bin/env bash
# Installs berth as a node component (`make install`, and the tree of
# `make deb`): berthd, berth and berth-pause (which berthd runs from its
# own directory), the systemd unit, the default config printed by
# `berthd config`, and the node-wide files berth reads but does not own,
# each only where the node has none yet: a CNI network when the CNI
# config dir is empty, and /etc/containers/policy.json.
#
# Environment: DESTDIR (staging root, default none), PREFIX (default
# /usr/local), BIN (the built binaries, default bin), SYSTEMDUNITDIR
# (default $PREFIX/lib/systemd/system), and PACKAGE=1 when building the
# .deb: then the node-wide files are only staged under
# $PREFIX/share/berth, for the package's postinst to place on the node.
set -euo pipefail
cd "$(dirname "$0")/.."
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
BIN=${BIN:-bin}
unitdir=${SYSTEMDUNITDIR:-$PREFIX/lib/systemd/system}
share=$PREFIX/share/berth

say() { echo "install: $*"; }

install -d "$DESTDIR$PREFIX/bin" "$DESTDIR$unitdir" "$DESTDIR$share" "$DESTDIR/etc/berth/berth.toml.d"
install -m 0755 "$BIN/berthd" "$BIN/berth" "$BIN/berth-pause" "$DESTDIR$PREFIX/bin/"
say "$PREFIX/bin/berthd, berth, berth-pause"

# The unit runs the installed berthd (the path without DESTDIR).
"$BIN/berth" generate systemd --berthd "$PREFIX/bin/berthd" >"$DESTDIR$unitdir/berth.service"
chmod 0644 "$DESTDIR$unitdir/berth.service"
say "$unitdir/berth.service"

# berth's own config: the built-in defaults, read from no file, so that
# a config already on this machine does not leak into the new one.
cfg=$DESTDIR/etc/berth/berth.toml
if [ -e "$cfg" ]; then
  say "/etc/berth/berth.toml exists, kept"
else
  "$BIN/berthd" --config /dev/null --config-dir /nonexistent config >"$cfg.tmp"
  chmod 0644 "$cfg.tmp"
  mv "$cfg.tmp" "$cfg"
  say "/etc/berth/berth.toml (berthd config)"
fi

install -m 0644 contrib/cni/10-berth-bridge.conflist contrib/containers/policy.json "$DESTDIR$share/"
if [ "${PACKAGE:-}" = 1 ]; then
  exit 0
fi
# The node-wide defaults, where the node has none (the .deb's postinst
# does the same on the node it is installed on).
netdir=$DESTDIR/etc/cni/net.d
if compgen -G "$netdir/*.conf" >/dev/null || compgen -G "$netdir/*.conflist" >/dev/null || compgen -G "$netdir/*.json" >/dev/null; then
  say "/etc/cni/net.d has a network, kept"
else
  install -D -m 0644 contrib/cni/10-berth-bridge.conflist "$netdir/10-berth-bridge.conflist"
  say "/etc/cni/net.d/10-berth-bridge.conflist"
fi
if [ -e "$DESTDIR/etc/containers/policy.json" ]; then
  say "/etc/containers/policy.json exists, kept"
else
  install -D -m 0644 contrib/containers/policy.json "$DESTDIR/etc/containers/policy.json"
  say "/etc/containers/policy.json (accept anything)"
fi
