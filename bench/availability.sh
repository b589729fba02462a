#!/usr/bin/env bash
# Availability benchmarks (root; real etcd, Ceph and TCG guests): live migration total
# time and downtime of an idle 256 MiB guest without and with two hot-plugged data
# volumes and of a memory-busy one (p50/p99), a cold move's time, and HA time from host
# loss to the VM Running elsewhere and to its next boot (p50/p95).
#   ROUNDS=10 bench/availability.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup >/dev/null
exec cargo test -q -p yunhan --test bench_availability -- --ignored --nocapture --test-threads 1
