#!/usr/bin/env bash
# The main job: the seed tutorial's cloud (one controller, two compute nodes, a VM getting
# 10.0.0.2) in network namespaces. Leaves the lab running; `scripts/lab.sh down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -q
bin=target/release/novanet
if [ "${1:-up}" = "down" ]; then
  exec "$bin" lab down
fi
"$bin" lab down >/dev/null 2>&1 || true
"$bin" lab up
echo
echo "Try: $bin lab exec controller -- novanet list"
echo "     $bin lab exec cirros -- curl -s http://169.254.169.254/2009-04-04/meta-data/"
echo "Remove it: scripts/lab.sh down"
