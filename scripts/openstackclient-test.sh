#!/usr/bin/env bash
# Drives a test server's identity administration with python-openstackclient (2024.1, in the
# Tempest venv that scripts/tempest-test.sh installs): project create, user create, role add,
# role assignment list, and a login as the new user.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/tempest-venv
if [ ! -x "$venv/bin/openstack" ]; then
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q python-openstackclient -c scripts/tempest/upper-constraints-2024.1.txt
fi
bin=${NOVANET_BIN:-target/debug/novanet}
work=$(mktemp -d /tmp/novanet-osc.XXXXXX)
port=$((20000 + RANDOM % 20000))
"$bin" manage --data-dir "$work" bootstrap --bootstrap-password secret >/dev/null
"$bin" server --data-dir "$work" --listen "127.0.0.1:$port" --metadata-listen off 2>"$work/server.log" &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/identity/v3" >/dev/null && break; sleep 0.1; done

export OS_AUTH_URL="http://127.0.0.1:$port/identity/v3" OS_IDENTITY_API_VERSION=3
export OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default
export OS_USERNAME=admin OS_PASSWORD=secret OS_PROJECT_NAME=admin
osc() { "$venv/bin/openstack" "$@" 2>"$work/stderr"; }
fail() { echo "openstackclient test FAILED: $*" >&2; cat "$work/out" "$work/stderr" >&2; exit 1; }
osc project create demo2 -f value -c name >"$work/out" || fail "project create"
grep -qx demo2 "$work/out" || fail "project create printed no name"
osc user create --password pw2 --project demo2 alice -f value -c name >"$work/out" || fail "user create"
osc role add --project demo2 --user alice member >"$work/out" || fail "role add"
osc role assignment list --user alice --names -f value -c Role -c Project >"$work/out" || fail "role assignment list"
grep -q "member demo2@Default" "$work/out" || fail "the assignment is not listed"
OS_USERNAME=alice OS_PASSWORD=pw2 OS_PROJECT_NAME=demo2 osc token issue -f value -c project_id >"$work/out" || fail "alice cannot log in"
osc role remove --project demo2 --user alice member >"$work/out" || fail "role remove"
if OS_USERNAME=alice OS_PASSWORD=pw2 OS_PROJECT_NAME=demo2 osc token issue >"$work/out"; then fail "alice logged in without a role"; fi
osc user delete alice >"$work/out" || fail "user delete"
osc project delete demo2 >"$work/out" || fail "project delete"
echo "openstackclient test passed"
