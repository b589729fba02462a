// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* Vortex XDP data plane.
 *
 * For every packet: parse Ethernet → IPv4/IPv6 → TCP/UDP (or ICMP "frag
 * needed"/"packet too big" quoting a VIP flow); look the (dst, dport, proto)
 * up in `vips`; anything that is not VIP traffic gets XDP_PASS untouched.
 * VIP traffic: the conntrack entry for the 5-tuple wins (unless its backend is
 * DOWN); otherwise the Maglev table of the VIP picks the backend by
 * flow_hash_v1(5-tuple) % M and a conntrack entry is created. Then forward:
 * DSR (destination MAC rewrite, XDP_TX) or VXLAN encapsulation (XDP_TX).
 *
 * vortex_tc (tc ingress, for virtual devices: NAT mode): the same lookup and
 * choice for IPv4 TCP/UDP, then Vortex translates the packet itself and
 * redirects it (see "tc: Vortex's own NAT" below).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/icmpv6.h>
#include <linux/pkt_cls.h>
#include <stddef.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "vortex.h"

/* <linux/icmp.h> drags in libc headers; the 8-byte ICMP header is all we need. */
struct vx_icmphdr {
	__u8 type;
	__u8 code;
	__u16 checksum;
	__u32 rest;
};
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4

#ifndef BPF_F_NO_COMMON_LRU
#define BPF_F_NO_COMMON_LRU (1U << 1)
#endif

/* A map pinned by name, so a restarted daemon (and its conntrack) finds it again. */
#define VX_MAP_FLAGS(name, map_type, size, key_t, value_t, flags)                      \
	struct {                                                                        \
		__uint(type, map_type);                                                 \
		__uint(max_entries, size);                                              \
		__uint(map_flags, flags);                                               \
		__type(key, key_t);                                                     \
		__type(value, value_t);                                                 \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                    \
	} name SEC(".maps")
#define VX_MAP(name, map_type, size, key_t, value_t)                                   \
	VX_MAP_FLAGS(name, map_type, size, key_t, value_t, 0)
/* An LRU hash with per-CPU LRU lists. */
#define VX_LRU_MAP(name, size, key_t, value_t)                                        \
	VX_MAP_FLAGS(name, BPF_MAP_TYPE_LRU_HASH, size, key_t, value_t, BPF_F_NO_COMMON_LRU)

VX_MAP(vips, BPF_MAP_TYPE_HASH, VX_MAX_VIPS_DEFAULT, struct vx_vip_key, struct vx_vip_info);

/* Addresses that carry a VIP: fragments / malformed packets to these are
 * dropped (they cannot be load balanced), not passed. */
VX_MAP(vip_addrs, BPF_MAP_TYPE_HASH, VX_MAX_VIPS_DEFAULT, struct vx_addr_key, __u32);

/* Maglev tables: (vip_index * 2 + slot) * M + (hash % M) -> backend id.
 * max_entries is set by the loader to max_vips * 2 * M. */
VX_MAP(ring, BPF_MAP_TYPE_ARRAY, VX_MAX_VIPS_DEFAULT * 2 * 65537, __u32, __u32);

VX_MAP(backends, BPF_MAP_TYPE_ARRAY, VX_MAX_BACKENDS, __u32, struct vx_backend);

/* Connection tracking: one hash shared by all CPUs with per-CPU LRU lists
 * (BPF_F_NO_COMMON_LRU), so eviction is CPU-local and lock-light while a flow
 * that moves between CPUs (RSS changes, ECMP failover) is still found. */
VX_LRU_MAP(conntrack, VX_CT_DEFAULT, struct vx_flow_key, struct vx_ct_value);

VX_MAP(vip_stats, BPF_MAP_TYPE_PERCPU_ARRAY, VX_MAX_VIPS_DEFAULT, __u32, struct vx_stat);

VX_MAP(backend_stats, BPF_MAP_TYPE_PERCPU_ARRAY, VX_MAX_BACKENDS, __u32, struct vx_stat);

/* Answers translated back to clients, per VIP (tc NAT mode). */
VX_MAP(vip_reply_stats, BPF_MAP_TYPE_PERCPU_ARRAY, VX_MAX_VIPS_DEFAULT, __u32, struct vx_stat);

/* New flows balanced, per VIP (a conntrack entry created). */
VX_MAP(vip_flows, BPF_MAP_TYPE_PERCPU_ARRAY, VX_MAX_VIPS_DEFAULT, __u32, __u64);

VX_MAP(counters, BPF_MAP_TYPE_PERCPU_ARRAY, VX_C_MAX, __u32, __u64);

VX_MAP(config, BPF_MAP_TYPE_ARRAY, 1, __u32, struct vx_config);

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &idx);
	if (c)
		*c += 1;
}

