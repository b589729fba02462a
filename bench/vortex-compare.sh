#!/usr/bin/env bash
# Vortex vs kernel baselines, measured in the same run (root needed):
#   1. UDP packets/s forwarded on veth: Vortex (XDP, DSR), Vortex in NAT mode
#      (its tc program translates and redirects: what the platform's load
#      balancers run) and an nftables DNAT load balancer (jhash and numgen maps) to the
#      same 3 backends, plus a "direct" run (client straight to one backend, no
#      LB) as the floor.
#   2. New TCP connections/s: Vortex (DSR), Vortex (NAT) and HAProxy in TCP
#      mode, same client and backends.
# Everything runs inside namespaces named yvxb<pid>-* on one bridge; all of it
# (namespaces, pinned BPF state, processes started here, by PID) is removed on
# exit, also on failure. After the build the measurement stops by itself
# within about 2 minutes (watchdog). Results: docs/BENCHMARKS.md "## Vortex".
#
# Topology (bridge br0 in ns "br"; static FDB and neighbour entries, so no
# ARP and no flooding during the runs):
#   c  10.77.0.2   client: udpblast (AF_PACKET sender), connbench
#   lv 10.77.0.11  Vortex on eth0 (VIP 10.77.1.1 udp/9 and tcp/80, DSR)
#   ln 10.77.0.12  nftables: dnat to jhash/numgen mod 3 map { backends }
#   lh 10.77.0.13  HAProxy (mode tcp, VIP on lo)
#   lt 10.77.0.14  Vortex --mode nat on eth0 (backends by address and port)
#   lr 10.77.0.15  no balancer: the kernel routes the VIP to b1 (no netfilter),
#                  the cheapest hop any balancer in a namespace can be ("hop")
#   b1..b3 10.77.0.21-23   VIP on lo; netdev-ingress nft counter+drop of
#                  udp/9 (counts delivered packets); acceptd on tcp/80
# The client reaches the VIP by a route via lv, ln or lh; only that changes.
#
# Knobs (env): PPS_SECS (3), CPS_SECS (5), ROUNDS (3), FLOWS (4096),
# CONC (64), MAX_SECS (watchdog, 150), YUNHAN (use this `yunhan` binary, skip
# the build).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "vortex-compare: needs root" >&2; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-vortex}
PPS_SECS=${PPS_SECS:-3}
CPS_SECS=${CPS_SECS:-5}
ROUNDS=${ROUNDS:-3}
FLOWS=${FLOWS:-4096}
CONC=${CONC:-64}
MAX_SECS=${MAX_SECS:-210}

P=yvxb$$
VIP=10.77.1.1
W=$(mktemp -d "/tmp/$P.XXXXXX")
NSS=(br c lv ln lh lt lr b1 b2 b3)
declare -A OCT=([c]=2 [lv]=11 [ln]=12 [lh]=13 [lt]=14 [lr]=15 [b1]=21 [b2]=22 [b3]=23)
PIDS=()
ACCEPTD=()
ip_of() { echo "10.77.0.${OCT[$1]}"; }
mac_of() { printf '02:77:00:00:00:%02x' "${OCT[$1]}"; }
# Foreground only: a function run with & is a subshell, whose PID is not the
# program's (background programs call nsenter directly, so $! is theirs).
nsx() { local n=$1; shift; nsenter "--net=/run/netns/$P-$n" "$@"; }

cleanup() {
	set +e
	trap - EXIT INT TERM
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null
	done
	for n in "${NSS[@]}"; do ip netns del "$P-$n" 2>/dev/null; done
	rm -rf "/sys/fs/bpf/yunhan-vortex-$P" "/sys/fs/bpf/yunhan-vortex-$P-nat" "$W"
}
trap cleanup EXIT
trap 'echo "vortex-compare: interrupted" >&2; exit 130' INT TERM

echo "== build (release yunhan, C helpers, XDP_PASS object)"
if [ -z "${YUNHAN:-}" ]; then
	cargo build -q --release -p yunhan --bin yunhan
	YUNHAN=$CARGO_TARGET_DIR/release/yunhan
fi
for f in udpblast connbench acceptd; do
	gcc -O2 -Wall -o "$W/$f" "bench/vortex/$f.c"
