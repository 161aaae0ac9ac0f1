#!/bin/sh
# Builds target/deb/novanet_VERSION_ARCH.deb from an already built binary, with plain
# dpkg-deb (no cargo-deb). Prints the package's path as its last line.
#
#   NOVANET_BIN=target/release/novanet packaging/build-deb.sh
#
# Environment:
#   NOVANET_BIN           the binary to package (default: target/release/novanet)
#   NOVANET_STRIP         1 (default): strip debug symbols from the packaged copy; 0: keep
#   NOVANET_DEB_REVISION  Debian revision appended to the version (default: none, "0.1.0")
#   DEB_ARCH              package architecture (default: dpkg --print-architecture)
#   DEB_MAINTAINER        Maintainer field (default: novanet developers <novanet@localhost>)
#   DEB_COMPRESS          dpkg-deb compressor: xz (default), gzip, zstd, none
#
# Contents: /usr/bin/novanet; the systemd units in /lib/systemd/system (not enabled);
# /etc/novanet/nova.conf (the annotated sample) and /etc/novanet/agent.env as conffiles;
# the sample again in /usr/share/doc/novanet; the man page novanet(1), generated from the
# binary's --help; shell completions when the binary has `novanet completions SHELL`.
# The postinst creates the system user `novanet` that runs the server.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cd "$top"

die() { echo "build-deb: $*" >&2; exit 1; }

bin=${NOVANET_BIN:-target/release/novanet}
[ -x "$bin" ] || die "no executable $bin (build it, or set NOVANET_BIN)"
for t in dpkg-deb md5sum gzip awk; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing"
done