static __always_inline void stat_add(void *map, __u32 idx, __u64 bytes)
{
	struct vx_stat *s = bpf_map_lookup_elem(map, &idx);
	if (s) {
		s->packets += 1;
		s->bytes += bytes;
	}
}

/* ---- flow hash, version 1 (mirror of src/hash.rs::flow_hash) ---- */
static __always_inline __u32 rotl32(__u32 x, __u32 r)
{
	return (x << r) | (x >> (32 - r));
}

static __always_inline __u32 mix_word(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rotl32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rotl32(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 flow_hash_v1(const struct vx_flow_key *k)
{
	__u32 h = 0x59565831; /* "YVX1" */
	__u32 ports = (__u32)k->sport | ((__u32)k->dport << 16);

	h = mix_word(h, k->src[0]);
	h = mix_word(h, k->src[1]);
	h = mix_word(h, k->src[2]);
	h = mix_word(h, k->src[3]);
	h = mix_word(h, k->dst[0]);
	h = mix_word(h, k->dst[1]);
	h = mix_word(h, k->dst[2]);
	h = mix_word(h, k->dst[3]);
	h = mix_word(h, ports);
	h = mix_word(h, (__u32)k->proto);
	h ^= 40;
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline int is_vip_addr(const struct vx_flow_key *k)
{
	struct vx_addr_key a = {};

	a.addr[0] = k->dst[0];
	a.addr[1] = k->dst[1];
	a.addr[2] = k->dst[2];
	a.addr[3] = k->dst[3];
	a.family = k->family;
	return bpf_map_lookup_elem(&vip_addrs, &a) != NULL;
}

static __always_inline struct vx_vip_info *lookup_vip(const struct vx_flow_key *k)
{
	struct vx_vip_key v = {};

	v.addr[0] = k->dst[0];
	v.addr[1] = k->dst[1];
	v.addr[2] = k->dst[2];
	v.addr[3] = k->dst[3];
	v.port = k->dport;
	v.proto = k->proto;
	v.family = k->family;
	return bpf_map_lookup_elem(&vips, &v);
}

/* The hash of flow `k` for `vip`: the 5-tuple's, or the client address's. */
static __always_inline __u32 vip_hash(const struct vx_flow_key *k, const struct vx_vip_info *vip)
{
	if (!(vip->flags & VX_VIP_HASH_SOURCE))
		return flow_hash_v1(k);
	struct vx_flow_key src = {};
	__builtin_memcpy(src.src, k->src, sizeof(src.src));
	src.family = k->family;
	return flow_hash_v1(&src);
}

/* A flow's backend as pick_backend found it: its id and entry, the flow's hash, and
 * (when tracked) the flow's conntrack entry. */
struct vx_pick {
	__u32 id;
	__u32 hash;
	struct vx_backend *b;
	struct vx_ct_value *ct;
};

/* The conntrack entry's backend unless it is DOWN, else the Maglev table's (tracked as
 * a new flow when `track`); 0, or -1 when there is no usable backend. */
static __always_inline int pick_backend(const struct vx_flow_key *k,
					const struct vx_vip_info *vip, int track,
					struct vx_pick *p)
{
	struct vx_ct_value *ct = bpf_map_lookup_elem(&conntrack, k);
	struct vx_backend *b;
	__u32 zero = 0, id;

	p->hash = vip_hash(k, vip);
	p->ct = ct;
	if (ct) {
		id = ct->backend;
		b = bpf_map_lookup_elem(&backends, &id);
		if (b && b->state != VX_BE_DOWN) {
			count(VX_C_CT_HIT);
			p->id = id;
			p->b = b;
			return 0;
		}
	}
	count(VX_C_CT_MISS);

	struct vx_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || cfg->ring_size == 0)
		return -1;
	__u32 m = cfg->ring_size;
	__u32 slot = vip->active_slot & 1;
	__u32 idx = (vip->index * 2 + slot) * m + p->hash % m;
	__u32 *e = bpf_map_lookup_elem(&ring, &idx);
	if (!e || *e >= VX_MAX_BACKENDS)
		return -1;
	id = *e;
	b = bpf_map_lookup_elem(&backends, &id);
	if (!b)
		return -1;
	p->id = id;
	p->b = b;
	p->ct = NULL;
	if (track) {
		struct vx_ct_value v = {
			.backend = id,
			.vip = vip->index,
		};
		bpf_map_update_elem(&conntrack, k, &v, BPF_ANY);
		p->ct = bpf_map_lookup_elem(&conntrack, k);
		__u32 vi = vip->index;
		__u64 *flows = bpf_map_lookup_elem(&vip_flows, &vi);
		if (flows)
			*flows += 1;
	}
	return 0;
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#define VXLAN_OVERHEAD (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr) + 8)

struct vxlanhdr_ {
	__be32 flags;
	__be32 vni;
};

static __always_inline int encap_vxlan(struct xdp_md *ctx, const struct vx_backend *b, __u32 hash)
{
	__u32 zero = 0;
	struct vx_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return XDP_DROP;
	__u32 src_ip = cfg->vxlan_src;
	__u32 inner_len = ctx->data_end - ctx->data;

	if (bpf_xdp_adjust_head(ctx, -(int)VXLAN_OVERHEAD))
		return XDP_DROP;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct udphdr *udp = (void *)(ip + 1);
	struct vxlanhdr_ *vx = (void *)(udp + 1);
	struct ethhdr *inner = (void *)(vx + 1);
	if ((void *)(inner + 1) > data_end)
		return XDP_DROP;

	/* Outer source MAC = the MAC the packet was sent to (ours). */
	__builtin_memcpy(eth->h_source, inner->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, b->mac, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	/* Inner destination MAC = the backend's VXLAN device. */
	__builtin_memcpy(inner->h_source, inner->h_dest, ETH_ALEN);
	__builtin_memcpy(inner->h_dest, b->inner_mac, ETH_ALEN);

	__u16 tot = inner_len + sizeof(*ip) + sizeof(*udp) + sizeof(*vx);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = 0;
	ip->tot_len = bpf_htons(tot);
	ip->id = 0;
	ip->frag_off = bpf_htons(0x4000); /* DF */
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->check = 0;
	ip->saddr = src_ip;
	ip->daddr = b->tunnel_ip;
	__u32 sum = 0;
	__u16 *w = (__u16 *)ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	ip->check = csum_fold(sum);

	/* Source port carries flow entropy for ECMP/RSS on the underlay (RFC 7348). */
	udp->source = bpf_htons(49152 | (hash & 0x3fff));
	udp->dest = bpf_htons(VX_VXLAN_PORT);
	udp->len = bpf_htons(tot - sizeof(*ip));
	udp->check = 0;
	vx->flags = bpf_htonl(0x08000000);
	vx->vni = bpf_htonl(b->vni << 8);
	return XDP_TX;
}

static __always_inline int forward(struct xdp_md *ctx, const struct vx_flow_key *k,
				   const struct vx_vip_info *vip, int track)
{
	struct vx_pick p;
	__u64 len = ctx->data_end - ctx->data;

	if (pick_backend(k, vip, track, &p)) {
		count(VX_C_NO_BACKEND);
		return XDP_DROP;
	}
	struct vx_backend *b = p.b;
	stat_add(&vip_stats, vip->index, len);
	stat_add(&backend_stats, p.id, len);

	if (b->mode == VX_MODE_VXLAN) {
		int rc = encap_vxlan(ctx, b, p.hash);
		count(rc == XDP_TX ? VX_C_TX : VX_C_ENCAP_FAIL);
		return rc;
	}
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, b->mac, ETH_ALEN);
	count(VX_C_TX);
	return XDP_TX;
}

/* Drop what is addressed to a VIP address but cannot be balanced; pass the rest. */
static __always_inline int unbalanceable(const struct vx_flow_key *k, __u32 reason)
{
	if (is_vip_addr(k)) {
		count(reason);
		return XDP_DROP;
	}
	count(VX_C_PASS);
	return XDP_PASS;
}

static __always_inline int pass(void)
{
	count(VX_C_PASS);
	return XDP_PASS;
}

/* Fill ports from an L4 header at `l4`; returns 0 on success. */
static __always_inline int read_ports(struct vx_flow_key *k, void *l4, void *data_end)
{
	if (k->proto == IPPROTO_TCP) {
		struct tcphdr *t = l4;
		if ((void *)(t + 1) > data_end)
			return -1;
		k->sport = t->source;
		k->dport = t->dest;
		return 0;
	}
	struct udphdr *u = l4;
	if ((void *)(u + 1) > data_end)
		return -1;
	k->sport = u->source;
	k->dport = u->dest;
	return 0;
}

/* ICMPv4 type 3 code 4 quoting a packet the backend sent from the VIP:
 * rebuild the client→VIP 5-tuple from the quoted header and send the ICMP
 * to the backend that owns that flow, so PMTU discovery works with DSR. */
/* A "packet too big" about flow `f` (family, protocol and swapped addresses of the
 * quoted header set; its ports at `ports`): to that flow's backend, so PMTU discovery
 * works through the balancer. `k` is the ICMP packet's own flow. */
static __always_inline int forward_quoted(struct xdp_md *ctx, struct vx_flow_key *k,
					  struct vx_flow_key *f, __u16 *ports, void *data_end)
{
	if ((void *)(ports + 2) > data_end)
		return unbalanceable(k, VX_C_MALFORMED);
	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP)
		return pass();
	f->sport = ports[1];
	f->dport = ports[0];
	struct vx_vip_info *vip = lookup_vip(f);
	if (!vip)
		return pass();
	count(VX_C_ICMP_PTB);
	return forward(ctx, f, vip, 0);
}

static __always_inline int handle_icmp4(struct xdp_md *ctx, struct vx_flow_key *k, void *l4,
					void *data_end)
{
	struct vx_icmphdr *icmp = l4;
	if ((void *)(icmp + 1) > data_end)
		return unbalanceable(k, VX_C_MALFORMED);
	if (icmp->type != ICMP_DEST_UNREACH || icmp->code != ICMP_FRAG_NEEDED)
		return pass();
	struct iphdr *in = (void *)(icmp + 1);
	if ((void *)(in + 1) > data_end || in->ihl != 5)
		return unbalanceable(k, VX_C_MALFORMED);
	struct vx_flow_key f = {.family = 4, .proto = in->protocol};
	f.src[0] = in->daddr;
	f.dst[0] = in->saddr;
	return forward_quoted(ctx, k, &f, (void *)(in + 1), data_end);
}

static __always_inline int handle_icmp6(struct xdp_md *ctx, struct vx_flow_key *k, void *l4,
					void *data_end)
{
	struct icmp6hdr *icmp = l4;
	if ((void *)(icmp + 1) > data_end)
		return unbalanceable(k, VX_C_MALFORMED);
	if (icmp->icmp6_type != ICMPV6_PKT_TOOBIG)
		return pass();
	struct ipv6hdr *in = (void *)(icmp + 1);
	if ((void *)(in + 1) > data_end)
		return unbalanceable(k, VX_C_MALFORMED);
	struct vx_flow_key f = {.family = 6, .proto = in->nexthdr};
	__builtin_memcpy(f.src, &in->daddr, 16);
	__builtin_memcpy(f.dst, &in->saddr, 16);
	return forward_quoted(ctx, k, &f, (void *)(in + 1), data_end);
}

SEC("xdp")
int vortex_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct vx_flow_key k = {};
	void *l4;

	if ((void *)(eth + 1) > data_end)
		return pass();

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return pass();
		if (ip->version != 4 || ip->ihl < 5)
			return pass();
		k.family = 4;
		k.proto = ip->protocol;
		k.src[0] = ip->saddr;
		k.dst[0] = ip->daddr;
		if (ip->frag_off & bpf_htons(0x3fff)) /* MF or offset */
			return unbalanceable(&k, VX_C_FRAGMENT);
		l4 = (void *)ip + ip->ihl * 4;
		if (k.proto == IPPROTO_ICMP)
			return handle_icmp4(ctx, &k, l4, data_end);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return pass();
		if (ip6->version != 6)
			return pass();
		k.family = 6;
		k.proto = ip6->nexthdr;
		__builtin_memcpy(k.src, &ip6->saddr, 16);
		__builtin_memcpy(k.dst, &ip6->daddr, 16);
		l4 = (void *)(ip6 + 1);
		if (k.proto == IPPROTO_ICMPV6)
			return handle_icmp6(ctx, &k, l4, data_end);
		if (k.proto == 44 /* fragment header */)
			return unbalanceable(&k, VX_C_FRAGMENT);
		if (k.proto != IPPROTO_TCP && k.proto != IPPROTO_UDP)
			/* extension headers are not parsed: not balanceable */
			return unbalanceable(&k, VX_C_MALFORMED);
	} else {
		return pass();
	}

	if (k.proto != IPPROTO_TCP && k.proto != IPPROTO_UDP)
		return pass();
	if (read_ports(&k, l4, data_end))
		return unbalanceable(&k, VX_C_MALFORMED);
	struct vx_vip_info *vip = lookup_vip(&k);
	if (!vip)
		return pass();
	return forward(ctx, &k, vip, 1);
}

