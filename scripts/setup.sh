#!/usr/bin/env bash
# Installs what novanet's build, lab and tests need on a fresh Debian 12 machine (as root).
# Idempotent: packages already present are left alone.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  dnsmasq-base dnsmasq-utils   # DHCP/DNS server and dhcp_release
  iptables nftables conntrack  # firewall, NAT, conntrack -D
  iproute2 busybox curl        # ip, udhcpc and nslookup in lab VMs
  iputils-ping iputils-arping  # ping, gratuitous ARP
  radvd ndisc6                 # IPv6 router advertisements
  libsqlite3-dev pkg-config    # the SQLite store links the system library
  python3-venv                 # the novaclient compatibility test
  cloud-init                   # its metadata readers crawl the lab's metadata service
  openssh-client               # ssh-keygen: key pairs the compute API generates
  genisoimage                  # config drives (ISO 9660, as nova's mkisofs_cmd); isoinfo reads them in tests
  nginx-light                  # the static server bench metadata compares against
  iperf3                       # bench firewall's throughput
  tcpdump                      # the 802.1Q lab checks the VLAN tags on the fabric
  qemu-system-x86 kmod         # the guest lab: Debian's kernel, which has 802.1Q VLAN devices
  postgresql                   # the PostgreSQL store's tests run a throwaway server of its own
  openvpn openssl              # cloudpipe: the VPN instances' server and the lab's client; the CA
  # compute_driver = libvirt (`lab up --vms mixed`): the daemon with its qemu driver, and
  # virsh. Not libvirt-daemon-system: that one adds services, users and a default network
  # (virbr0); the lab runs its own libvirtd per host instead (crates/lab/src/libvirtd.rs).
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "cargo is missing: install Rust (rustup) first" >&2; exit 1; }

# python-novaclient 7.1.2, the last series with the network commands; it imports
# pkg_resources, which setuptools 81+ no longer ships.
venv="$here/target/novaclient-venv"
if [ ! -x "$venv/bin/nova" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'python-novaclient==7.1.2' 'setuptools<81'
fi

# The guest lab's kernel, busybox-static and virtme-ng (scripts/guest-lab.sh; testbed 4b).
"$here/scripts/guest-lab.sh" setup
