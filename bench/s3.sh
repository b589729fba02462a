#!/usr/bin/env bash
# S3 benchmark: PUT and GET of 4 KiB and 4 MiB objects through the S3 gateway
# (radosgw) of a dev Ceph cluster this run starts (scripts/ceph-dev with
# CEPH_DEV_RGW=1: 1 mon, 1 mgr, 3 bluestore OSDs on sparse files, pools of size
# 3) and tears down, against `rados bench` on the gateway's own data pool
# (default.rgw.buckets.data) in the same run, same sizes, same concurrency:
# what the gateway costs on top of RADOS.
#
#   bench/s3.sh [--duration 10] [--threads 16] [--procs 2]
#
# The S3 side is bench/s3/client.py (boto3, one client and connection per
# thread, the threads spread over --procs processes so Python's GIL is not the
# limit, fixed duration; GET reads back the objects the PUT phase wrote, in
# random order). The client runs on the same 2 vCPUs as the cluster: the table
# shows its CPU use. The user is a tenant's user, as the platform makes them
# (<tenant>$project). rados bench: `write -b SIZE -O SIZE` then `seq` with
# -t THREADS. Prints a table: op, size, ops/s, MiB/s, p50/p99 ms, rados bench
# MiB/s (and its mean latency), S3/rados ratio, the gateway's CPU time per
# operation (and its share of one core), the client's share of one core.
# Results: docs/BENCHMARKS.md, section "S3 (object storage)". Needs boto3
# (scripts/setup --test).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1ms3-bench:\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

DURATION=10
THREADS=16
PROCS=2
while (($#)); do
    case $1 in
    --duration) DURATION=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --procs) PROCS=$2; shift 2 ;;
    *) echo "usage: $0 [--duration 10] [--threads 16] [--procs 2]" >&2; exit 2 ;;
    esac
done
[[ $DURATION =~ ^[0-9]+$ && $THREADS =~ ^[0-9]+$ && $PROCS =~ ^[0-9]+$ ]] ||
    die "--duration, --threads and --procs take whole numbers"

python3 -c 'import boto3' 2>/dev/null || die "boto3 missing: run scripts/setup --test"
command -v rados >/dev/null || die "rados missing: run scripts/setup"

WORK=$(mktemp -d /var/tmp/yunhan-s3-bench.XXXXXX)
CLUSTER=$WORK/ceph
cleanup() {
    scripts/ceph-dev down "$CLUSTER" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

log "starting the dev Ceph cluster with its S3 gateway…"
CONF=$(CEPH_DEV_RGW=1 scripts/ceph-dev up "$CLUSTER" | tail -n 1)
export CEPH_CONF=$CONF
S3_ENDPOINT=$(cat "$CLUSTER/rgw-endpoint")
S3_ACCESS_KEY=BENCH$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
S3_SECRET_KEY=$(head -c 30 /dev/urandom | base64 | tr -d '/+=\n')
export S3_ENDPOINT S3_ACCESS_KEY S3_SECRET_KEY
radosgw-admin user create --tenant bench --uid project --display-name bench \
    --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" >/dev/null
CLIENT=(python3 bench/s3/client.py --bucket bench --threads "$THREADS" --procs "$PROCS")
"${CLIENT[@]}" mkbucket
# The first write creates the data pool; rados bench needs it.
"${CLIENT[@]}" put --size 4096 --duration 1 --keys "$WORK/warmup.json" >/dev/null
POOL=default.rgw.buckets.data
ceph osd pool get "$POOL" size >/dev/null || die "the gateway's data pool $POOL does not exist"

rados_bench() { # mode size → "MiB/s mean-latency-ms"
    local mode=$1 size=$2 extra=()
    [[ $mode == write ]] && extra=(-b "$size" -O "$size" --no-cleanup)
    rados bench -p "$POOL" "$DURATION" "$mode" -t "$THREADS" --run-name "rb$size" \
        "${extra[@]}" 2>&1 | python3 -c '
import re, sys
t = sys.stdin.read()
bw = re.search(r"^Bandwidth \(MB/sec\):\s+([\d.]+)", t, re.M)
lat = re.search(r"^Average Latency\(s\):\s+([\d.]+)", t, re.M)
if not bw or not lat:
    sys.exit("rados bench gave no result:\n" + t[-2000:])
print("%.1f %.2f" % (float(bw.group(1)), float(lat.group(1)) * 1000))'
}

# The gateway's own CPU time (user + system, in clock ticks).
RGW_PID=$(cat "$CLUSTER/run/client.rgw.dev.pid")
TCK=$(getconf CLK_TCK)
rgw_ticks() { awk '{print $14 + $15}' "/proc/$RGW_PID/stat"; }

declare -A R S G
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for size in 4096 4194304; do
    log "rados bench, ${size}-byte objects: write, then seq…"
    R[put.$size]=$(rados_bench write "$size")
    R[get.$size]=$(rados_bench seq "$size")
    rados -p "$POOL" cleanup --run-name "rb$size" >/dev/null 2>&1
    for op in put get; do
        log "S3 $op, ${size}-byte objects, $THREADS threads, ${DURATION}s…"
        t0=$(rgw_ticks)
        S[$op.$size]=$("${CLIENT[@]}" "$op" --size "$size" --duration "$DURATION" --keys "$WORK/keys.$size.json")
        G[$op.$size]=$(($(rgw_ticks) - t0))
    done
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "S3 through radosgw vs rados bench on its data pool ($POOL, size 3), ${DURATION}s per test, $THREADS concurrent ops ($PROCS client processes), $(nproc) vCPUs"
printf '| %-3s | %-5s | %6s | %6s | %7s | %7s | %-23s | %-8s | %-13s | %s |\n' \
    op size ops/s MiB/s "p50 ms" "p99 ms" "rados bench MiB/s (lat)" "S3/rados" "gateway CPU" "client CPU"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----- ------- -------- -------- --------- --------- \
    ------------------------- ---------- --------------- -----------
for size in 4096 4194304; do
    for op in put get; do
        read -r rb rl <<<"${R[$op.$size]}"
        python3 - "$op" "$size" "$rb" "$rl" "${S[$op.$size]}" "${G[$op.$size]}" "$TCK" <<'EOF'
import json, sys
op, size, rb, rl, s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5])
gw_s = int(sys.argv[6]) / int(sys.argv[7])
label = "4 KiB" if size == 4096 else "4 MiB"
ratio = s["mib_s"] / rb if rb else 0
err = f", {s['errors']} errors" if s["errors"] else ""
print("| %-3s | %-5s | %6.0f | %6.1f | %7.1f | %7.1f | %7.1f (%6.1f ms) | %7.2fx | %4.2f ms/op %3.0f%% | %4.0f%%%s |" % (
    op.upper(), label, s["ops_s"], s["mib_s"], s["p50_ms"], s["p99_ms"], rb, rl, ratio,
    1000 * gw_s / s["ops"], 100 * gw_s / s["seconds"], 100 * s["client_cpu_s"] / s["seconds"], err))
EOF
    done
done
echo "load average (1/5/15 min) before: $load_before, after: $load_after"
