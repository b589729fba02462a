#!/usr/bin/env bash
# Network benchmark (root): time from creating a NIC through the API to its first packet
# answered across the overlay, p50/p99 over COUNT NICs, with the real server, etcd and two
# agents in a netns lab.
#   bench/nic.sh [COUNT=20]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup >/dev/null
cargo build --quiet --release -p yunhan --bin yunhan --example nic_bench
exec "${CARGO_TARGET_DIR:-target}/release/examples/nic_bench" "$@"
