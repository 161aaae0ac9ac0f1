#!/usr/bin/env bash
# Runs OpenStack's conformance suite, Tempest 35.0.0 (the last release with the nova-network
# compute tests), against a test server: tempest.api.compute at microversions 2.1-2.35, with
# identity v3. Tests that cannot apply to a network controller whose servers are records are in
# scripts/tempest/skip-list.txt; any other test that fails fails this script.
#
#   NOVANET_BIN          the binary under test (default target/debug/novanet; nothing is built)
#   TEMPEST_REGEX        the tests to run (default ^tempest.api.compute)
#   TEMPEST_TIMEOUT      seconds for the whole run (default 3000)
#   TEMPEST_CONCURRENCY  test workers (default 2)
#   TEMPEST_CREDENTIALS  auto (default): dynamic credentials when the identity API can create
#                        projects, users and role assignments, else pre-provisioned accounts
#                        (made with `novanet manage`); or dynamic, or preprovisioned
#   TEMPEST_LOG_DIR      when set, tempest.conf, accounts.yaml, tempest.log (every request and
#                        response), the run's output and the server's log are copied there
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
venv="$repo/target/tempest-venv"
bin=${NOVANET_BIN:-target/debug/novanet}
regex=${TEMPEST_REGEX:-^tempest.api.compute}
run_timeout=${TEMPEST_TIMEOUT:-3000}
concurrency=${TEMPEST_CONCURRENCY:-2}
creds_mode=${TEMPEST_CREDENTIALS:-auto}
skip_list="$repo/scripts/tempest/skip-list.txt"

