#!/usr/bin/env bash
# berth end to end on this machine: start berthd with the default config,
# import a busybox image built offline, run a pod with a container from it,
# read its log, exec into it, then tear everything down.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (containers need it)"; exit 1; }

work=$(mktemp -d /tmp/berth-demo.XXXXXX)
berth=(./bin/berth)
daemon_pid=
cleanup() {
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A CNI network for pods, unless the node already has one (as CRI-O's
# packages ship 10-crio-bridge).
if ! ls /etc/cni/net.d/*.conf* >/dev/null 2>&1; then
  mkdir -p /etc/cni/net.d
  cp contrib/cni/10-berth-bridge.conflist /etc/cni/net.d/
  echo "demo: installed /etc/cni/net.d/10-berth-bridge.conflist"
fi

# The signature policy every containers/image user reads; Debian's
# containers-common ships this same default.
if [ ! -e /etc/containers/policy.json ]; then
  mkdir -p /etc/containers
  echo '{"default": [{"type": "insecureAcceptAnything"}]}' >/etc/containers/policy.json
  echo "demo: installed /etc/containers/policy.json (accept anything)"
fi

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "start berthd with the default config ($(./bin/berthd config | grep -m1 '^listen'))"
./bin/berthd >"$work/berthd.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do
  "${berth[@]}" version >/dev/null 2>&1 && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/berthd.log"; exit 1; }
  sleep 0.1
done
"${berth[@]}" version

step "build a busybox image offline and import it"
go run ./hack/mkimage -o "$work/busybox.tar" -name localhost/berth-demo/busybox:latest
"${berth[@]}" image import "$work/busybox.tar" --name localhost/berth-demo/busybox:latest
"${berth[@]}" images

step "run a pod and a container in it"
cat >"$work/pod.json" <<JSON
{"metadata": {"name": "demo", "namespace": "default", "uid": "demo-$(date +%s)"},
 "hostname": "demo", "log_directory": "$work/logs", "linux": {}}
JSON
cat >"$work/ctr.json" <<JSON
{"metadata": {"name": "hello"},
 "image": {"image": "localhost/berth-demo/busybox:latest"},
 "command": ["/bin/sh", "-c", "echo hello from \$(hostname), pod ip \$(ip -4 -o addr show eth0 | awk '{print \$4}'); sleep 3600"],
 "log_path": "hello.log", "linux": {}}
JSON
pod=$("${berth[@]}" runp "$work/pod.json")
ctr=$("${berth[@]}" create "$pod" "$work/ctr.json" "$work/pod.json")
"${berth[@]}" start "$ctr"
"${berth[@]}" pods
"${berth[@]}" ps
for _ in $(seq 50); do grep -q hello "$work/logs/hello.log" 2>/dev/null && break; sleep 0.1; done
step "its log"
"${berth[@]}" logs "$ctr"
step "exec in it"
"${berth[@]}" exec -s "$ctr" cat /etc/hostname

step "tear down"
"${berth[@]}" stopp "$pod"
"${berth[@]}" rmp "$pod"
"${berth[@]}" rmi localhost/berth-demo/busybox:latest
echo "demo: done"
