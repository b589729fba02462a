#!/usr/bin/env bash
# Monitoring benchmarks (root; `yunhan up` on one box, TCG test guests): the CPU time the
# `yunhan up` process spends per VM per 10 s collection interval (with VMS guests against
# no guest, over INTERVALS intervals each, in the same run), p50/p99 of a month's and of
# 10 minutes' CPU of one VM through `GET /v1/instances/{id}/metrics` (QUERIES requests
# each), and the history's series and file size; then the pure query of a month of one
# series (criterion, `history/query_month`).
#   VMS=3 INTERVALS=6 QUERIES=50 bench/monitoring.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup >/dev/null
cargo test -q -p yunhan --test bench_monitoring -- --ignored --nocapture --test-threads 1
exec cargo bench -q -p yunhan-metrics --bench history -- query_month