/* ---- tc: Vortex's own NAT (NAT mode) ----
 *
 * A packet to a VIP is translated here and sent back out of the interface it came in
 * on (bpf_redirect_neigh: the kernel's route and neighbour for the next hop), so it
 * never enters the namespace's stack: destination -> the backend's address and port,
 * source -> the interface's address (vx_config.nat_src; the VIP on the platform's load
 * balancers) and a source port claimed in nat_rev (the client's own in
 * VX_NAT_PORT_MIN.., else one from the flow's hash, so every node claims the same one
 * for the same flow and a flow that fails over keeps its translation). A backend's
 * answer, and its ICMP errors about a flow, are found in nat_rev and translated back.
 * What cannot be translated here (no free port, no target) is marked for the kernel's
 * NAT instead (VX_NAT_MARK | vip index << 12 | backend id, an nftables map written by
 * the daemon), and so is the rest of that flow; fragments and everything else pass
 * untouched. */

VX_LRU_MAP(nat_rev, VX_CT_DEFAULT, struct vx_nat_key, struct vx_nat_value);

VX_MAP(nat_targets, BPF_MAP_TYPE_HASH, 65536, __u32, struct vx_nat_target);

#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))
#define IP_SRC_OFF (ETH_HLEN + offsetof(struct iphdr, saddr))
#define IS_PSEUDO 0x10

