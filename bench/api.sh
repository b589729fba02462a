#!/usr/bin/env bash
# API benchmark: volume create + get through the REST API from N concurrent
# clients, `yunhan up` (embedded store) vs `yunhan server` on a 3-member etcd
# cluster started by this run. Prints ops/s, p50/p99 and the ratio.
#   bench/api.sh [COUNT] [CLIENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p yunhan --bin yunhan --example api_bench
exec "${CARGO_TARGET_DIR:-target}/release/examples/api_bench" "$@"
