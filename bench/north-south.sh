#!/usr/bin/env bash
# North–south benchmarks (root; `yunhan up --netns` on one box, a TCG guest): `eip bind` to
# the first ping answered from the host (p50/p99 over ROUNDS binds), and TCP throughput
# host → guest through an elastic IP as a ratio of the same over the overlay without NAT.
# The elastic IP path during a live migration is measured by e2e_migration.
#   ROUNDS=20 bench/north-south.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup >/dev/null
exec cargo test -q -p yunhan --test bench_north_south -- --ignored --nocapture --test-threads 1