/* What one translation writes: addresses and ports, old and new (network order). */
struct vx_rewrite {
	__u32 l4_off;   /* offset of the L4 header */
	__u32 csum_off; /* offset of the L4 checksum */
	__u32 flags;    /* extra bpf_l4_csum_replace flags (UDP: mangled 0) */
	__u32 saddr, daddr, new_saddr, new_daddr;
	__u16 sport, dport, new_sport, new_dport;
};

static __always_inline int rewrite(struct __sk_buff *skb, const struct vx_rewrite *r)
{
	__u32 addrs[2] = {r->new_saddr, r->new_daddr};
	__u16 ports[2] = {r->new_sport, r->new_dport};
	__u32 f = r->flags;

	if (bpf_l4_csum_replace(skb, r->csum_off, r->saddr, r->new_saddr, f | IS_PSEUDO | 4) ||
	    bpf_l4_csum_replace(skb, r->csum_off, r->daddr, r->new_daddr, f | IS_PSEUDO | 4) ||
	    bpf_l4_csum_replace(skb, r->csum_off, r->sport, r->new_sport, f | 2) ||
	    bpf_l4_csum_replace(skb, r->csum_off, r->dport, r->new_dport, f | 2) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, r->saddr, r->new_saddr, 4) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, r->daddr, r->new_daddr, 4) ||
	    bpf_skb_store_bytes(skb, IP_SRC_OFF, addrs, sizeof(addrs), 0) ||
	    bpf_skb_store_bytes(skb, r->l4_off, ports, sizeof(ports), 0))
		return TC_ACT_SHOT;
	return bpf_redirect_neigh(skb->ifindex, NULL, 0, 0);
}

