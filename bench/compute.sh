#!/usr/bin/env bash
# Compute benchmark: POST /v1/instances → Running and → guest readiness marker,
# p50/p99 over TOTAL VMs started WAVE at a time on one host (`yunhan up`).
#   bench/compute.sh [TOTAL=20] [WAVE=10] [kernel|disk]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup >/dev/null
cargo build --quiet --release -p yunhan --bin yunhan --example compute_bench
exec "${CARGO_TARGET_DIR:-target}/release/examples/compute_bench" "$@"
