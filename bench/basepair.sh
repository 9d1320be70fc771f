#!/bin/bash
# Runs the baseline scenario once against a fresh node and prints: node
# binary, then for the 1 % tick and the mass crossing: Spells' time to the
# last intent durable, the sweep's time beside it, their ratio, and (on a
# node with a firing journal) the time until every vault applied its
# firing to its file.
#   bench/basepair.sh NODE_BINARY BENCH_BINARY USERS OUT.json
# Alternate two builds by calling it in turn (BENCHMARKS.md, "The mass crossing").
set -u
D=$(mktemp -d)
"$1" -data "$D" -listen 127.0.0.1:18090 -signal-token T -demo=false -chain-rpc none -log-level warn \
  -command-rate 100000 -command-burst 100000 -max-pending-per-ip 0 -signin-rate-per-ip 0 \
  -new-vaults-per-ip 0 -new-vaults-per-minute 0 -debug-listen 127.0.0.1:16060 > "$D.log" 2>&1 &
P=$!
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18090/healthz >/dev/null && break; sleep 0.2; done
timeout 7200 "$2" baseline -node http://127.0.0.1:18090 -debug http://127.0.0.1:16060 -token T -users "$3" -json "$4" >/dev/null 2>&1
# The journal's writes (count, seconds in all), on a node that has one.
W=$(curl -s http://127.0.0.1:18090/metrics | awk '/^spells_firing_journal_write_seconds_(count|sum)/{printf "%s=%s ", $1, $2}')
kill $P; wait $P 2>/dev/null
rm -rf "$D" "$D.log"
python3 - "$1" "$4" <<'PY'
import json, sys
d = json.load(open(sys.argv[2]))['results']
out = [sys.argv[1]]
for t in ('few', 'crossing'):
    s, b = d.get(t + '_spells_ms', 0), d.get(t + '_baseline_sweep_ms', 0)
    out += [t, 'spells_ms=%.0f' % s, 'p50_ms=%.0f' % d.get(t + '_spells_p50_ms', 0), 'sweep_ms=%.0f' % b,
            'spells/sweep=%.2f' % (s / b if b else 0), 'vs60s_p99=%.1fx' % d.get(t + '_speedup_p99_vs_scheduled', 0),
            'cpu_ms=%.0f' % d.get(t + '_spells_node_cpu_ms', 0), 'applied_ms=%.0f' % d.get(t + '_spells_applied_ms', 0)]
print(' '.join(out))
PY
echo "  $W"