static __always_inline void fill_l4(struct vx_rewrite *r, __u8 proto, __u32 l4_off)
{
	r->l4_off = l4_off;
	if (proto == IPPROTO_TCP) {
		r->csum_off = l4_off + offsetof(struct tcphdr, check);
		r->flags = 0;
	} else {
		r->csum_off = l4_off + offsetof(struct udphdr, check);
		r->flags = BPF_F_MARK_MANGLED_0;
	}
}

static __always_inline int same_flow(const struct vx_nat_value *v, const struct vx_flow_key *k)
{
	return v->client == k->src[0] && v->vip == k->dst[0] && v->cport == k->sport &&
	       v->vport == k->dport;
}

/* TCP flags of a packet, as far as the NAT cares. */
#define VX_TCP_FIN 0x01
#define VX_TCP_SYN 0x02
#define VX_TCP_RST 0x04
#define VX_TCP_ACK 0x10

/* vx_nat_value.closing: what of the flow's end was seen. */
#define VX_END_FIN_CLIENT 1
#define VX_END_FIN_BACKEND 2
#define VX_END_RST 4

/* A flow is over once reset or closed both ways (a half-closed one may still send). */
static __always_inline int ended(const struct vx_nat_value *v)
{
	return (v->closing & VX_END_RST) ||
	       (v->closing & (VX_END_FIN_CLIENT | VX_END_FIN_BACKEND)) ==
		       (VX_END_FIN_CLIENT | VX_END_FIN_BACKEND);
}

