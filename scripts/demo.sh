#!/usr/bin/env bash
# The README's demo: the agent on the embedded default (no database) and a
# running demo VM (the tiny test guest, TCG). Where PID 1 is not systemd, it
# first boots a test-bed host: a real systemd as PID 1 of private namespaces
# on an overlay root, so nothing touches this machine's own services.
#
#   scripts/demo.sh up | status | down
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
STATE=$PWD/.cache/demo
BRIDGE=ivdemo0
IMAGES=/var/lib/infinivirt-images

if [ "$(cat /proc/1/comm)" = systemd ]; then
  MODE=host
  inside() { "$@"; }
else
  MODE=testbed
  inside() { "$BIN/infinivirt-testbed" exec --state "$STATE" -- "$@"; }
fi

demo_id() { cat "$STATE/vm-id" 2>/dev/null || true; }

status() {
  local id; id=$(demo_id)
  echo "== infinivirtctl vm list"
  inside infinivirtctl vm list
  if [ -n "$id" ]; then
    echo
    echo "== systemctl status infinivirt-shim@$id.service"
    inside systemctl status --no-pager --lines=5 "infinivirt-shim@$id.service" || true
    echo
    echo "== guest console (tail)"
    inside infinivirtctl vm console "$id" | tail -n 4
  fi
}

up_testbed() {
  mkdir -p "$STATE"
  if "$BIN/infinivirt-testbed" status --state "$STATE" >/dev/null 2>&1; then
    return
  fi
  rm -f "$STATE/vm-id"
  printf 'INFINIVIRT_QEMU_ACCEL=tcg\n' > "$STATE/default"
  local files=()
  for b in infinivirt-agent infinivirt-shim infinivirtctl; do files+=(--file "$BIN/$b:/usr/bin/$b"); done
  files+=(
    --file "units/infinivirt-agent.service:/etc/systemd/system/infinivirt-agent.service"
    --file "units/infinivirt.slice:/etc/systemd/system/infinivirt.slice"
    --file "units/sysusers.d/infinivirt.conf:/usr/lib/sysusers.d/infinivirt.conf"
    --file "units/tmpfiles.d/infinivirt.conf:/usr/lib/tmpfiles.d/infinivirt.conf"
    --file "$STATE/default:/etc/default/infinivirt"
    --file "$KERNEL:$IMAGES/vmlinuz"
    --file "$INITRD:$IMAGES/initramfs.gz"
  )
  echo "== booting a test-bed host (systemd as PID 1 in private namespaces)"
  "$BIN/infinivirt-testbed" up --state "$STATE" --name infinivirt-demo "${files[@]}"
  inside systemd-sysusers
  inside systemd-tmpfiles --create /usr/lib/tmpfiles.d/infinivirt.conf
}

up_host() {
  # A real systemd host: install the units beside the built binaries.
  install -D -m 0644 units/infinivirt.slice /etc/systemd/system/infinivirt.slice
  install -D -m 0644 units/infinivirt-agent.service /etc/systemd/system/infinivirt-agent.service
  install -D -m 0644 units/sysusers.d/infinivirt.conf /usr/lib/sysusers.d/infinivirt.conf
  install -D -m 0644 units/tmpfiles.d/infinivirt.conf /usr/lib/tmpfiles.d/infinivirt.conf
  mkdir -p /etc/systemd/system/infinivirt-agent.service.d
  printf '[Service]\nExecStart=\nExecStart=%s/infinivirt-agent\n' "$BIN" > /etc/systemd/system/infinivirt-agent.service.d/demo.conf
  for b in infinivirt-shim infinivirtctl; do ln -sf "$BIN/$b" "/usr/local/bin/$b"; done
  install -D -m 0644 "$KERNEL" "$IMAGES/vmlinuz"
  install -D -m 0644 "$INITRD" "$IMAGES/initramfs.gz"
  systemd-sysusers
  systemd-tmpfiles --create /usr/lib/tmpfiles.d/infinivirt.conf
}

up() {
  { read -r KERNEL; read -r INITRD; } < <("$BIN/infinivirt-testguest")
  "up_$MODE"
  if ! inside ip link show "$BRIDGE" >/dev/null 2>&1; then
    inside ip link add "$BRIDGE" type bridge
    inside ip addr add 10.77.0.1/24 dev "$BRIDGE"
    inside ip link set "$BRIDGE" up
  fi
  inside systemctl daemon-reload
  inside systemctl start infinivirt-agent.service
  if [ -z "$(demo_id)" ]; then
    local id; id=$(cat /proc/sys/kernel/random/uuid)
    local pass; pass=$(head -c 6 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 8)
    echo "== creating the demo VM $id (VNC password: $pass)"
    inside env INFINIVIRT_GRAPHIC_PASSWORD="$pass" infinivirtctl vm create \
      --name demo --uuid "$id" --os linux --cpus 1 --ram-gb 0.125 --disk-gb 1 --accel tcg \
      --bridge "$BRIDGE" --graphic-protocol vnc \
      --kernel "$IMAGES/vmlinuz" --initrd "$IMAGES/initramfs.gz" \
      --cmdline "console=ttyS0 panic=-1 tg.ip=10.77.0.2/24 tg.host=demo"
    echo "$id" > "$STATE/vm-id"
    echo "== waiting for the guest's ready line"
    for _ in $(seq 300); do
      inside infinivirtctl vm console "$id" 2>/dev/null | grep -q 'TESTGUEST READY' && break
      sleep 1
    done
  fi
  echo
  status
  echo
  if [ "$MODE" = testbed ]; then
    echo "Run commands inside the demo host with: $BIN/infinivirt-testbed exec --state $STATE -- infinivirtctl vm list"
  fi
  echo "Tear it down with: make demo-down"
}

down() {
  if [ "$MODE" = testbed ]; then
    "$BIN/infinivirt-testbed" down --state "$STATE" || true
  else
    local id; id=$(demo_id)
    [ -n "$id" ] && infinivirtctl vm delete --force "$id" || true
    systemctl stop infinivirt-agent.service || true
  fi
  rm -rf "$STATE"
}

mkdir -p "$STATE"
case "${1:-up}" in
  up) up ;;
  status) status ;;
  down) down ;;
  *) echo "usage: $0 up|status|down" >&2; exit 2 ;;
esac
