#!/bin/bash
# Runs the storm scenario once against a fresh node and prints: node
# binary, first sign-ins per second, their p50/p99, node CPU per sign-in,
# then the resume storm: all resumed within, p99, node CPU per resume.
#   bench/stormpair.sh NODE_BINARY BENCH_BINARY SIGNINS OUT.json [restart]
# With "restart" the node is stopped (SIGTERM) and started again on the same
# data between the two storms; without it every socket is dropped instead.
# Alternate two builds by calling it in turn (BENCHMARKS.md, "Storms").
set -u
D=$(mktemp -d)
cat > "$D.start" <<EOS
"$1" -data "$D/data" -listen 127.0.0.1:18090 -signal-token T -demo=false -chain-rpc none -log-level warn \\
  -command-rate 100000 -command-burst 100000 -max-pending-per-ip 0 -signin-rate-per-ip 0 \\
  -new-vaults-per-ip 0 -new-vaults-per-minute 0 >> "$D.log" 2>&1 &
echo \$! > "$D.pid"
for _ in \$(seq 1 600); do curl -sf http://127.0.0.1:18090/healthz >/dev/null && break; sleep 0.1; done
EOS
cat > "$D.restart" <<EOS
P=\$(cat "$D.pid"); kill -TERM \$P; while kill -0 \$P 2>/dev/null; do sleep 0.05; done
. "$D.start"
EOS
. "$D.start"
restart=()
if [ "${5:-}" = restart ]; then restart=(-restart ". $D.restart"); fi
timeout 1200 "$2" storm -node http://127.0.0.1:18090 -token T -signins "$3" "${restart[@]}" -json "$4" >/dev/null 2>&1
kill "$(cat "$D.pid")"; while kill -0 "$(cat "$D.pid")" 2>/dev/null; do sleep 0.05; done
rm -rf "$D" "$D.log" "$D.start" "$D.restart" "$D.pid"
python3 - "$1" "$4" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))['results']
print(sys.argv[1], ' '.join('%s=%.1f' % (k, d.get(k, 0)) for k in ('signins_per_s', 'signin_p50_ms', 'signin_p99_ms',
      'signin_node_cpu_ms_each', 'restart_ms', 'resumed', 'resume_all_ms', 'resume_p99_ms', 'resume_node_cpu_ms_each')))
PY
