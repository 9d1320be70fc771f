#!/bin/bash
# Runs the events scenario once against a fresh node on its dev chain and
# prints: node binary, node CPU ms per signal firing, per event firing,
# their ratio, signal-to-fired p50 ms, mined-to-fired p50 ms.
#   bench/eventspair.sh NODE_BINARY BENCH_BINARY OUT.json
# Alternate two builds by calling it in turn (BENCHMARKS.md, "Event
# conditions against the signal path").
set -u
D=$(mktemp -d)
"$1" -data "$D" -listen 127.0.0.1:18090 -signal-token T -demo=false -dev-chain-rpc 127.0.0.1:18545 -log-level warn \
  -max-pending-per-ip 0 -signin-rate-per-ip 0 -new-vaults-per-ip 0 -new-vaults-per-minute 0 -command-rate 100000 -command-burst 100000 \
  -alerts-allow-private -debug-listen 127.0.0.1:16063 > "$D.log" 2>&1 &
P=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18090/healthz >/dev/null && break; sleep 0.2; done
timeout 600 "$2" events -node http://127.0.0.1:18090 -debug http://127.0.0.1:16063 -token T -vaults 200 -rounds 5 -json "$3" >/dev/null 2>&1
kill $P; wait $P 2>/dev/null
rm -rf "$D" "$D.log"
python3 -c "import json,sys;d=json.load(open(sys.argv[2]))['results'];print(sys.argv[1], round(d['node_cpu_ms_per_signal_firing'],2), round(d['node_cpu_ms_per_event_firing'],2), round(d['event_cpu_over_signal_cpu'],2), round(d['signal_to_fired_p50_ms']), round(d['mined_to_fired_p50_ms']))" "$1" "$3"
