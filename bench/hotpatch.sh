#!/usr/bin/env bash
# Hot-patching stop-time benchmark (`yunhan hotpatch apply`/`revert`: the stress test calls
# the same engine in-process, so the stop windows are the ones the command prints):
# 100 apply/revert cycles (200 stop-the-world windows)
# on a PIE target whose threads spin in the patched function, plus 3 threads parked in
# syscalls. Runs the same test CI runs (crates/hotpatch/tests/e2e_stress.rs), built in
# release, once with 4 spinning threads (more than the cores of a 2-core box: threads
# must wait for a CPU to reach their stop) and once with 1. Needs root, gcc, libc6-dev.
# Prints p50/p99/max of the stop window and of the fully-frozen window, in microseconds.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-hotpatch}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo test --release -q -p yunhan-hotpatch --test e2e_stress --no-run
printf '%-8s %-6s %10s %10s %10s   %12s %12s %12s\n' workers ops stop_p50 stop_p99 stop_max frozen_p50 frozen_p99 frozen_max
for workers in 4 1; do
    HOTPATCH_STRESS_WORKERS=$workers HOTPATCH_BENCH_OUT="$out/w$workers.json" \
        cargo test --release -q -p yunhan-hotpatch --test e2e_stress >/dev/null 2>&1
    python3 - "$out/w$workers.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s, f = d["stop_us"], d["frozen_us"]
print(f'{d["spinning_workers"]:<8} {d["operations"]:<6} {s["p50"]:>8}us {s["p99"]:>8}us {s["max"]:>8}us   {f["p50"]:>10}us {f["p99"]:>10}us {f["max"]:>10}us')
PY
done
echo "load average: $(cut -d" " -f1-3 /proc/loadavg), $(nproc) cores"
