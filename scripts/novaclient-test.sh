#!/usr/bin/env bash
# Drives a test server with the real python-novaclient 7.1.2 (installed by setup.sh) through
# the seed's commands, as admin and as a member, and checks what it prints.
set -euo pipefail
cd "$(dirname "$0")/.."
nova_bin=${NOVA:-target/novaclient-venv/bin/nova}
cargo build -q
bin=target/debug/novanet
work=$(mktemp -d /tmp/novanet-novaclient.XXXXXX)
trap 'rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
"$bin" manage --data-dir "$work" bootstrap --bootstrap-password secret
"$bin" manage --data-dir "$work" project create demo >/dev/null
"$bin" manage --data-dir "$work" user create demo --password demopw --project demo --role member >/dev/null
"$bin" manage --data-dir "$work" floating create --pool nova --ip_range 68.99.26.170/31
"$bin" server --data-dir "$work" --listen "127.0.0.1:$port" --metadata-listen off 2>"$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/identity/v3" >/dev/null && break; sleep 0.1; done

export OS_AUTH_URL="http://127.0.0.1:$port/identity/v3"
as_admin() { OS_USERNAME=admin OS_PASSWORD=secret OS_PROJECT_NAME=admin "$nova_bin" "$@" 2>"$work/stderr"; }
as_demo() { OS_USERNAME=demo OS_PASSWORD=demopw OS_PROJECT_NAME=demo "$nova_bin" "$@" 2>"$work/stderr"; }
fail() { echo "novaclient test FAILED: $*" >&2; echo "--- output:" >&2; cat "$work/out" >&2; cat "$work/stderr" >&2; exit 1; }
expect() { grep -qF -- "$1" "$work/out" || fail "expected '$1'"; }
expect_re() { grep -qE -- "$1" "$work/out" || fail "expected /$1/"; }

as_admin network-create vmnet --fixed-range-v4 10.0.0.0/24 --bridge br100 >"$work/out" || fail network-create
as_admin network-list >"$work/out" || fail network-list
expect "| vmnet | 10.0.0.0/24 |"
as_admin boot --image cirros --flavor 1 cirros >"$work/out" || fail boot
expect_re '^\| name +\| cirros +\|$'
expect_re '^\| vmnet network +\| 10\.0\.0\.2 +\|$'
as_admin list >"$work/out" || fail list
expect "vmnet=10.0.0.2"
expect_re '\| cirros \| ACTIVE +\|'
as_admin floating-ip-create >"$work/out" || fail floating-ip-create
expect "68.99.26.170"
as_admin floating-ip-list >"$work/out" || fail floating-ip-list
expect "| 68.99.26.170 | -         | -        | nova |"
as_admin floating-ip-associate cirros 68.99.26.170 >"$work/out" || fail floating-ip-associate
as_admin list >"$work/out" || fail list
expect "vmnet=10.0.0.2, 68.99.26.170"
as_admin secgroup-add-rule default icmp -1 -1 0.0.0.0/0 >"$work/out" || fail secgroup-add-rule icmp
as_admin secgroup-add-rule default tcp 22 22 0.0.0.0/0 >"$work/out" || fail secgroup-add-rule tcp
as_admin secgroup-list-rules default >"$work/out" || fail secgroup-list-rules
cat >"$work/want" <<'TABLE'
+-------------+-----------+---------+-----------+--------------+
| IP Protocol | From Port | To Port | IP Range  | Source Group |
+-------------+-----------+---------+-----------+--------------+
| icmp        | -1        | -1      | 0.0.0.0/0 |              |
| tcp         | 22        | 22      | 0.0.0.0/0 |              |
+-------------+-----------+---------+-----------+--------------+
TABLE
diff -u "$work/want" "$work/out" || fail "secgroup-list-rules table differs"

# A member sees only its own project, and may not create networks.
if as_demo network-create other --fixed-range-v4 10.9.0.0/24 --bridge br101 >"$work/out"; then fail "member created a network"; fi
grep -q "HTTP 403" "$work/stderr" || fail "member network-create should be 403"
as_demo boot --image cirros --flavor 1 demo-vm >"$work/out" || fail "member boot"
as_demo list >"$work/out" || fail "member list"
expect "demo-vm"
grep -q "| cirros |" "$work/out" && fail "member sees admin's server"
as_demo floating-ip-list >"$work/out" || fail "member floating-ip-list"
grep -q "68.99.26.170" "$work/out" && fail "member sees admin's floating IP"
as_demo network-list >"$work/out" || fail "member network-list"
expect "| vmnet | 10.0.0.0/24 |"
as_demo floating-ip-create >"$work/out" || fail "member floating-ip-create"
expect "68.99.26.171"
as_demo floating-ip-list >"$work/out" || fail "member floating-ip-list"
expect "| 68.99.26.171 | -         | -        | nova |"
# The member's own default group: its rules, not the admin's.
as_demo secgroup-list-rules default >"$work/out" || fail "member secgroup-list-rules"
grep -q "| tcp " "$work/out" && fail "member sees the admin project's rules"
as_demo secgroup-add-rule default tcp 22 22 0.0.0.0/0 >"$work/out" || fail "member secgroup-add-rule"
as_demo secgroup-list-rules default >"$work/out" || fail "member secgroup-list-rules"
expect "| tcp         | 22        | 22      | 0.0.0.0/0 |              |"
grep -q "| icmp " "$work/out" && fail "member sees the admin project's icmp rule"
as_admin delete cirros >"$work/out" || fail delete
expect "Request to delete server cirros has been accepted."
echo "novaclient test passed"