done
clang -O2 -g -target bpf "-I/usr/include/$(uname -m)-linux-gnu" -c crates/vortex/bpf/pass.bpf.c -o "$W/pass.bpf.o"

# Watchdog: the measurement phase ends by itself.
(
	trap 'kill "$sp" 2>/dev/null; exit 0' TERM
	sleep "$MAX_SECS" &
	sp=$!
	wait "$sp"
	echo "vortex-compare: watchdog after ${MAX_SECS}s" >&2
	kill -TERM $$
) &
PIDS+=($!)

echo "== topology ($P-*)"
for n in "${NSS[@]}"; do
	ip netns add "$P-$n"
	ip -n "$P-$n" link set lo up
	nsx "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip -n "$P-br" link add br0 type bridge
# br_netfilter is built in: keep netfilter out of the bridge (the LB namespaces
# run their own hooks; the bridge only stands in for a switch).
nsx br sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-ip6tables=0 \
	net.bridge.bridge-nf-call-arptables=0 2>/dev/null || true
ip -n "$P-br" link set br0 up
for n in c lv ln lh lt lr b1 b2 b3; do
	# 2 queues each way (one per CPU, like RSS on a NIC): with one queue the
	# XDP side of a veth is a single NAPI context shared by both senders.
	ip -n "$P-$n" link add eth0 address "$(mac_of "$n")" numtxqueues 2 numrxqueues 2 type veth \
		peer name "p$n" netns "$P-br" numtxqueues 2 numrxqueues 2
	ip -n "$P-br" link set "p$n" master br0 up
	bridge -n "$P-br" fdb replace "$(mac_of "$n")" dev "p$n" master static
	ip -n "$P-$n" addr add "$(ip_of "$n")/24" dev eth0
	ip -n "$P-$n" link set eth0 up
	nsx "$n" sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.core.somaxconn=4096 \
		net.ipv4.tcp_max_syn_backlog=8192
done
neigh() { # neigh NS PEER...
	local n=$1 p; shift
	for p in "$@"; do ip -n "$P-$n" neigh replace "$(ip_of "$p")" lladdr "$(mac_of "$p")" dev eth0 nud permanent; done
}
neigh c lv ln lh lt lr b1 b2 b3
neigh lr c b1
neigh ln c b1 b2 b3
neigh lh c b1 b2 b3
neigh lt c b1 b2 b3
for b in b1 b2 b3; do neigh "$b" c ln lh lt; done
# XDP_TX on veth is delivered only if the peer has an XDP program.
ip -n "$P-br" link set dev plv xdp obj "$W/pass.bpf.o" sec xdp
# XDP_TX loses checksum offload state: the client must send complete checksums
# (applies to the HAProxy runs too, so both use the same client settings).
nsx c ethtool -K eth0 tx off >/dev/null
for b in b1 b2 b3 lh; do
	ip -n "$P-$b" addr add "$VIP/32" dev lo
	nsx "$b" sysctl -qw net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2
done
for b in b1 b2 b3; do
	nsx "$b" nft -f - <<-EOF
	table netdev cnt {
		chain in {
			type filter hook ingress device "eth0" priority 0; policy accept;
			udp dport 9 counter drop
		}
	}
	EOF
	nsenter "--net=/run/netns/$P-$b" "$W/acceptd" 80 &
	PIDS+=($!)
	ACCEPTD+=($!)
done

# The plain hop: forward out of the same interface to b1, no netfilter, no redirects.
nsx lr sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 \
	net.ipv4.conf.eth0.send_redirects=0 net.ipv4.conf.default.send_redirects=0
ip -n "$P-lr" route add "$VIP/32" via "$(ip_of b1)"

# nftables LB: forward out of the same interface, no redirects.
nsx ln sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0 \
	net.ipv4.conf.eth0.send_redirects=0 net.ipv4.conf.default.send_redirects=0
BMAP="0 : $(ip_of b1), 1 : $(ip_of b2), 2 : $(ip_of b3)"
nft_lb() { # nft_lb jhash|numgen
	local expr
	case $1 in
	jhash) expr="jhash ip saddr . udp sport mod 3 map { $BMAP }" ;;
	numgen) expr="numgen inc mod 3 map { $BMAP }" ;;
	esac
	nsx ln nft -f - <<-EOF
	flush ruleset
	table ip lb {
		chain pre {
			type nat hook prerouting priority dstnat; policy accept;
			ip daddr $VIP udp dport 9 dnat to $expr
		}
	}
	EOF
}

