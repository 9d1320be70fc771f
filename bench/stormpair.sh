#!/bin/bash
# Runs the storm scenario once against a fresh node and prints: node
# binary, first sign-ins per second, their p50/p99, node CPU per sign-in,
# then the resume storm: all resumed within, p99, node CPU per resume.
#   bench/stormpair.sh NODE_BINARY BENCH_BINARY SIGNINS OUT.json
# Alternate two builds by calling it in turn (BENCHMARKS.md, "Storms").
set -u
D=$(mktemp -d)
"$1" -data "$D" -listen 127.0.0.1:18090 -signal-token T -demo=false -chain-rpc none -log-level warn \
  -command-rate 100000 -command-burst 100000 -max-pending-per-ip 0 -signin-rate-per-ip 0 \
  -new-vaults-per-ip 0 -new-vaults-per-minute 0 > "$D.log" 2>&1 &
P=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18090/healthz >/dev/null && break; sleep 0.2; done
timeout 1200 "$2" storm -node http://127.0.0.1:18090 -token T -signins "$3" -json "$4" >/dev/null 2>&1
kill $P; wait $P 2>/dev/null
rm -rf "$D" "$D.log"
python3 - "$1" "$4" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))['results']
print(sys.argv[1], ' '.join('%s=%.1f' % (k, d.get(k, 0)) for k in ('signins_per_s', 'signin_p50_ms', 'signin_p99_ms',
      'signin_node_cpu_ms_each', 'resumed', 'resume_all_ms', 'resume_p99_ms', 'resume_node_cpu_ms_each')))
PY
