#!/usr/bin/env bash
# Store benchmark: CAS creates (StoreExt::create) of ~500-byte JSON docs, then
# gets, from N concurrent clients, against the embedded store (redb in a temp
# dir) and a 3-member etcd cluster on loopback started by this run; prints a
# table (ops/s, p50/p99/max latency) and the embedded/etcd ratio.
#
#   bench/store.sh [--count 20000] [--clients 64] [--members 3] [--only embedded|etcd]
#
# Needs `etcd` on PATH (scripts/setup installs etcd-server). Method and results:
# docs/BENCHMARKS.md, section "Store".
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p yunhan-store --example store_bench
exec "${CARGO_TARGET_DIR:-target}/release/examples/store_bench" "$@"