/* Is `v` free for the flow `k`, or already its own? */
static __always_inline int port_is_ours(struct vx_nat_value *v, const struct vx_flow_key *k,
					__u64 now)
{
	if (!v || same_flow(v, k))
		return 1;
	return now - v->seen_ns > (ended(v) ? VX_NAT_CLOSING_NS : VX_NAT_IDLE_NS);
}

/* Notes a flow's new start (a client's SYN on a reused 5-tuple), its end (a RST, or a
 * FIN from each side: `fin` is the side's VX_END_FIN_*), and refreshes a live one at most
 * once a second; an ended one keeps the time it ended. */
static __always_inline void note_state(struct vx_nat_value *v, __u8 tcp_flags, __u32 fin)
{
	__u64 now = bpf_ktime_get_coarse_ns();
	if ((tcp_flags & (VX_TCP_SYN | VX_TCP_ACK)) == VX_TCP_SYN) {
		v->closing = 0;
		v->seen_ns = now;
		return;
	}
	if (ended(v))
		return;
	if (tcp_flags & VX_TCP_RST)
		v->closing |= VX_END_RST;
	if (tcp_flags & VX_TCP_FIN)
		v->closing |= fin;
	if (ended(v) || now - v->seen_ns > 1000000000ULL)
		v->seen_ns = now;
}

/* Claims a source port for flow `k` to VIP `vip_index` towards `rk` (backend, vip,
 * bport, proto set); leaves it in rk->nport and returns 0, or -1 if none is free. */
static __always_inline int claim_port(struct vx_nat_key *rk, const struct vx_flow_key *k,
				      __u32 hash, __u32 vip_index)
{
	__u64 now = bpf_ktime_get_coarse_ns();
	struct vx_nat_value v = {
		.client = k->src[0], .vip = k->dst[0], .cport = k->sport, .vport = k->dport,
		.vip_index = vip_index, .seen_ns = now,
	};
	__u16 own = bpf_ntohs(k->sport);
	int keep = own >= VX_NAT_PORT_MIN && own < VX_NAT_PORT_END;

#pragma unroll
	for (int i = 0; i < 8; i++) {
		__u16 p = own;
		if (i > 0 || !keep)
			p = VX_NAT_PORT_MIN + (hash + i * 40503u) % (VX_NAT_PORT_END - VX_NAT_PORT_MIN);
		rk->nport = bpf_htons(p);
		if (port_is_ours(bpf_map_lookup_elem(&nat_rev, rk), k, now)) {
			bpf_map_update_elem(&nat_rev, rk, &v, BPF_ANY);
			return 0;
		}
	}
	return -1;
}

/* The flow's translation is still in nat_rev: note its TCP state. */
static __always_inline int still_ours(struct vx_nat_key *rk, const struct vx_flow_key *k,
				      __u8 tcp_flags)
{
	struct vx_nat_value *v = bpf_map_lookup_elem(&nat_rev, rk);
	if (!v || !same_flow(v, k))
		return 0;
	note_state(v, tcp_flags, VX_END_FIN_CLIENT);
	return 1;
}

