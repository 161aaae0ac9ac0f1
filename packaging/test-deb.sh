#!/bin/sh
# Builds the .deb (packaging/build-deb.sh) and checks it:
#   - its contents (every file, modes, owners), control fields, Depends (each dependency
#     present and known to apt, the dnsmasq daemon package absent), conffiles, md5sums;
#   - the maintainer scripts parse (sh -n);
#   - systemd-analyze verify accepts both units, silently, with the packaged man page;
#   - the man page renders without a groff warning and shows its sections;
#   - nova.conf.sample lists every option of crates/core/src/config.rs, and only those,
#     with the defaults the code has; if the binary reads nova.conf's INI form, it
#     accepts the sample as shipped and with every default uncommented;
#   - as root, with overlayfs: the package installs, upgrades, removes and purges in a
#     throw-away overlay of / (private mount namespace; every write lands in a temp dir)
#     with real dpkg and maintainer scripts, and the installed units verify there.
# Touches nothing outside its temp directory and target/deb. Exits non-zero on any failure.
#
#   NOVANET_BIN=target/release/novanet packaging/test-deb.sh
set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
cd "$top" || exit 2
bin=${NOVANET_BIN:-target/release/novanet}
export NOVANET_BIN="$bin"

failures=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
skip() { echo "skip $*"; }
check() { # check DESCRIPTION COMMAND...
    what=$1; shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/novanet-test-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# Tools, installed only when missing.
need() { # need COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "test-deb: $1 is missing; install $2 (as root: apt-get install $2)" >&2
        exit 2
    fi
    echo "test-deb: installing $2 (for $1)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$2" >"$tmp/apt.log" 2>&1 ||
        { cat "$tmp/apt.log" >&2; echo "test-deb: cannot install $2" >&2; exit 2; }
}
need dpkg-deb dpkg
need systemd-analyze systemd
need groff groff-base
need man man-db
need md5sum coreutils

start=$(date +%s)

# --- Build ---------------------------------------------------------------------------
if ! packaging/build-deb.sh >"$tmp/build.out" 2>"$tmp/build.err"; then
    cat "$tmp/build.err"
    fail "build-deb.sh"
    exit 1
fi
deb=$(tail -n1 "$tmp/build.out")
[ -f "$deb" ] || { fail "build-deb.sh printed no package ($deb)"; exit 1; }
ok "build-deb.sh built ${deb#"$top"/} ($(du -k "$deb" | cut -f1) KiB)"

version=$(awk '
    /^\[/ { in_pkg = ($0 == "[workspace.package]") }
    in_pkg && $1 == "version" { v = $0; sub(/^[^"]*"/, "", v); sub(/".*$/, "", v); print v; exit }
' Cargo.toml)
has_completions=0
if "$bin" completions bash >/dev/null 2>&1; then has_completions=1; fi

# --- Contents ------------------------------------------------------------------------
dpkg-deb --contents "$deb" >"$tmp/contents" || fail "dpkg-deb --contents"
# "MODE OWNER PATH" per entry.
awk '{ print $1, $2, $6 }' "$tmp/contents" >"$tmp/entries"
expect() { # expect MODE PATH
    if grep -qxF -e "$1 root/root ./$2" "$tmp/entries"; then ok "contains $2 ($1 root/root)"
    else fail "contains $2 ($1 root/root): $(grep -F " ./$2" "$tmp/entries" || echo absent)"; fi
}
expect -rwxr-xr-x usr/bin/novanet
expect -rw-r--r-- lib/systemd/system/novanet-server.service
expect -rw-r--r-- lib/systemd/system/novanet-agent.service
expect -rw-r--r-- etc/novanet/nova.conf
expect -rw------- etc/novanet/agent.env
expect -rw-r--r-- usr/share/doc/novanet/nova.conf.sample
expect -rw-r--r-- usr/share/doc/novanet/copyright
expect -rw-r--r-- usr/share/man/man1/novanet.1.gz
completions="usr/share/bash-completion/completions/novanet usr/share/zsh/vendor-completions/_novanet usr/share/fish/vendor_completions.d/novanet.fish"
if [ "$has_completions" = 1 ]; then
    for c in $completions; do expect -rw-r--r-- "$c"; done
else
    skip "shell completions: $bin has no 'completions' command"
    for c in $completions; do
        if grep -q " ./$c\$" "$tmp/entries"; then fail "no completion file without the command: $c"; fi
    done
fi
check "every entry is owned by root/root" sh -c "! awk '\$2 != \"root/root\"' '$tmp/entries' | grep -q ."

# --- Control fields ------------------------------------------------------------------
field() { dpkg-deb --field "$deb" "$1"; }
check "dpkg-deb --info reads the package" sh -c "dpkg-deb --info '$deb' >'$tmp/info'"
[ "$(field Package)" = novanet ] && ok "Package: novanet" || fail "Package: $(field Package)"
case $(field Version) in
"$version" | "$version"-*) ok "Version: $(field Version) (workspace $version)" ;;
*) fail "Version: $(field Version), workspace has $version" ;;
esac
[ "$(field Architecture)" = "${DEB_ARCH:-$(dpkg --print-architecture)}" ] &&
    ok "Architecture: $(field Architecture)" || fail "Architecture: $(field Architecture)"
depends=$(field Depends)
grep -q '^ Depends: ' "$tmp/info" && ok "dpkg-deb --info shows Depends: $depends" || fail "no Depends line in dpkg-deb --info"
# Package names of Depends, one a line (versions and alternatives dropped).
echo "$depends" | tr ',|' '\n\n' | sed 's/(.*)//; s/^ *//; s/ *$//; s/:.*//' | grep . >"$tmp/depnames"
for p in dnsmasq-base dnsmasq-utils iproute2 nftables iptables conntrack iputils-arping adduser libsqlite3-0 libc6; do
    grep -qxF "$p" "$tmp/depnames" && ok "Depends on $p" || fail "Depends lacks $p"
done
grep -qxF dnsmasq "$tmp/depnames" && fail "Depends names dnsmasq (its service would take port 53)" ||
    ok "Depends does not name dnsmasq (the daemon package)"
if apt-cache show --no-all-versions apt >/dev/null 2>&1; then
    unknown=
    while read -r p; do
        apt-cache show --no-all-versions "$p" >/dev/null 2>&1 || unknown="$unknown $p"
    done <"$tmp/depnames"
    [ -z "$unknown" ] && ok "apt knows every dependency" || fail "apt knows no package:$unknown"
else
    skip "dependencies known to apt: apt has no package lists"
fi
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$tmp/conffiles" 2>/dev/null
[ "$(sort "$tmp/conffiles" | tr '\n' ' ')" = "/etc/novanet/agent.env /etc/novanet/nova.conf " ] &&
    ok "conffiles: /etc/novanet/nova.conf /etc/novanet/agent.env" || fail "conffiles: $(tr '\n' ' ' <"$tmp/conffiles")"

# --- Files: md5sums, maintainer scripts ----------------------------------------------
root=$tmp/root
dpkg-deb -R "$deb" "$root" || fail "dpkg-deb -R"
check "md5sums match the files" sh -c "cd '$root' && md5sum --quiet -c DEBIAN/md5sums"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort) >"$tmp/files"
awk '{ print $2 }' "$root/DEBIAN/md5sums" | sort >"$tmp/summed"
missing=$(comm -23 "$tmp/files" "$tmp/summed" | grep -vxF -e etc/novanet/nova.conf -e etc/novanet/agent.env)
[ -z "$missing" ] && ok "md5sums lists every file but the conffiles" || fail "md5sums lacks: $missing"
for s in postinst prerm postrm; do
    if [ -f "$root/DEBIAN/$s" ]; then
        check "$s parses (sh -n)" sh -n "$root/DEBIAN/$s"
        [ -x "$root/DEBIAN/$s" ] || fail "$s is not executable"
    fi
done
grep -q 'adduser --system' "$root/DEBIAN/postinst" && ok "postinst creates the novanet system user" ||
    fail "postinst does not create the novanet user"
check "the packaged binary runs (--version)" sh -c "'$root/usr/bin/novanet' --version | grep -qxF 'novanet $version'"
check "the packaged nova.conf is the sample" cmp -s "$root/etc/novanet/nova.conf" packaging/nova.conf.sample

# --- systemd units -------------------------------------------------------------------
# The units name /usr/bin/novanet: verify copies that name the extracted binary, with
# the packaged man page on MANPATH (verify checks Documentation=man:novanet(1)).
mkdir "$tmp/units"
for u in novanet-server novanet-agent; do
    sed "s#/usr/bin/novanet#$root/usr/bin/novanet#g" "$root/lib/systemd/system/$u.service" >"$tmp/units/$u.service"
    grep -q '^ExecStart=/usr/bin/novanet ' "$root/lib/systemd/system/$u.service" &&
        ok "$u.service runs /usr/bin/novanet" || fail "$u.service ExecStart is not /usr/bin/novanet"
done
if (cd "$tmp" && MANPATH="$root/usr/share/man" systemd-analyze verify \
    "$tmp/units/novanet-server.service" "$tmp/units/novanet-agent.service") >"$tmp/verify.out" 2>&1 &&
    ! grep -v -e 'Failed to read \$container of PID 1' -e 'PR_SET_MM_ARG_START' "$tmp/verify.out" | grep -q .; then
    ok "systemd-analyze verify accepts both units, without a warning"
else
    fail "systemd-analyze verify:"
    sed 's/^/    /' "$tmp/verify.out"
fi
for u in novanet-server novanet-agent; do
    systemd-analyze security --offline=yes "$tmp/units/$u.service" 2>/dev/null |
        sed -n 's/^→ Overall exposure level for .*: /  exposure: /p' | sed "s/^/     $u/"
done
for want in 'CapabilityBoundingSet=$' 'User=novanet' 'StateDirectory=novanet$' 'ProtectSystem=strict' \
    'NoNewPrivileges=yes' 'PrivateTmp=yes' 'SystemCallFilter=@system-service' 'Restart=on-failure'; do
    grep -q "^$want" "$root/lib/systemd/system/novanet-server.service" || fail "server unit lacks $want"
done
for want in 'CapabilityBoundingSet=CAP_NET_ADMIN' 'EnvironmentFile=/etc/novanet/agent.env' \
    'StateDirectory=novanet-agent$' 'ProtectSystem=strict' 'NoNewPrivileges=yes' \
    'RestrictAddressFamilies=.*AF_NETLINK' 'SystemCallFilter=@system-service' 'Restart=on-failure'; do
    grep -q "^$want" "$root/lib/systemd/system/novanet-agent.service" || fail "agent unit lacks $want"
done
grep -q '^PrivateNetwork=yes' "$root/lib/systemd/system/novanet-agent.service" && fail "agent unit has a private network"
grep -q '^ProtectKernelTunables=yes' "$root/lib/systemd/system/novanet-agent.service" && fail "agent unit cannot write net.* sysctls"
grep -q '^ProtectProc=invisible' "$root/lib/systemd/system/novanet-agent.service" && fail "agent unit cannot see its dnsmasq"
# Every flag of each ExecStart is one the packaged binary's subcommand has.
for u in novanet-server novanet-agent; do
    line=$(sed -n 's|^ExecStart=/usr/bin/novanet ||p' "$root/lib/systemd/system/$u.service")
    sub=${line%% *}
    "$root/usr/bin/novanet" "$sub" --help >"$tmp/$sub.help" 2>&1
    missing=
    for flag in $(echo "$line" | tr ' ' '\n' | grep '^--'); do
        grep -qE -- "(^|[ ,])$flag( |\$|=)" "$tmp/$sub.help" || missing="$missing $flag"
    done
    [ -z "$missing" ] && ok "novanet $sub takes every flag of $u.service's ExecStart" ||
        fail "novanet $sub lacks$missing (flags of $u.service's ExecStart)"
done

# --- Man page ------------------------------------------------------------------------
gzip -dc "$root/usr/share/man/man1/novanet.1.gz" >"$tmp/novanet.1" || fail "man page is not gzip"
LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$tmp/novanet.1" >"$tmp/groff.out" 2>&1
[ ! -s "$tmp/groff.out" ] && ok "groff renders the man page without a warning" ||
    { fail "groff warnings:"; sed 's/^/    /' "$tmp/groff.out"; }
MANWIDTH=80 LC_ALL=C.UTF-8 man -l "$root/usr/share/man/man1/novanet.1.gz" >"$tmp/man.txt" 2>"$tmp/man.err"
if [ -s "$tmp/man.txt" ] && [ ! -s "$tmp/man.err" ]; then
    missing=
    for s in NAME SYNOPSIS DESCRIPTION COMMANDS OPTIONS 'NOVANET SERVER' 'NOVANET AGENT' 'NOVANET MANAGE' ENVIRONMENT FILES; do
        grep -q "^$s" "$tmp/man.txt" || missing="$missing '$s'"
    done
    [ -z "$missing" ] && ok "man -l renders novanet(1) ($(wc -l <"$tmp/man.txt") lines, every section)" ||
        fail "man page lacks sections:$missing"
else
    fail "man -l:"; cat "$tmp/man.err"
fi

# --- nova.conf.sample against the code -----------------------------------------------
sample=packaging/nova.conf.sample
config_rs=crates/core/src/config.rs
if [ -f "$config_rs" ]; then
    struct_fields() { # struct_fields NAME: the pub fields of `pub struct NAME`
        awk -v s="pub struct $1 {" '
            index($0, s) == 1 { on = 1; next }
            on && /^}/ { exit }
            on && /^    pub [a-z_0-9]+:/ { f = $2; sub(/:$/, "", f); print f }
        ' "$config_rs" | sort
    }
    struct_fields Config | grep -vx -e keystone_authtoken -e database >"$tmp/fields"
    struct_fields KeystoneAuthtoken >"$tmp/ks_fields"
    struct_fields Database >"$tmp/db_fields"
    # Sample keys (commented or not) by section: DEFAULT and keystone_authtoken.
    awk '
        BEGIN { sec = "default" }
        /^#?\[keystone_authtoken\]/ { sec = "ks"; next }
        /^#?\[database\]/ { sec = "db"; next }
        /^#?\[/ { sec = "default"; next }
        /^#?[a-z_0-9]+ =/ { k = $0; sub(/^#/, "", k); sub(/ =.*/, "", k); print sec " " k }
    ' "$sample" >"$tmp/sample_keys"
    sed -n 's/^default //p' "$tmp/sample_keys" | sort >"$tmp/keys"
    sed -n 's/^ks //p' "$tmp/sample_keys" | sort >"$tmp/ks_keys"
    sed -n 's/^db //p' "$tmp/sample_keys" | sort >"$tmp/db_keys"
    d1=$(comm -23 "$tmp/fields" "$tmp/keys" | tr '\n' ' ')
    d2=$(comm -13 "$tmp/fields" "$tmp/keys" | tr '\n' ' ')
    [ -z "$d1$d2" ] && ok "the sample has every option of Config ($(wc -l <"$tmp/fields")), and no other" ||
        fail "sample vs Config: missing [$d1] unknown [$d2]"
    [ "$(cat "$tmp/ks_fields")" = "$(cat "$tmp/ks_keys")" ] && ok "the sample's [keystone_authtoken] has every option" ||
        fail "sample's [keystone_authtoken] differs from KeystoneAuthtoken"
    [ "$(cat "$tmp/db_fields")" = "$(cat "$tmp/db_keys")" ] && ok "the sample's [database] has every option" ||
        fail "sample's [database] differs from Database"
    dup=$(sort "$tmp/sample_keys" | uniq -d | tr '\n' ' ')
    [ -z "$dup" ] && ok "no option appears twice in the sample" || fail "options twice in the sample: $dup"
    # Defaults: `field: value,` lines of `impl Default for Config`, in the sample's spelling.
    awk '
        /^impl Default for Config/ { on = 1; next }
        on && /^}/ { exit }
        on && /^            [a-z_0-9]+: .*,$/ {
            k = $1; sub(/:$/, "", k); v = $0; sub(/^ *[a-z_0-9]+: /, "", v); sub(/,$/, "", v)
            sub(/\.into\(\)$/, "", v); gsub(/"/, "", v)
            if (v == "true") v = "True"; else if (v == "false") v = "False"
            else if (v == "None" || v == "Vec::new()" || v == "String::new()") v = ""
            else if (v ~ /^vec!\[.*\]$/) { sub(/^vec!\[/, "", v); sub(/\]$/, "", v); gsub(/\.into\(\)/, "", v); gsub(/, */, ",", v) }
            else if (v ~ /^[A-Za-z]+::[A-Za-z]+$/) { sub(/^.*::/, "", v); v = tolower(v) }
            print k "=" v
        }
    ' "$config_rs" | grep -v -e '^keystone_authtoken=' -e '^database=' | sort >"$tmp/code_defaults"
    awk '/^#?\[keystone_authtoken\]/ { exit }
        /^#?[a-z_0-9]+ =/ { l = $0; sub(/^#/, "", l); k = l; sub(/ =.*/, "", k); v = l; sub(/^[^=]*= ?/, "", v); print k "=" v }
    ' "$sample" | sort >"$tmp/sample_defaults"
    wrong=$(comm -23 "$tmp/code_defaults" "$tmp/sample_defaults" | tr '\n' ' ')
    [ "$(wc -l <"$tmp/code_defaults")" -gt 40 ] || fail "read only $(wc -l <"$tmp/code_defaults") defaults from $config_rs"
    [ -z "$wrong" ] && ok "the sample's defaults are the code's" || fail "defaults differ (code's): $wrong"
    # One comment line before each option, saying what it does.
    nodoc=$(awk '/^#?[a-z_0-9]+ =/ && prev !~ /^# [A-Z]/ { print $0 } { prev = $0 }' "$sample" | tr '\n' ' ')
    [ -z "$nodoc" ] && ok "every option has its comment line" || fail "options without a comment: $nodoc"
else
    skip "sample against the code: no $config_rs"
fi
# Does the binary read nova.conf's INI form? Then it must accept the sample.
mkdir -p "$tmp/ini"
printf '[DEFAULT]\nmy_ip = 127.0.0.1\nforce_dhcp_release = True\n' >"$tmp/ini/probe.conf"
# manage refuses a data dir without a store: make one first.
"$bin" manage --data-dir "$tmp/ini/store" bootstrap --bootstrap-password probe >/dev/null 2>&1 || true
manage() { "$bin" manage --data-dir "$tmp/ini/store" --config "$1" network list >"$tmp/ini/out" 2>&1; }
if manage "$tmp/ini/probe.conf"; then
    if manage "$sample"; then ok "the binary accepts the sample as shipped"
    else fail "the binary refuses the sample as shipped:"; sed 's/^/    /' "$tmp/ini/out"; fi
    # Every option of [DEFAULT] set explicitly to the default the sample shows.
    awk '/^#?\[keystone_authtoken\]/ { exit } { print }' "$sample" |
        sed -E 's/^#([a-z_0-9]+ =)/\1/' >"$tmp/ini/explicit.conf"
    if manage "$tmp/ini/explicit.conf"; then ok "the binary accepts the sample with its defaults uncommented"
    else fail "the binary refuses the sample's defaults:"; sed 's/^/    /' "$tmp/ini/out"; fi
else
    skip "sample parsed by the binary: it does not read the INI form yet ($(head -n1 "$tmp/ini/out"))"
fi

# --- Installation into a throw-away root ---------------------------------------------
# An overlay of / in a private mount namespace: dpkg, adduser and the maintainer scripts
# are the real ones, every write goes to $tmp/ovl/upper, and the mounts end with the
# namespace. /dev, /proc and /run are private (a tmpfs with a few nodes, a new proc, an
# empty tmpfs: no host systemd is reachable, so the scripts skip systemctl).
install_test() {
    ovl=$tmp/ovl
    mkdir -p "$ovl/upper" "$ovl/work" "$ovl/root"
    cp "$deb" "$ovl/novanet.deb"
    cat >"$ovl/inside.sh" <<'EOF'
set -u
f=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; f=$((f + 1)); }
run() { # run WHAT COMMAND...: its output shown only when it fails
    what=$1; shift
    if "$@" >/tmp/run.out 2>&1; then ok "$what"; else fail "$what:"; sed 's/^/    /' /tmp/run.out; fi
}
mode() { stat -c '%U:%G %a' "$1"; }
verify_units() {
    (cd / && systemd-analyze verify /lib/systemd/system/novanet-server.service \
        /lib/systemd/system/novanet-agent.service) >/tmp/verify.out 2>&1 || { cat /tmp/verify.out; return 1; }
    ! grep -v -e 'Failed to read \$container of PID 1' -e PR_SET_MM_ARG_START /tmp/verify.out | grep .
}
export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin
run "dpkg -i installs the package (maintainer scripts included)" dpkg -i /novanet.deb
st=$(dpkg-query -W -f='${Status}' novanet)
[ "$st" = "install ok installed" ] && ok "dpkg reports novanet installed" || fail "dpkg status: $st"
pw=$(getent passwd novanet)
case $pw in
novanet:*:/var/lib/novanet:*nologin) ok "postinst created the system user novanet ($pw)" ;;
*) fail "user novanet: '$pw'" ;;
esac
[ "$(mode /etc/novanet/nova.conf)" = "root:novanet 640" ] && ok "/etc/novanet/nova.conf is root:novanet 0640" ||
    fail "/etc/novanet/nova.conf: $(mode /etc/novanet/nova.conf)"
