#!/usr/bin/env bash
# VM root disks on Ceph: an RBD copy-on-write clone vs a full copy, same run,
# same dev cluster (scripts/ceph-dev: 3 OSDs, pool size 3 / min_size 2).
#
#   bench/storage-clone.sh [--image-mib 256] [--count 3]
#
# - clone: `yunhan volume create rootN --image IMG --size 20GiB --pool ceph
#   --bootable --wait` (the first one also imports the image into the pool,
#   once), then `yunhan vm create --boot-volume rootN --wait` (→ Running);
# - full copy: what a root disk costs without clones — `qemu-img convert` of
#   the image into a new RBD image, grown to 20 GiB;
# - local: `yunhan vm create --wait` on the local pool (a sparse copy of the
#   image into the VM directory).
# The image is the test guest's bootable disk with random data up to
# --image-mib, so copies move real bytes. Results: docs/storage.md.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE_MIB=256
COUNT=3
while (($#)); do
    case $1 in
    --image-mib) IMAGE_MIB=$2; shift 2 ;;
    --count) COUNT=$2; shift 2 ;;
    *) echo "usage: $0 [--image-mib 256] [--count 3]" >&2; exit 2 ;;
    esac
done

cargo build --quiet --release -p yunhan --bin yunhan
Y=$PWD/${CARGO_TARGET_DIR:-target}/release/yunhan
scripts/build-test-guest target/test-guest >/dev/null

WORK=$(mktemp -d /var/tmp/yunhan-clone-bench.XXXXXX)
chmod 0711 "$WORK" # every VM's QEMU (its own uid) traverses to its directory
export HOME=$WORK/home
mkdir -p "$HOME"
UP=
cleanup() {
    [[ -n $UP ]] && kill "$UP" 2>/dev/null && wait "$UP" 2>/dev/null || true
    # The VMs of this run only: QEMU processes whose pidfile is under WORK.
    for f in "$WORK"/data/agent/vms/*/qemu.pid; do
        [[ -f $f ]] || continue
        p=$(cat "$f")
        tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$WORK/" && kill -KILL "$p" 2>/dev/null || true
    done
    scripts/ceph-dev down "$WORK/ceph" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ms() { date +%s%3N; }
median() { tr ' ' '\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "starting the dev Ceph cluster…" >&2
CONF=$(scripts/ceph-dev up "$WORK/ceph" | tail -n 1)
"$Y" up --listen 127.0.0.1:0 --data-dir "$WORK/data" --ceph-conf "$CONF" --ceph-pool ceph \
    --ceph-failure-domain osd 2>"$WORK/up.log" &
UP=$!
for _ in $(seq 120); do grep -q "Yunhan is up" "$WORK/up.log" && break; sleep 0.5; done
grep -q "Yunhan is up" "$WORK/up.log" || { cat "$WORK/up.log" >&2; exit 1; }

img=$WORK/img.raw
cp --sparse=always target/test-guest/test-guest.raw "$img"
guest_mib=$(($(stat -c %s "$img") >> 20))
truncate -s "${IMAGE_MIB}M" "$img"
dd if=/dev/urandom of="$img" bs=1M seek="$guest_mib" count=$((IMAGE_MIB - guest_mib)) \
    conv=notrunc status=none
"$Y" image create bench --file "$img" >/dev/null

declare -a CLONE FULL VMC VML
for i in $(seq "$COUNT"); do
    t=$(ms)
    "$Y" volume create "root$i" --image bench --size 20GiB --pool ceph --bootable --wait >/dev/null
    CLONE+=($(($(ms) - t)))
done
for i in $(seq "$COUNT"); do
    t=$(ms)
    qemu-img convert -O raw "$img" "rbd:ceph/full$i:conf=$CONF"
    rbd -c "$CONF" resize --size 20G "ceph/full$i" --no-progress
    FULL+=($(($(ms) - t)))
done
for i in $(seq "$COUNT"); do
    t=$(ms)
    "$Y" vm create "vmc$i" --image bench --flavor tiny --boot-volume "root$i" --wait >/dev/null
    VMC+=($(($(ms) - t)))
    "$Y" vm delete "vmc$i" --wait >/dev/null
    t=$(ms)
    "$Y" vm create "vml$i" --image bench --flavor tiny --wait >/dev/null
    VML+=($(($(ms) - t)))
    "$Y" vm delete "vml$i" --wait >/dev/null
done
used() { rbd -c "$CONF" du "ceph/$1" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"][0]["used_size"] >> 20)'; }
vol_id() { "$Y" volume show "$1" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["id"])'; }

echo
echo "root disk of a ${IMAGE_MIB} MiB image grown to 20 GiB, $COUNT each, $(nproc) vCPUs (ms; first clone includes the one-time import)"
echo "| step | first | median | pool space used (MiB) |"
echo "|---|---|---|---|"
echo "| RBD CoW clone (volume create --image) | ${CLONE[0]} | $(echo "${CLONE[@]:1}" | median) | $(used "$(vol_id root2)") |"
echo "| full copy into RBD (qemu-img convert + resize) | ${FULL[0]} | $(echo "${FULL[@]}" | median) | $(used full2) |"
echo "| VM create → Running, root = the RBD clone | ${VMC[0]} | $(echo "${VMC[@]}" | median) | |"
echo "| VM create → Running, local pool (sparse copy of the image) | ${VML[0]} | $(echo "${VML[@]}" | median) | |"
