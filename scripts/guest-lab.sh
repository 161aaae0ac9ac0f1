#!/usr/bin/env bash
# Runs a command inside a qemu guest on Debian's own kernel, with this machine's filesystem as
# the guest's root (virtme-ng, 9p, read-only; /tmp and /run are writable overlays). The guest
# has what this machine's kernel lacks: 802.1Q VLAN devices (testbed note, section 4b).
#
#   scripts/guest-lab.sh setup            fetch the kernel, busybox-static and virtme-ng once
#   scripts/guest-lab.sh run -- CMD...    run CMD in the guest from the repository's root;
#                                         exits with CMD's status, prints its output
#
# Everything it fetches lives under $NOVANET_GUEST_DIR (default target/guest-lab). vng itself
# exits 255 whatever the guest does, so the verdict comes back through a shared directory.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${NOVANET_GUEST_DIR:-$repo/target/guest-lab}
timeout_s=${NOVANET_GUEST_TIMEOUT:-600}

setup() {
    mkdir -p "$dir"
    cd "$dir"
    if ! command -v qemu-system-x86_64 >/dev/null || ! command -v depmod >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            qemu-system-x86 kmod >/dev/null
    fi
    if [ ! -f K/.done ]; then
        # The generic flavour: the cloud kernel has no 9p.
        local pkg
        pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
        rm -rf K && mkdir -p dl && (cd dl && apt-get download -q "$pkg" >/dev/null 2>&1)
        dpkg-deb -x dl/"$pkg"_*.deb K
        local kver
        kver=$(basename "$(ls -d K/lib/modules/*)")
        depmod -b "$dir/K" "$kver"
        touch K/.done
    fi
    if [ ! -x BIN/busybox-static ]; then
        # Extracted, not installed: installing busybox-static removes busybox.
        mkdir -p dl BIN && (cd dl && apt-get download -q busybox-static >/dev/null 2>&1)
        rm -rf BB && dpkg-deb -x dl/busybox-static_*.deb BB
        cp BB/bin/busybox BIN/busybox-static
    fi
    if [ ! -x V/bin/vng ]; then
        python3 -m venv V
        V/bin/pip install -q virtme-ng
    fi
}

run() {
    setup
    local kernel out rc
    kernel=$(ls "$dir"/K/boot/vmlinuz-*)
    out=$(mktemp -d /tmp/novanet-guest.XXXXXX)
    # The command runs as one argv-quoted string in the guest's shell.
    local cmd
    cmd=$(printf '%q ' "$@")
    cd "$repo"
    set +e
    PATH="$dir/BIN:$dir/V/bin:$PATH" timeout "$timeout_s" vng --run "$kernel" --disable-kvm \
        --force-9p -m 2G --cpus 2 --verbose --rwdir "$out" \
        --exec "modprobe br_netfilter; modprobe 8021q; modprobe vxlan; cd $(printf %q "$repo"); ( $cmd ) >$out/log 2>&1; echo \$? >$out/rc" \
        >"$out/console" 2>&1
    set -e
    cat "$out/log" 2>/dev/null || true
    if [ -f "$out/rc" ]; then
        rc=$(cat "$out/rc")
    else
        echo "guest-lab: the guest left no verdict; its console:" >&2
        tail -40 "$out/console" >&2
        rc=1
    fi
    rm -rf "$out"
    return "$rc"
}

case "${1:-}" in
setup) setup ;;
run)
    shift
    [ "${1:-}" = "--" ] && shift
    run "$@"
    ;;
*)
    echo "usage: $0 setup | run -- CMD..." >&2
    exit 2
    ;;
esac
