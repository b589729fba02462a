#!/usr/bin/env bash
# Network benchmarks on the netns lab (root): realiser apply time for one host with PORTS
# local ports, and TCP throughput overlay (guest→guest over VXLAN across two lab hosts) vs
# underlay (host→host), same run, with iperf3. The compiler benchmark is criterion:
#   cargo bench -p yunhan-net --bench compile
#   bench/net.sh [PORTS=500] [SECONDS=5]
# Experiments: NET_BENCH_SETUP='<sh snippet>' runs before the iperf3 rounds, with $HA $HB
# (host namespaces), $GA $GB (guest namespaces) and $UL (underlay namespace) set.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup >/dev/null
cargo build --quiet --release -p yunhan-net --example net_bench
bin="${CARGO_TARGET_DIR:-target}/release/examples/net_bench"
"$bin" apply "${1:-500}"
"$bin" iperf "${2:-5}"
