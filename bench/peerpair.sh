#!/bin/bash
# Runs the peer scenario: the same fan-out on a fresh Spells node and on a
# Centrifugo v6 the bench starts, side by side in one run; each server on
# CPU 0, the bench on CPU 1. Builds Centrifugo from its Go module once
# (kept in the user's cache). The node's vaults doze 20 s after their last
# change (-idle-after), and the rounds start once every vault file is
# closed: both servers at rest with their dashboards connected.
#   bench/peerpair.sh NODE_BINARY BENCH_BINARY DASHBOARDS OUT.json [bench flags...]
set -u
node_bin=$1 bench_bin=$2 dashboards=$3 out=$4
shift 4
cf_version=v6.9.1
cf_dir="${XDG_CACHE_HOME:-$HOME/.cache}/spells/centrifugo-$cf_version"
if [ ! -x "$cf_dir/centrifugo" ]; then
  echo "== building centrifugo $cf_version (once)" >&2
  mkdir -p "$cf_dir"
  (cd /tmp && GOBIN="$cf_dir" go install "github.com/centrifugal/centrifugo/v6@$cf_version") || exit 1
fi
D=$(mktemp -d)
taskset -c 0 "$node_bin" -data "$D/data" -listen 127.0.0.1:18091 -signal-token T -demo=false -chain-rpc none -log-level warn \
  -command-rate 100000 -command-burst 100000 -max-pending-per-ip 0 -signin-rate-per-ip 0 \
  -new-vaults-per-ip 0 -new-vaults-per-minute 0 -max-connections 0 -idle-after 20s > "$D.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do curl -sf http://127.0.0.1:18091/readyz >/dev/null && break; sleep 0.1; done
timeout 1800 taskset -c 1 "$bench_bin" peer -node http://127.0.0.1:18091 -token T -centrifugo "$cf_dir/centrifugo" -cpus 0 \
  -dashboards "$dashboards" -settle 2m -json "$out" "$@"
rc=$?
kill "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
if [ $rc -ne 0 ]; then tail -20 "$D.log" >&2; fi
rm -rf "$D" "$D.log"
exit $rc