[ -x "$bin" ] || { echo "tempest test: $bin is missing (build it first)" >&2; exit 1; }
bin=$(realpath "$bin")
# Tempest 35.0.0 installs on Python 3.11 only with the 2024.1 constraints (see that file's source).
if [ ! -x "$venv/bin/tempest" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'tempest==35.0.0' -c scripts/tempest/upper-constraints-2024.1.txt
fi

work=$(mktemp -d /tmp/novanet-tempest.XXXXXX)
server=
# shellcheck disable=SC2317  # (called by the EXIT trap)
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
data="$work/data"
ws="$work/workspace"
mkdir -p "$data"
port=$((20000 + RANDOM % 20000))
base="http://127.0.0.1:$port"
admin_pw=tempest-admin-pw
manage() { "$bin" manage --data-dir "$data" "$@" >/dev/null; }

manage bootstrap --bootstrap-password "$admin_pw"
# The fixed network every test project's servers land on (nova-network's shared network), and
# the floating pool tempest allocates from. Records only: no agent runs, no packet is sent.
manage network create private --fixed-range-v4 10.100.0.0/20 --network-size 4096 --bridge br100
manage floating create --pool public --ip_range 172.24.4.0/24
"$bin" server --data-dir "$data" --listen "127.0.0.1:$port" --metadata-listen off 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do curl -sf "$base/identity/v3" >/dev/null && break; sleep 0.1; done
curl -sf "$base/identity/v3" >/dev/null || { echo "tempest test: the server did not start" >&2; cat "$work/server.log" >&2; exit 1; }
admin_token=$(curl -sf -D - -o /dev/null -H 'Content-Type: application/json' "$base/identity/v3/auth/tokens" -d \
  '{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "password": "'"$admin_pw"'", "domain": {"name": "Default"}}}}, "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}' |
  awk 'tolower($1) == "x-subject-token:" { print $2 }' | tr -d '\r')
# Tempest expects at least one nova-compute service and servers placed on a host: one compute
# host reports itself as its agent would (`novanet agent --host tempest-compute-1`), once. No
# agent runs; the service reads "down" after service_down_time, which no test checks.
curl -sf -o /dev/null -H "X-Auth-Token: $admin_token" -H 'Content-Type: application/json' \
  "$base/novanet/v1/hosts/tempest-compute-1/report" -d '{"network_host": false}'

# Dynamic credentials: tempest creates a project and a user per test class through the identity
# admin API. Probe those calls (as tempest makes them) before choosing.
probe_dynamic() {
  "$venv/bin/python" - "$base/identity/v3" "$admin_pw" <<'PY'
import json, sys, urllib.error, urllib.request
uri, pw = sys.argv[1], sys.argv[2]
token = None
def call(method, path, body=None):
    req = urllib.request.Request(uri + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", "Accept": "application/json"})
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req) as r:
            raw = r.read()
            return r, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as e:
        sys.exit(f"{method} {path} -> {e.code}")
r, _ = call("POST", "/auth/tokens", {"auth": {
    "identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "password": pw, "domain": {"name": "Default"}}}},
    "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
token = r.headers["X-Subject-Token"]
domain = call("GET", "/domains?name=Default")[1]["domains"][0]
roles = {x["name"]: x["id"] for x in call("GET", "/roles")[1]["roles"]}
if "member" not in roles:
    roles["member"] = call("POST", "/roles", {"role": {"name": "member"}})[1]["role"]["id"]
project = call("POST", "/projects", {"project": {
    "name": "tempest-probe", "description": "tempest-probe-desc", "domain_id": domain["id"]}})[1]["project"]
user = call("POST", "/users", {"user": {
    "name": "tempest-probe-project", "password": "probe-pw", "domain_id": domain["id"]}})[1]["user"]
call("PUT", f"/projects/{project['id']}/users/{user['id']}/roles/{roles['member']}")
call("DELETE", f"/users/{user['id']}")
call("DELETE", f"/projects/{project['id']}")
PY
}
if [ "$creds_mode" = auto ]; then
  if why=$(probe_dynamic 2>&1); then
    creds_mode=dynamic
  else
    echo "tempest test: dynamic credentials unavailable ($why); using pre-provisioned accounts"
    creds_mode=preprovisioned
  fi
fi

# HOME: tempest keeps its workspace registry and a config dir under ~/.tempest.
HOME="$work" "$venv/bin/tempest" init --workspace-path "$work/workspace.yaml" "$ws" >"$work/init.log" 2>&1 ||
  { cat "$work/init.log" >&2; exit 1; }
accounts="$ws/etc/accounts.yaml"
if [ "$creds_mode" = preprovisioned ]; then
  # Each worker holds at most primary, alt, project_reader and admin at once. Members are also
  # listed as readers: tempest allocates a project_reader for tests/servers/test_servers.py even
  # when [enforce_scope] nova is off, and then never uses it.
  : >"$accounts"
  for i in $(seq $((4 * concurrency))); do
    manage project create "tempest-$i"
    manage user create "tempest-$i" --password "tempest-pw-$i" --project "tempest-$i" --role member
    printf -- "- username: tempest-%s\n  project_name: tempest-%s\n  password: tempest-pw-%s\n  roles: [member, reader]\n" \
      "$i" "$i" "$i" >>"$accounts"
  done
  for i in $(seq $((concurrency + 1))); do
    manage project create "tempest-admin-$i"
    manage user create "tempest-admin-$i" --password "tempest-admin-pw-$i" --project "tempest-admin-$i" --role admin
    printf -- "- username: tempest-admin-%s\n  project_name: tempest-admin-%s\n  password: tempest-admin-pw-%s\n  roles: [admin]\n  types: [admin]\n" \
      "$i" "$i" "$i" >>"$accounts"
  done
fi
dynamic=$([ "$creds_mode" = dynamic ] && echo True || echo False)

cat >"$ws/etc/tempest.conf" <<CONF
[DEFAULT]
debug = True
log_dir = $ws/logs
log_file = tempest.log

[oslo_concurrency]
lock_path = $ws/tempest_lock

[auth]
use_dynamic_credentials = $dynamic
test_accounts_file = $accounts
admin_username = admin
admin_password = $admin_pw
admin_project_name = admin
admin_domain_name = Default
default_credentials_domain_name = Default
create_isolated_networks = False

[identity]
auth_version = v3
uri_v3 = $base/identity/v3
region = RegionOne
v3_endpoint_type = public

[identity-feature-enabled]
api_v2 = False
api_v3 = True

[service_available]
# glance: novanet's image API (list and show, at /image/v2) is enough, and tempest 35.0.0's
# admin compute tests need an image client (BaseV2ComputeAdminTest.setup_clients).
nova = True
neutron = False
glance = True
cinder = False
swift = False
horizon = False

[compute]
image_ref = ed8b2a37-5535-4a5f-a615-443513036d71
image_ref_alt = 5c9a5c0e-7b8f-4a54-9d6f-6a3e0d3f1a01
flavor_ref = 1
flavor_ref_alt = 2
fixed_network_name = private
min_microversion = 2.1
max_microversion = 2.35
region = RegionOne
endpoint_type = publicURL
build_interval = 1
build_timeout = 60
min_compute_nodes = 1

[compute-feature-enabled]
# Servers are records (no hypervisor driver here): stop, start and reboot change their state,
# but nothing else of a guest's lifecycle, no consoles, no disks.
change_password = False
console_output = False
resize = False
pause = False
shelve = False
shelve_migrate = False
suspend = False
cold_migration = False
live_migration = False
live_migrate_back_and_forth = False
block_migration_for_live_migration = False
can_migrate_between_any_hosts = False
vnc_console = False
spice_console = False
rdp_console = False
serial_console = False
rescue = False
stable_rescue = False
interface_attach = False
snapshot = False
nova_cert = False
personality = False
attach_encrypted_volume = False
config_drive = False
swap_volume = False
volume_backed_live_migration = False
volume_multiattach = False
disk_config = False
# Tempest gates nova-network's resetNetwork and injectNetworkInfo actions and writable server
# metadata behind this flag; records serve them (os-agents, also behind it, is on the skip list).
xenapi_apis = True
ide_bus = False
unified_limits = False

[image-feature-enabled]
api_v1 = False
api_v2 = True

[network]
# nova-network's floating pool: tempest allocates from floating_network_name, and runs the
# association tests only when public_network_id is set (with nova-network it is the pool too).
floating_network_name = public
public_network_id = public

[network-feature-enabled]
floating_ips = True

[validation]
run_validation = False
CONF

status=0
(cd "$ws" && HOME="$work" OS_TEST_TIMEOUT=300 timeout --kill-after=30 "$run_timeout" "$venv/bin/tempest" run \
  --regex "$regex" --exclude-list "$skip_list" --concurrency "$concurrency") >"$work/run.log" 2>&1 || status=$?

if [ -n "${TEMPEST_LOG_DIR:-}" ]; then
  mkdir -p "$TEMPEST_LOG_DIR"
  cp "$ws/etc/tempest.conf" "$ws/logs/tempest.log" "$work/run.log" "$work/server.log" "$TEMPEST_LOG_DIR/" 2>/dev/null || true
  [ -f "$accounts" ] && cp "$accounts" "$TEMPEST_LOG_DIR/"
  (cd "$ws" && "$venv/bin/stestr" last --subunit >"$TEMPEST_LOG_DIR/run.subunit" 2>/dev/null) || true
fi

count() { awk -v k=" - $1:" 'index($0, k) == 1 { n = $NF } END { print n + 0 }' "$work/run.log"; }
passed=$(count Passed); failed=$(count Failed); skipped=$(count Skipped)
grep -E '\.\.\. FAILED$' "$work/run.log" | sed -E 's/^\{[0-9]+\} //; s/ \[[0-9.]+s\] \.\.\. FAILED$//' | sort >"$work/failed" || true
if [ "$status" = 124 ]; then
  echo "tempest test FAILED: the run took more than ${run_timeout}s" >&2
elif [ "$status" != 0 ] || [ "$failed" != 0 ] || [ "$passed" = 0 ]; then
  echo "tempest test FAILED (credentials: $creds_mode); failed tests:" >&2
  sed 's/^/  /' "$work/failed" >&2
  [ -s "$work/failed" ] || tail -n 40 "$work/run.log" >&2
  [ "$status" != 0 ] || status=1
fi
echo "tempest: $passed passed, $failed failed, $skipped skipped"
exit "$status"
