#!/bin/bash
# Runs the execute scenario once against a fresh node on its dev chain and
# prints: node binary, confirmed, node CPU ms per intent, floor ms, ratio,
# signal-to-confirmed p50 ms, confirmed per second; then the dev chain's
# share of the node's CPU (a 5 s profile from the crossing), the node's CPU
# per intent without it, and that over the floor.
#   bench/execpair.sh NODE_BINARY BENCH_BINARY OUT.json
# Alternate two builds by calling it in turn (BENCHMARKS.md, "Execution").
set -u
D=$(mktemp -d)
# A build that bounds new vaults is told not to (the scenario makes 200).
unbound=""
if "$1" -h 2>&1 | grep -q -- -new-vaults-per-ip; then unbound="-new-vaults-per-ip 0 -new-vaults-per-minute 0"; fi
# shellcheck disable=SC2086
"$1" $unbound -data "$D" -listen 127.0.0.1:18090 -signal-token T -demo=false -dev-chain-rpc 127.0.0.1:18545 -log-level warn \
  -max-pending-per-ip 0 -signin-rate-per-ip 0 -command-rate 100000 -command-burst 100000 -debug-listen 127.0.0.1:16063 > "$D.log" 2>&1 &
P=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18090/healthz >/dev/null && break; sleep 0.2; done
timeout 600 "$2" execute -node http://127.0.0.1:18090 -debug http://127.0.0.1:16063 -token T -vaults 200 -json "$3" >/dev/null 2>&1
kill $P; wait $P 2>/dev/null
rm -rf "$D" "$D.log"
python3 -c "import json,sys;d=json.load(open(sys.argv[2]))['results'];print(sys.argv[1], d['confirmed'], round(d['node_cpu_ms_per_intent'],2), round(d['floor_cpu_ms'],3), round(d['cpu_per_intent_over_floor'],1), round(d['signal_to_confirmed_p50_ms']), round(d['confirmed_per_s'],1), round(d.get('chain_share_of_node_cpu',0),3), round(d.get('node_cpu_ms_per_intent_without_chain',0),2), round(d.get('cpu_without_chain_over_floor',0),1))" "$1" "$3"
