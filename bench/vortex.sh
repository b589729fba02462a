#!/usr/bin/env bash
# Vortex benchmarks (root needed): XDP ns/packet via BPF_PROG_TEST_RUN for a
# conntrack hit and miss, conntrack memory per flow, Maglev table build time.
# Results are what docs/BENCHMARKS.md "## Vortex" records.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-vortex}
echo "== BPF_PROG_TEST_RUN (release build of the loader; the XDP object is the same -O2 build)"
cargo run -q --release -p yunhan-vortex --example testrun_bench
echo "== Maglev table build (criterion)"
cargo bench -q -p yunhan-vortex --bench maglev -- --noplot 2>&1 | grep -E "^maglev_build|time:"