# Vortex: explicit MACs (DSR) or ports (NAT), no health checks (nothing to wait for).
vortex_toml() { # vortex_toml dsr|nat
	echo "table_size = 65537"
	for v in "udp 9" "tcp 80"; do
		set -- $v
		printf '[[vip]]\nname = "%s%s"\naddress = "%s"\nport = %s\nprotocol = "%s"\n[vip.health]\nkind = "none"\n' \
			"$1" "$2" "$VIP" "$2" "$1"
		for b in b1 b2 b3; do
			printf '[[vip.backend]]\naddress = "%s"\n' "$(ip_of "$b")"
			case $MODE in
			dsr) printf 'mac = "%s"\n' "$(mac_of "$b")" ;;
			nat) printf 'port = %s\n' "$2" ;;
			esac
		done
	done
}
start_vortex() { # start_vortex NS MODE: sets PID
	local ns=$1
	MODE=$2 vortex_toml >"$W/$ns.toml"
	nsenter "--net=/run/netns/$P-$ns" "$YUNHAN" vortex -c "$W/$ns.toml" -i eth0 --mode "$2" --name "$P-$2" \
		--status-file "$W/$ns.status.json" --conntrack-size 262144 --reset-state --detach-on-exit 2>"$W/$ns.log" &
	PID=$!
	PIDS+=($PID)
	for _ in $(seq 100); do
		grep -q '"vips"' "$W/$ns.status.json" 2>/dev/null && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "yunhan vortex ($2) not ready" >&2
	cat "$W/$ns.log" >&2
	exit 1
}
start_vortex lv dsr
VPID=$PID
start_vortex lt nat
TPID=$PID

cat >"$W/haproxy.cfg" <<EOF
global
	maxconn 8000
	nbthread 2
defaults
	mode tcp
	timeout connect 2s
	timeout client 5s
	timeout server 5s
frontend fe
	bind $VIP:80
	default_backend be
backend be
	balance roundrobin
	server b1 $(ip_of b1):80
	server b2 $(ip_of b2):80
	server b3 $(ip_of b3):80
EOF
nsenter "--net=/run/netns/$P-lh" haproxy -f "$W/haproxy.cfg" -db >"$W/haproxy.log" 2>&1 &
HPID=$!
PIDS+=($HPID)
sleep 0.5
kill -0 "$HPID" || { cat "$W/haproxy.log" >&2; exit 1; }

