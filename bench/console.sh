#!/usr/bin/env bash
# Web console benchmark: what the browser downloads on a first load (compressed, as sent)
# and how long until the VM list of a project with 1,000 VMs is usable, in Debian's
# Chromium driven by playwright-core (crates/console/web/bench/load.mjs).
#
#   bench/console.sh [--vms 1000] [--runs 5]
#
# Starts `yunhan server` on an embedded store in a temporary directory (no agent: the
# VMs stay Pending, which is all a list needs), makes a project with room for the VMs,
# a user with a password, the VMs through the API (8 at a time), then loads the console
# and logs in --runs times with a fresh browser profile each time (cold cache). Prints
# the script and total bytes of the first load, and per run the time from navigation to
# the first row of the VM list being clickable. Baseline, same run: the API's own answer
# to the list the page asks for first (`GET /v1/instances?limit=1000`, median of --runs,
# by curl), so the table shows what the browser adds on top of the data. Results:
# docs/BENCHMARKS.md, section
# "Web console". Needs scripts/setup --test (node, chromium, the console's packages).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1mconsole-bench:\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

VMS=1000
RUNS=5
while (($#)); do
    case $1 in
    --vms) VMS=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    *) echo "usage: $0 [--vms 1000] [--runs 5]" >&2; exit 2 ;;
    esac
done
[[ $VMS =~ ^[0-9]+$ && $RUNS =~ ^[0-9]+$ ]] || die "--vms and --runs take whole numbers"

cargo build --release -q -p yunhan
BIN=$PWD/target/release/yunhan
WORK=$(mktemp -d /tmp/yunhan-console-bench.XXXXXX)
SERVER=
cleanup() {
    [[ -n $SERVER ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

export HOME=$WORK/home
mkdir -p "$HOME"
"$BIN" server --store "$WORK/store" --listen 127.0.0.1:0 --image-dir "$WORK/images" \
    --import-dir "$WORK/import" --state-dir "$WORK/server" --rate-limit 10000 --rate-burst 10000 \
    >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do
    grep -q '^Yunhan server: API ' "$WORK/server.log" && break
    kill -0 "$SERVER" 2>/dev/null || die "the server stopped: $(tail -5 "$WORK/server.log")"
    sleep 0.1
done
URL=$(sed -n 's/^Yunhan server: API \([^,]*\),.*/\1/p' "$WORK/server.log")
[[ -n $URL ]] || die "the server did not announce its API"
y() { "$BIN" "$@"; }

log "server at $URL; making a project with $VMS VMs"
y project create bench --instances "$VMS" --vcpus "$VMS" --memory-mib $((VMS * 256)) >/dev/null
printf 'bench password\n' | y user create viewer --project bench --admin --password-stdin >/dev/null
TOKEN=$(y key create bench-key --user viewer -o json | jq -r .token)
api() { curl -sf -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' "$@"; }
IMG=$(api -X POST "$URL/v1/images" -d '{"metadata":{"name":"img"},"spec":{"os":"test"}}' | jq -r .metadata.id)
head -c 1048576 /dev/zero | api -X PUT -H 'content-type: application/octet-stream' \
    --data-binary @- "$URL/v1/images/$IMG/data" >/dev/null
export URL TOKEN
seq -w 1 "$VMS" | xargs -P 8 -I{} sh -c \
    'curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H "content-type: application/json" \
      -X POST "$URL/v1/instances" \
      -d "{\"metadata\":{\"name\":\"vm-{}\"},\"spec\":{\"image\":\"img\",\"flavor\":\"tiny\"}}"' ||
    die "creating the VMs failed"
log "$(api "$URL/v1/instances?limit=1000" | jq '.items | length') VMs; loading the console $RUNS times"

YH_URL=$URL YH_USER=viewer YH_PASSWORD='bench password' YH_RUNS=$RUNS \
    YH_BENCH_JSON=$WORK/console.json node crates/console/web/bench/load.mjs

api_ms=$(for _ in $(seq "$RUNS"); do
    api -o /dev/null -w '%{time_total}\n' "$URL/v1/instances?limit=1000"
done | sort -n | awk '{ t[NR] = $1 * 1000 } END { m = int((NR + 1) / 2); printf "%.0f", t[m] }')
page_ms=$(jq -r '.median_ms' "$WORK/console.json")
script=$(jq -r '.median_script_bytes' "$WORK/console.json")
printf '\n%-44s %10s\n' "what (median of $RUNS)" "value"
printf '%-44s %8s ms\n' "API answers GET /v1/instances?limit=1000" "$api_ms"
printf '%-44s %8s ms\n' "console: VM list usable (cold browser)" "$page_ms"
printf '%-44s %9sx\n' "ratio console / API" "$(awk -v a="$page_ms" -v b="$api_ms" 'BEGIN { printf "%.1f", a / (b > 0 ? b : 1) }')"
printf '%-44s %6.1f KiB (aim < 300)\n' "first-load script, compressed" "$(awk -v s="$script" 'BEGIN { print s / 1024 }')"
