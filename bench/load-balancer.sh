#!/usr/bin/env bash
# Load-balancer benchmarks (root; `yunhan up --netns` on one box, two TCG guests serving
# HTTP): requests/s through the layer-7 path (elastic IP → HAProxy → guests) against
# the guests straight from the VPC's router in the same run, and `lb member add` → the
# first request the new member serves (p50/p99). The layer-4 engines (Vortex, HAProxy
# `mode tcp`, nftables DNAT) are compared on their own rig by bench/vortex-compare.sh.
#   CLIENTS=8 SECS=10 ROUNDS=10 bench/load-balancer.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup >/dev/null
exec cargo test -q -p yunhan --test bench_load_balancer -- --ignored --nocapture --test-threads 1