static __always_inline int nat_mark(struct __sk_buff *skb, const struct vx_vip_info *vip, __u32 id)
{
	skb->mark = VX_NAT_MARK | ((vip->index & 0xfff) << 12) | id;
	count(VX_C_NAT_MARK);
	return TC_ACT_OK;
}

/* A flow the kernel's NAT translates (its first packet found no target or no free port,
 * e.g. while a new configuration is being written) stays the kernel's: its later
 * packets must not be translated here differently. */
#define VX_NAT_BY_KERNEL bpf_htons(1)

static __always_inline int by_kernel(struct __sk_buff *skb, struct vx_ct_value *ct,
				     const struct vx_vip_info *vip, __u32 id)
{
	if (ct)
		ct->nat_port = VX_NAT_BY_KERNEL;
	return nat_mark(skb, vip, id);
}

/* A packet of flow `k` to `vip`: to its backend. */
static __always_inline int nat_forward(struct __sk_buff *skb, const struct vx_flow_key *k,
				       const struct vx_vip_info *vip, __u32 l4_off, __u8 tcp_flags)
{
	struct vx_pick p;
	if (pick_backend(k, vip, 1, &p)) {
		count(VX_C_NO_BACKEND);
		return TC_ACT_SHOT;
	}
	__u32 id = p.id;
	stat_add(&vip_stats, vip->index, skb->len);
	stat_add(&backend_stats, id, skb->len);
	__u32 tkey = ((vip->index & 0xfff) << 12) | id;
	struct vx_nat_target *t = bpf_map_lookup_elem(&nat_targets, &tkey);
	struct vx_ct_value *ct = p.ct;
	__u32 zero = 0;
	struct vx_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (ct && ct->nat_port == VX_NAT_BY_KERNEL)
		return nat_mark(skb, vip, id);
	if (!t || !ct || !cfg || !cfg->nat_src)
		return by_kernel(skb, ct, vip, id);
	struct vx_nat_key rk = {
		.backend = p.b->addr[0], .src = cfg->nat_src, .bport = t->port, .proto = k->proto,
	};
	rk.nport = ct->nat_port;
	if (!ct->nat_port || !still_ours(&rk, k, tcp_flags)) {
		if (claim_port(&rk, k, p.hash, vip->index)) {
			count(VX_C_NAT_NO_PORT);
			return by_kernel(skb, ct, vip, id);
		}
		ct->nat_port = rk.nport;
	}
	struct vx_rewrite r = {
		.saddr = k->src[0], .daddr = k->dst[0], .new_saddr = rk.src, .new_daddr = rk.backend,
		.sport = k->sport, .dport = k->dport, .new_sport = rk.nport, .new_dport = rk.bport,
	};
	fill_l4(&r, k->proto, l4_off);
	count(VX_C_NAT_FWD);
	return rewrite(skb, &r);
}

/* A backend's answer (k: backend:bport -> src:nport) to a translated flow: back to
 * its client; anything else passes. */
static __always_inline int nat_reply(struct __sk_buff *skb, const struct vx_flow_key *k,
				     __u32 l4_off, __u8 tcp_flags)
{
	struct vx_nat_key rk = {
		.backend = k->src[0], .src = k->dst[0], .bport = k->sport, .nport = k->dport,
		.proto = k->proto,
	};
	struct vx_nat_value *v = bpf_map_lookup_elem(&nat_rev, &rk);
	if (!v) {
		count(VX_C_PASS);
		return TC_ACT_OK;
	}
	if (tcp_flags & (VX_TCP_FIN | VX_TCP_RST))
		note_state(v, tcp_flags, VX_END_FIN_BACKEND);
	stat_add(&vip_reply_stats, v->vip_index, skb->len);
	struct vx_rewrite r = {
		.saddr = k->src[0], .daddr = k->dst[0], .new_saddr = v->vip, .new_daddr = v->client,
		.sport = k->sport, .dport = k->dport, .new_sport = v->vport, .new_dport = v->cport,
	};
	fill_l4(&r, k->proto, l4_off);
	count(VX_C_NAT_REPLY);
	return rewrite(skb, &r);
}

/* An ICMP error from a backend quoting a translated packet (src:nport -> backend:bport):
 * the outer packet goes to the client as from the VIP, the quoted one reads
 * client:cport -> vip:vport. The quoted IP header keeps summing to ~0 when its checksum
 * is fixed with its addresses, so only the quoted ports change the ICMP checksum. */
