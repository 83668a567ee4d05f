#!/usr/bin/env bash
# Installs the Debian packages the demo and the test suite need. Idempotent:
# with everything present it only checks. Run as root on Debian 12.
set -euo pipefail

packages=(
  # VMs
  qemu-system-x86 qemu-utils ovmf swtpm swtpm-tools
  # host plumbing
  iproute2 nftables dbus systemd util-linux
  # names of host PCI and USB devices
  pci.ids usb.ids
  # database aggregate tests
  postgresql
  # test guests: tiny busybox guest and the cloud-init guest
  busybox-static cpio e2fsprogs mmdebstrap
  # answer-file validators and ISO checks
  libxml2-utils genisoimage python3 python3-yaml python3-jsonschema python3-jinja2
  python3-configobj python3-requests python3-jsonpatch python3-netifaces python3-oauthlib
  python3-serial python3-cryptography
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing packages (${missing[*]}); run as root" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# policy-rc.d keeps package scripts from starting services on the host
# (PostgreSQL's default cluster): tests start their own.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.infinivirt
chmod +x /usr/sbin/policy-rc.d.infinivirt
if [ ! -e /usr/sbin/policy-rc.d ]; then
  ln -s policy-rc.d.infinivirt /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