[ "$(mode /etc/novanet/agent.env)" = "root:root 600" ] && ok "/etc/novanet/agent.env is root:root 0600" ||
    fail "/etc/novanet/agent.env: $(mode /etc/novanet/agent.env)"
run "/usr/bin/novanet --version" /usr/bin/novanet --version
run "man finds novanet(1)" man -w novanet
run "systemd-analyze verify accepts the installed units, without a warning" verify_units
run "dpkg -i again (upgrade path) succeeds" dpkg -i /novanet.deb
echo "# local change" >>/etc/novanet/nova.conf
run "dpkg -r removes it" dpkg -r novanet
[ -f /etc/novanet/nova.conf ] && ok "remove keeps the conffiles" || fail "remove dropped /etc/novanet/nova.conf"
[ ! -e /usr/bin/novanet ] && ok "remove drops /usr/bin/novanet" || fail "/usr/bin/novanet left after remove"
run "dpkg -P purges it" dpkg -P novanet
[ ! -e /etc/novanet/nova.conf ] && [ ! -e /etc/novanet/agent.env ] && ok "purge drops the conffiles" ||
    fail "conffiles left after purge: $(ls /etc/novanet)"
exit $f
EOF
    [ -n "$ovl" ] && [ -d "$ovl/root" ] || return 1
    unshare --mount --propagation private sh -c '
        set -e
        o=$1
        [ -n "$o" ] && [ -d "$o/root" ]
        mount -t overlay overlay -o "lowerdir=/,upperdir=$o/upper,workdir=$o/work" "$o/root"
        mountpoint -q "$o/root"
        mount -t proc proc "$o/root/proc"
        mount -t tmpfs -o mode=0755 tmpfs "$o/root/dev"
        mknod -m 0666 "$o/root/dev/null" c 1 3
        mknod -m 0666 "$o/root/dev/zero" c 1 5
        mknod -m 0666 "$o/root/dev/random" c 1 8
        mknod -m 0666 "$o/root/dev/urandom" c 1 9
        mount -t tmpfs -o mode=0755 tmpfs "$o/root/run"
        mount -t tmpfs -o mode=1777 tmpfs "$o/root/tmp"
        cp "$o/novanet.deb" "$o/root/novanet.deb"
        cp "$o/inside.sh" "$o/root/novanet-inside.sh"
        exec chroot "$o/root" sh /novanet-inside.sh </dev/null
    ' sh "$ovl"
}
# The overlay shows the root file system alone: /usr, /var or /etc mounted apart would be
# empty in it.
split=
for d in /usr /var /etc /lib /bin; do
    if [ ! -L "$d" ] && mountpoint -q "$d" 2>/dev/null; then split="$split $d"; fi
done
if [ -n "$split" ]; then
    skip "installation in an overlay root:$split mounted apart from / (extracted contents checked above)"
elif [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1 && command -v chroot >/dev/null 2>&1 &&
    unshare --mount --propagation private sh -c "mkdir -p '$tmp/probe/u' '$tmp/probe/w' '$tmp/probe/m' &&
        mount -t overlay overlay -o 'lowerdir=/,upperdir=$tmp/probe/u,workdir=$tmp/probe/w' '$tmp/probe/m'" 2>/dev/null; then
    install_test >"$tmp/install.out" 2>&1
    cat "$tmp/install.out"
    n=$(grep -c '^FAIL' "$tmp/install.out")
    if [ "$n" != 0 ] || ! grep -q '^ok   dpkg -P purges it' "$tmp/install.out"; then
        failures=$((failures + ${n:-0}))
        fail "installation in an overlay root"
    fi
else
    skip "installation in an overlay root: needs root, unshare and overlayfs (extracted contents checked above)"
fi

echo
echo "$((failures)) failure(s); $(($(date +%s) - start)) s; package: $deb"
[ "$failures" = 0 ]
