#!/usr/bin/env bash
# Storage benchmark: 4 KiB random and 1 MiB sequential read/write on a local
# sparse RAW file vs an RBD image on a dev Ceph cluster started by this run
# (scripts/ceph-dev: 1 mon, 1 mgr, 3 bluestore OSDs on sparse files, pool of
# size 3 / min_size 2), same run, same disk; prints a table and local/RBD ratios.
#
#   bench/storage.sh [--size 1G] [--runtime 10]
#
# fio drives both: libaio + O_DIRECT on the file (what QEMU's `cache.direct=on,
# aio=native` does), the rbd engine (librbd, the library QEMU's rbd driver uses)
# on the image. Each target is filled by the sequential write first, so reads
# hit real data, not holes / unallocated objects. Results: docs/BENCHMARKS.md,
# section "Storage".
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=1G
RUNTIME=10
while (($#)); do
    case $1 in
    --size) SIZE=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    *) echo "usage: $0 [--size 1G] [--runtime 10]" >&2; exit 2 ;;
    esac
done

command -v fio >/dev/null || { echo "fio missing: run scripts/setup" >&2; exit 1; }
fio --enghelp 2>/dev/null | grep -qw rbd || { echo "this fio has no rbd engine" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/yunhan-storage-bench.XXXXXX)
CLUSTER=$WORK/ceph
cleanup() {
    scripts/ceph-dev down "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "starting the dev Ceph cluster…" >&2
CONF=$(scripts/ceph-dev up "$CLUSTER" | tail -n 1)
export CEPH_CONF=$CONF
ceph osd pool create bench 32 32 replicated >/dev/null 2>&1
ceph osd pool set bench size 3 >/dev/null 2>&1
ceph osd pool set bench min_size 2 >/dev/null 2>&1
rbd pool init bench
rbd create --size "$SIZE" bench/img
truncate -s "$SIZE" "$WORK/local.raw"

# name rw bs iodepth
TESTS=(
    "seq-write-1M write 1M 8"
    "seq-read-1M read 1M 8"
    "rand-write-4K randwrite 4k 32"
    "rand-read-4K randread 4k 32"
)

run_fio() { # target name rw bs depth → "iops MiB/s"
    local target=$1 name=$2 rw=$3 bs=$4 depth=$5 engine
    if [[ $target == local ]]; then
        engine=(--ioengine=libaio --direct=1 --filename="$WORK/local.raw")
    else
        engine=(--ioengine=rbd --clientname=admin --pool=bench --rbdname=img)
    fi
    local limit=(--time_based --runtime="$RUNTIME")
    # The sequential write fills the whole target once (no time limit).
    [[ $name == seq-write-1M ]] && limit=()
    fio --name="$name" --rw="$rw" --bs="$bs" --iodepth="$depth" --size="$SIZE" \
        --numjobs=1 --randrepeat=0 --norandommap "${limit[@]}" "${engine[@]}" \
        --output-format=json 2>/dev/null |
        python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]
side = j["read"] if j["read"]["io_bytes"] else j["write"]
lat = side.get("clat_ns", {}).get("percentile", {}).get("99.000000", 0) / 1e6
print("%.0f %.1f %.2f" % (side["iops"], side["bw_bytes"] / 2**20, lat))'
}

declare -A R
for t in "${TESTS[@]}"; do
    read -r name rw bs depth <<<"$t"
    for target in local rbd; do
        echo "fio $name on $target…" >&2
        R[$name.$target]=$(run_fio "$target" "$name" "$rw" "$bs" "$depth")
    done
done

echo
echo "fio, $SIZE target, ${RUNTIME}s per test (seq write: one full pass), $(nproc) vCPUs"
printf '| %-14s | %-28s | %-28s | %-12s |\n' test "local RAW (libaio, O_DIRECT)" "RBD (librbd, size 3)" "local / RBD"
printf '|%s|%s|%s|%s|\n' "----------------" "------------------------------" "------------------------------" "--------------"
for t in "${TESTS[@]}"; do
    read -r name _ <<<"$t"
    read -r li lb ll <<<"${R[$name.local]}"
    read -r ri rb rl <<<"${R[$name.rbd]}"
    ratio=$(python3 -c "print(f'{$li / max($ri, 1):.1f}x')")
    printf '| %-14s | %7s IOPS %7s MiB/s p99 %5s ms | %7s IOPS %7s MiB/s p99 %5s ms | %-12s |\n' \
        "$name" "$li" "$lb" "$ll" "$ri" "$rb" "$rl" "$ratio"
done