static __always_inline int nat_icmp_error(struct __sk_buff *skb, struct iphdr *ip, void *data_end)
{
	struct vx_icmphdr *icmp = (void *)(ip + 1);
	if ((void *)(icmp + 1) > data_end || (icmp->type != ICMP_DEST_UNREACH && icmp->type != 11))
		return TC_ACT_OK;
	struct iphdr *in = (void *)(icmp + 1);
	__u16 *ports = (void *)(in + 1);
	if ((void *)(ports + 2) > data_end || in->ihl != 5)
		return TC_ACT_OK;
	struct vx_nat_key rk = {
		.backend = in->daddr, .src = in->saddr, .bport = ports[1], .nport = ports[0],
		.proto = in->protocol,
	};
	struct vx_nat_value *v = bpf_map_lookup_elem(&nat_rev, &rk);
	if (!v || ip->daddr != rk.src || ip->saddr != rk.backend)
		return TC_ACT_OK;
	__u32 icmp_off = ETH_HLEN + sizeof(struct iphdr);
	__u32 icmp_csum = icmp_off + offsetof(struct vx_icmphdr, checksum);
	__u32 in_off = icmp_off + sizeof(struct vx_icmphdr);
	__u32 in_addrs[2] = {v->client, v->vip};
	__u16 in_ports[2] = {v->cport, v->vport};
	__u32 outer[2] = {v->vip, v->client};
	__u32 old_src = ip->saddr, old_dst = ip->daddr;

	if (bpf_l3_csum_replace(skb, in_off + offsetof(struct iphdr, check), rk.src, v->client, 4) ||
	    bpf_l3_csum_replace(skb, in_off + offsetof(struct iphdr, check), rk.backend, v->vip, 4) ||
	    bpf_l4_csum_replace(skb, icmp_csum, rk.nport, v->cport, 2) ||
	    bpf_l4_csum_replace(skb, icmp_csum, rk.bport, v->vport, 2) ||
	    bpf_skb_store_bytes(skb, in_off + offsetof(struct iphdr, saddr), in_addrs, 8, 0) ||
	    bpf_skb_store_bytes(skb, in_off + sizeof(struct iphdr), in_ports, 4, 0) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_src, v->vip, 4) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_dst, v->client, 4) ||
	    bpf_skb_store_bytes(skb, IP_SRC_OFF, outer, 8, 0))
		return TC_ACT_SHOT;
	count(VX_C_NAT_ICMP);
	return bpf_redirect_neigh(skb->ifindex, NULL, 0, 0);
}

/* linux/if_packet.h's PACKET_OTHERHOST: to another host's MAC. */
#define VX_PACKET_OTHERHOST 3

SEC("classifier")
int vortex_tc(struct __sk_buff *skb)
{
	bpf_skb_pull_data(skb, ETH_HLEN + 2 * sizeof(struct iphdr) + 8 + sizeof(struct tcphdr));
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct vx_flow_key k = {};

	/* A frame a bridge flooded here for another MAC (another replica of the same
	 * load balancer, whose MAC it has not learnt yet, holds the same VIP) is not ours
	 * to translate: the stack drops it. */
	if (skb->pkt_type == VX_PACKET_OTHERHOST)
		return TC_ACT_OK;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl != 5)
		return TC_ACT_OK;
	if (ip->frag_off & bpf_htons(0x3fff))
		return TC_ACT_OK;
	if (ip->protocol == IPPROTO_ICMP)
		return nat_icmp_error(skb, ip, data_end);
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	k.family = 4;
	k.proto = ip->protocol;
	k.src[0] = ip->saddr;
	k.dst[0] = ip->daddr;
	__u32 l4_off = ETH_HLEN + sizeof(struct iphdr);
	if (read_ports(&k, (void *)(ip + 1), data_end))
		return TC_ACT_OK;
	__u8 tcp_flags = 0;
	if (k.proto == IPPROTO_TCP) {
		__u8 *flags = (__u8 *)(ip + 1) + 13;
		if ((void *)(flags + 1) > data_end)
			return TC_ACT_OK;
		tcp_flags = *flags;
	}
	struct vx_vip_info *vip = lookup_vip(&k);
	if (!vip)
		return nat_reply(skb, &k, l4_off, tcp_flags);
	return nat_forward(skb, &k, vip, l4_off, tcp_flags);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