# --- measurement helpers ---------------------------------------------------
KSOFT=$(pgrep '^ksoftirqd/' | tr '\n' ' ')
cpu_ns() { # sum of on-CPU time (ns) of all threads of the given PIDs
	local t=0 p f a
	for p in "$@"; do
		for f in /proc/"$p"/task/*/schedstat; do
			read -r a _ <"$f" 2>/dev/null && t=$((t + a)) || true
		done
	done
	echo "$t"
}
delivered() { # packets counted (and dropped) at the backends' ingress
	local t=0 b n
	for b in b1 b2 b3; do
		n=$(nsx "$b" nft list chain netdev cnt in | sed -n 's/.*packets \([0-9]*\).*/\1/p')
		t=$((t + n))
	done
	echo "$t"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# run_pps MODE DST_MAC DST_IP: two senders (one pinned per CPU) for PPS_SECS.
# The whole forwarding chain runs in softirq on the sender's CPU (veth), so
# the senders' own CPU time + ksoftirqd is the chain's cost.
run_pps() {
	local mode=$1 mac=$2 dst=$3 d0 k0 o0 d1 k1 o1 s=0 c=0 pids=() p line
	d0=$(delivered); k0=$(cpu_ns $KSOFT); o0=$(cpu_ns "$VPID" "$TPID")
	for cpu in 0 1; do
		taskset -c "$cpu" nsenter "--net=/run/netns/$P-c" "$W/udpblast" eth0 "$mac" "$(ip_of c)" "$dst" 9 \
			"$FLOWS" "$PPS_SECS" >"$W/blast.$cpu" &
		pids+=($!)
		PIDS+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
	sleep 0.2
	d1=$(delivered); k1=$(cpu_ns $KSOFT); o1=$(cpu_ns "$VPID" "$TPID")
	for cpu in 0 1; do
		line=$(cat "$W/blast.$cpu")
		s=$((s + $(awk '{print $2}' <<<"$line")))
		c=$((c + $(awk '{print $10}' <<<"$line")))
	done
	# mode sent_pps delivered_pps cpu_ns_per_delivered_pkt
	awk -v m="$mode" -v s="$s" -v d=$((d1 - d0)) -v t="$PPS_SECS" -v c=$((c + k1 - k0 + o1 - o0)) \
		'BEGIN {printf "%s %.0f %.0f %.1f\n", m, s/t, d/t, (d>0)? c/d : 0}' >>"$W/pps.txt"
}

# run_cps MODE VIA: connbench from c to VIP:80, the VIP routed via VIA.
run_cps() {
	local mode=$1 via=$2 o0 o1 line
	ip -n "$P-c" route replace "$VIP/32" via "$(ip_of "$via")"
	o0=$(cpu_ns $KSOFT "$VPID" "$TPID" "$HPID" "${ACCEPTD[@]}")
	line=$(nsx c "$W/connbench" "$VIP" 80 "$CONC" "$CPS_SECS")
	o1=$(cpu_ns $KSOFT "$VPID" "$TPID" "$HPID" "${ACCEPTD[@]}")
	# mode cps errors+timeouts cpu_us_per_conn
	awk -v m="$mode" -v o=$((o1 - o0)) '{printf "%s %s %d %.1f\n", m, $10, $4 + $6, ($2>0)? (o + $12)/$2/1000 : 0}' \
		<<<"$line" >>"$W/cps.txt"
}

echo "== load before: $(cut -d' ' -f1-3 /proc/loadavg) (other jobs share these $(nproc) CPUs)"
echo "== pps: $ROUNDS rounds x {direct, hop, vortex, vortex-nat, nft-jhash, nft-numgen}, ${PPS_SECS}s each, $FLOWS UDP flows, 60-byte frames"
ip -n "$P-c" route replace "$VIP/32" via "$(ip_of lv)"
for r in $(seq "$ROUNDS"); do
	run_pps direct "$(mac_of b1)" "$(ip_of b1)"
	run_pps hop "$(mac_of lr)" "$VIP"
	run_pps vortex "$(mac_of lv)" "$VIP"
	run_pps vortex-nat "$(mac_of lt)" "$VIP"
	nft_lb jhash
	run_pps nft-jhash "$(mac_of ln)" "$VIP"
	nft_lb numgen
	run_pps nft-numgen "$(mac_of ln)" "$VIP"
	echo "   round $r done"
done
echo "== conns/s: $ROUNDS rounds x {vortex, vortex-nat, haproxy}, ${CPS_SECS}s each, $CONC concurrent"
for r in $(seq "$ROUNDS"); do
	run_cps vortex lv
	run_cps vortex-nat lt
	run_cps haproxy lh
	echo "   round $r done"
done

# --- report ----------------------------------------------------------------
col() { awk -v m="$1" -v k="$2" '$1==m {print $k}' "$3" | median; }
echo
echo "UDP forwarding (median of $ROUNDS; cpu = senders + ksoftirqd + yunhan vortex on-CPU time / delivered packet;"
echo "  lb = cpu minus the direct run: what the LB hop adds per packet)"
printf '%-11s %12s %14s %11s %10s\n' mode sent_pps delivered_pps cpu_ns/pkt lb_ns/pkt
DCPU=$(col direct 4 "$W/pps.txt")
for m in direct hop vortex vortex-nat nft-jhash nft-numgen; do
	printf '%-11s %12.0f %14.0f %11.1f %10s\n' "$m" "$(col "$m" 2 "$W/pps.txt")" "$(col "$m" 3 "$W/pps.txt")" \
		"$(col "$m" 4 "$W/pps.txt")" \
		"$([ "$m" = direct ] && echo - || awk -v a="$(col "$m" 4 "$W/pps.txt")" -v b="$DCPU" 'BEGIN {printf "%.1f", a-b}')"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf (b>0)? "%.2f" : "n/a", a/b}'; }