# The workspace's version: [workspace.package] version = "X".
version=$(awk '
    /^\[/ { in_pkg = ($0 == "[workspace.package]") }
    in_pkg && $1 == "version" { v = $0; sub(/^[^"]*"/, "", v); sub(/".*$/, "", v); print v; exit }
' Cargo.toml)
[ -n "$version" ] || die "no version in [workspace.package] of Cargo.toml"
debversion=$version${NOVANET_DEB_REVISION:+-$NOVANET_DEB_REVISION}
arch=${DEB_ARCH:-$(dpkg --print-architecture)}
maintainer=${DEB_MAINTAINER:-novanet developers <novanet@localhost>}
"$bin" --version >/dev/null 2>&1 || die "$bin --version fails: not a novanet binary for this machine?"

out=$top/target/deb
root=$out/novanet_${debversion}_$arch
deb=$out/novanet_${debversion}_$arch.deb
rm -rf "$root" "$deb"
mkdir -p "$root/DEBIAN"
umask 022

d() { mkdir -p "$root/$1"; }
f() { # f MODE SRC DEST
    mkdir -p "$(dirname "$root/$3")"
    cp "$2" "$root/$3"
    chmod "$1" "$root/$3"
}

# The binary.
f 0755 "$bin" usr/bin/novanet
if [ "${NOVANET_STRIP:-1}" = 1 ]; then
    if command -v strip >/dev/null 2>&1; then
        strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/novanet"
    else
        echo "build-deb: strip is missing (binutils); packaging the binary unstripped" >&2
    fi
fi

# systemd units, configuration, documentation.
f 0644 packaging/systemd/novanet-server.service lib/systemd/system/novanet-server.service
f 0644 packaging/systemd/novanet-agent.service lib/systemd/system/novanet-agent.service
f 0644 packaging/nova.conf.sample etc/novanet/nova.conf
f 0644 packaging/nova.conf.sample usr/share/doc/novanet/nova.conf.sample
cat >"$root/etc/novanet/agent.env" <<'EOF'
# Environment of novanet-agent.service (systemd's EnvironmentFile: KEY=value lines).
# It holds an admin password: keep it mode 0600, owned by root.

# The server's URL (the agent's --server).
NOVANET_SERVER=http://127.0.0.1:8774

# The credentials the agent fetches its host plan with, as for the client commands.
OS_AUTH_URL=http://127.0.0.1:8774/identity/v3
OS_USERNAME=admin
OS_PASSWORD=
OS_PROJECT_NAME=admin

# More agent flags: --network-host on the host that serves single-host networks
# (gateway, DHCP, NAT); --resync SECONDS.
NOVANET_AGENT_ARGS=
EOF
chmod 0600 "$root/etc/novanet/agent.env"
cat >"$root/usr/share/doc/novanet/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: novanet

Files: *
Copyright: the novanet authors
License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.
EOF
chmod 0644 "$root/usr/share/doc/novanet/copyright"
if [ -f README.md ]; then f 0644 README.md usr/share/doc/novanet/README.md; fi

# The man page, from the binary's own help (clap's layout) so that it cannot drift.
# help2man was tried: it folds the ~45 client commands, which have no description, into
# one run-on paragraph.
troff_help() { # troff_help LEVEL(SH|SS) SKIP_ABOUT(0|1) < clap help text
    awk -v lvl="$1" -v skip_about="$2" '
    function esc(s) {
        gsub(/\\/, "\\\\e", s)
        gsub(/-/, "\\-", s)
        if (s ~ /^[.\047]/) s = "\\&" s
        return s
    }
    function flush() {
        if (item == "") return
        if (desc == "" && header == "Commands") {
            bare = bare (bare == "" ? "" : ", ") "\\fB" esc(item) "\\fR"
        } else {
            print ".TP"
            print "\\fB" esc(item) "\\fR"
            print (desc == "" ? "\\&" : esc(desc))
        }
        item = ""; desc = ""
    }
    function end_section() {
        flush()
        if (bare != "") {
            print ".PP"
            print "Client commands, with python\\-novaclient\047s names and arguments (\\fBnovanet\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR shows them):"
            print bare "."
            bare = ""
        }
    }
    BEGIN { state = "about" }
    state == "about" {
        if ($0 == "") { state = "body"; if (!skip_about && about != "") { print ".PP"; print esc(about) } }
        else about = about (about == "" ? "" : " ") $0
        next
    }
    /^Usage: / {
        end_section()
        u = $0; sub(/^Usage: /, "", u)
        # The top level (skip_about) has its SYNOPSIS instead.
        if (!skip_about) { print ".PP"; print "\\fBUsage:\\fR " esc(u) }
        header = ""; next
    }
    /^[A-Z][A-Za-z ]*:$/ {
        end_section()
        header = $0; sub(/:$/, "", header)
        print "." lvl " \"" toupper(header) "\""
        next
    }
    # Indentation: 2 to 6 spaces start an entry; more continue its description.
    { indent = match($0, /[^ ]/) - 1 }
    header != "" && indent >= 2 && indent <= 6 {
        flush()
        line = $0; sub(/^ +/, "", line); sub(/ +$/, "", line)
        i = index(line, "  ")
        if (i) { item = substr(line, 1, i - 1); desc = substr(line, i); sub(/^ +/, "", desc) }
        else { item = line; desc = "" }
        next
    }
    header != "" && indent > 6 {
        line = $0; sub(/^ +/, "", line); sub(/ +$/, "", line)
        desc = desc (desc == "" ? "" : " ") line
        next
    }
    /^ *$/ { next }
    { end_section(); print ".PP"; print esc($0) }
    END { end_section() }
    '
}

has_completions=0
if "$bin" completions bash >/dev/null 2>&1; then has_completions=1; fi

manpage=$(mktemp)
trap 'rm -f "$manpage"' EXIT
# The date of the last commit, so that the page does not change from one build to the next.
mandate=$(git log -1 --format=%cs 2>/dev/null || date -u +%Y-%m-%d)
about=$("$bin" --help | sed -n 1p)
{
    echo ".TH NOVANET 1 \"$mandate\" \"novanet $version\" \"User Commands\""
    echo ".nh"
    echo ".ad l"
    echo ".SH NAME"
    printf 'novanet \\- %s\n' "$(printf '%s' "$about" | sed 's/-/\\-/g')"
    echo ".SH SYNOPSIS"
    printf '%s\n' '\fBnovanet\fR [\fIOPTIONS\fR] \fICOMMAND\fR [\fIARGUMENTS\fR]'
    echo ".SH DESCRIPTION"
    cat <<'EOF'
novanet re\-implements OpenStack's nova\-network: Flat, FlatDHCP and VLAN managers, fixed
and floating IPs, dnsmasq for DHCP and DNS, NAT, the metadata service at 169.254.169.254,
and the Nova and Keystone APIs that python\-novaclient speaks. One binary plays every part:
.TP
\fBnovanet server\fR
the API server, its identity service and the metadata service, on a SQLite store
(the \fBnovanet\-server\fR systemd service);
.TP
\fBnovanet agent\fR
on every host, makes the kernel match the host plan the server gives it: bridges, VLANs,
addresses, NAT and filtering, one dnsmasq per served network
(the \fBnovanet\-agent\fR service);
.TP
\fBnovanet manage\fR
nova\-manage's commands, on the server's store directly (run them as the user
\fBnovanet\fR: \fBrunuser \-u novanet \-\- novanet manage ...\fR);
.TP
the client commands
novaclient's commands against the API, with the \fBOS_*\fR credentials.
EOF
    "$bin" --help | troff_help SH 1
    for sub in server agent manage; do
        echo ".SH \"NOVANET $(echo "$sub" | tr a-z A-Z)\""
        "$bin" "$sub" --help | troff_help SS 0
    done
    if [ "$has_completions" = 1 ]; then
        echo ".SH \"NOVANET COMPLETIONS\""
        "$bin" completions --help | troff_help SS 0
    fi
    cat <<'EOF'
.SH ENVIRONMENT
.TP
\fBOS_AUTH_URL\fR, \fBOS_USERNAME\fR, \fBOS_PASSWORD\fR, \fBOS_PROJECT_NAME\fR
credentials of the client commands and of the agent, as for python\-novaclient.
.TP
\fBNOVANET_DATA_DIR\fR, \fBNOVANET_CONFIG\fR
the store directory and the configuration file of \fBserver\fR and \fBmanage\fR.
.TP
\fBNOVANET_SERVER\fR
the server's URL, for \fBagent\fR.
.TP
\fBNOVANET_BOOTSTRAP_PASSWORD\fR
makes \fBserver\fR create the admin project and user with this password first.
.SH FILES
.TP
\fI/etc/novanet/nova.conf\fR
the configuration: nova.conf's option names and defaults; every option is listed,
commented, in \fI/usr/share/doc/novanet/nova.conf.sample\fR.
.TP
\fI/etc/novanet/agent.env\fR
the agent service's server URL, credentials and extra flags.
.TP
\fI/etc/novanet/server.env\fR
optional environment of the server service.
.TP
\fI/var/lib/novanet\fR
the server's store.
.TP
\fI/var/lib/novanet\-agent\fR
the agent's state: dnsmasq's files and what the agent owns.
.TP
\fI/lib/systemd/system/novanet\-server.service\fR, \fI/lib/systemd/system/novanet\-agent.service\fR
the services (\fBsystemctl enable \-\-now novanet\-server\fR).
.SH "SEE ALSO"
\fBdnsmasq\fR(8), \fBnft\fR(8), \fBiptables\fR(8), \fBip\fR(8), \fBsystemctl\fR(1)
EOF
} >"$manpage"
d usr/share/man/man1
gzip -9n <"$manpage" >"$root/usr/share/man/man1/novanet.1.gz"
chmod 0644 "$root/usr/share/man/man1/novanet.1.gz"

# Shell completions, when the binary can write them.
if [ "$has_completions" = 1 ]; then
    for spec in bash:usr/share/bash-completion/completions/novanet \
        zsh:usr/share/zsh/vendor-completions/_novanet \
        fish:usr/share/fish/vendor_completions.d/novanet.fish; do
        sh=${spec%%:*} dest=${spec#*:}
        d "$(dirname "$dest")"
        "$bin" completions "$sh" >"$root/$dest" || die "novanet completions $sh failed"
        [ -s "$root/$dest" ] || die "novanet completions $sh wrote nothing"
        chmod 0644 "$root/$dest"
    done
else
    echo "build-deb: $bin has no 'completions' command; no shell completions" >&2
fi

# Shared libraries the binary links (libc, libgcc, libsqlite3), with dpkg-shlibdeps's versions.
shlibs=
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
    sd=$(mktemp -d)
    mkdir "$sd/debian"
    printf 'Source: novanet\n\nPackage: novanet\nArchitecture: any\n' >"$sd/debian/control"
    shlibs=$(cd "$sd" && dpkg-shlibdeps -O "$root/usr/bin/novanet" 2>/dev/null | sed -n 's/^shlibs:Depends=//p') || shlibs=
    rm -rf "$sd"
fi
if [ -z "$shlibs" ]; then
    # Without dpkg-dev: the packages owning the libraries, unversioned.
    shlibs=$(ldd "$root/usr/bin/novanet" | awk '$3 ~ /^\// { print $3 }' | while read -r lib; do
        dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null
    done | sed 's/:.*//' | sort -u | paste -sd, - | sed 's/,/, /g')
fi
depends="${shlibs:+$shlibs, }adduser, dnsmasq-base, dnsmasq-utils, iproute2, nftables, iptables, conntrack, iputils-arping"

# DEBIAN/: control, conffiles, maintainer scripts, md5sums.
installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: novanet
Version: $debversion
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $installed_size
Depends: $depends
Recommends: genisoimage | xorriso, radvd
Suggests: python3-novaclient
Section: net
Priority: optional
Description: nova-network re-implemented: server, agent and client
 novanet re-implements OpenStack's nova-network: Flat, FlatDHCP and VLAN
 managers, fixed and floating IPs, dnsmasq for DHCP and DNS, NAT, the
 metadata service, and the Nova and Keystone APIs that python-novaclient
 speaks.
 .
 One binary is the API server (service novanet-server), the host agent
 (service novanet-agent: bridges, NAT and filtering with nftables or
 iptables, a dnsmasq per network) and the client. Neither service is
 enabled on installation: configure /etc/novanet/nova.conf and
 /etc/novanet/agent.env, then systemctl enable --now novanet-server
 (or novanet-agent).
EOF
printf '/etc/novanet/agent.env\n/etc/novanet/nova.conf\n' >"$root/DEBIAN/conffiles"

cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    # The server's user; the agent runs as root.
    if ! getent passwd novanet >/dev/null; then
        adduser --system --group --quiet --home /var/lib/novanet --no-create-home novanet
    fi
    # On first installation: the configuration may hold secrets (keystone_authtoken's
    # password, metadata_proxy_shared_secret); the server reads it as novanet.
    if [ -z "$2" ] && [ -f /etc/novanet/nova.conf ]; then
        chown root:novanet /etc/novanet/nova.conf
        chmod 0640 /etc/novanet/nova.conf
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
        # An upgrade restarts the services that run; none is started otherwise.
        if [ -n "$2" ]; then
            systemctl try-restart novanet-server.service novanet-agent.service || true
        fi
    fi
fi
exit 0
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop novanet-agent.service novanet-server.service || true
    systemctl disable --quiet novanet-agent.service novanet-server.service || true
fi
exit 0
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
# The store (/var/lib/novanet), the agent's state and the user novanet are kept, even on
# purge: they are the cloud's data.
if [ "$1" = remove ] || [ "$1" = purge ]; then
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload || true
    fi
fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

# md5sums of every file but the conffiles (as dh_md5sums).
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | LC_ALL=C sort |
    grep -vxF -e etc/novanet/nova.conf -e etc/novanet/agent.env |
    while IFS= read -r p; do md5sum "$p"; done) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$root" "$deb" >&2
rm -rf "$root"
echo "$deb"