V=$(col vortex 3 "$W/pps.txt"); NJ=$(col nft-jhash 3 "$W/pps.txt"); NN=$(col nft-numgen 3 "$W/pps.txt")
VL=$(awk -v a="$(col vortex 4 "$W/pps.txt")" -v b="$DCPU" 'BEGIN {print a-b}')
NL=$(awk -v a="$(col nft-jhash 4 "$W/pps.txt")" -v b="$DCPU" 'BEGIN {print a-b}')
# per_round A B FIELD FILE: median over rounds of A/B (runs of one round are
# back to back, so this cancels part of the load drift from other jobs)
per_round() {
	paste <(awk -v m="$1" -v k="$3" '$1==m {print $k}' "$4") <(awk -v m="$2" -v k="$3" '$1==m {print $k}' "$4") |
		awk '$2>0 {print $1/$2}' | median | awk '{printf "%.2f", $1}'
}
echo "ratio vortex/nft-jhash delivered pps: $(ratio "$V" "$NJ") (median per round $(per_round vortex nft-jhash 3 "$W/pps.txt"))   vortex/nft-numgen: $(ratio "$V" "$NN")"
echo "ratio nft-jhash/vortex LB cost per packet: $(ratio "$NL" "$VL");  total chain cost nft-jhash/vortex: $(per_round nft-jhash vortex 4 "$W/pps.txt") (median per round)"
echo "ratio vortex-nat/nft-jhash delivered pps: $(per_round vortex-nat nft-jhash 3 "$W/pps.txt") (median per round);  total chain cost nft-jhash/vortex-nat: $(per_round nft-jhash vortex-nat 4 "$W/pps.txt")"
echo "ceiling: hop/nft-jhash delivered pps: $(per_round hop nft-jhash 3 "$W/pps.txt"), direct/nft-jhash: $(per_round direct nft-jhash 3 "$W/pps.txt") (no balancer in a namespace can beat the hop)"
echo
echo "New TCP connections (median of $ROUNDS; cpu = client + backends + LB + ksoftirqd on-CPU time / connection)"
printf '%-11s %10s %14s %12s\n' mode conns/s errors+tmo cpu_us/conn
for m in vortex vortex-nat haproxy; do
	printf '%-11s %10.0f %14.0f %12.1f\n' "$m" "$(col "$m" 2 "$W/cps.txt")" "$(col "$m" 3 "$W/cps.txt")" "$(col "$m" 4 "$W/cps.txt")"
done
echo "ratio vortex/haproxy conns/s: $(ratio "$(col vortex 2 "$W/cps.txt")" "$(col haproxy 2 "$W/cps.txt")") (median per round $(per_round vortex haproxy 2 "$W/cps.txt"))   haproxy/vortex cpu per conn: $(ratio "$(col haproxy 4 "$W/cps.txt")" "$(col vortex 4 "$W/cps.txt")")"
echo "ratio vortex-nat/haproxy conns/s: $(per_round vortex-nat haproxy 2 "$W/cps.txt") (median per round)   haproxy/vortex-nat cpu per conn: $(ratio "$(col haproxy 4 "$W/cps.txt")" "$(col vortex-nat 4 "$W/cps.txt")")"
echo
echo "raw runs:"; sed 's/^/  pps /' "$W/pps.txt"; sed 's/^/  cps /' "$W/cps.txt"
for ns in lv lt; do
echo "vortex ($ns) per-backend packets (status file):"
python3 - "$W/$ns.status.json" <<'EOF' || true
import json, sys
st = json.load(open(sys.argv[1]))
for v in st["vips"]:
    print("  VIP %s: %d packets" % (v["name"], v["packets"]))
print("  per backend (all VIPs): " + ", ".join(
    "%s=%d" % (b["address"], b["packets"]) for b in st["vips"][0]["backends"]))
print("  counters:", {k: n for k, n in sorted(st["counters"].items()) if n})
EOF
done
echo "veth drop counters on the Vortex paths (loss in the vortex rows shows up here):"
for spec in "lv eth0" "br plv" "lt eth0" "br plt"; do
	set -- $spec
	echo "  $1/$2: $(ip -n "$P-$1" -s -s link show "$2" | awk '/RX:/ {getline; print "rx_dropped", $4} /TX:/ {getline; print "tx_dropped", $4}' | tr '\n' ' ')"
done
