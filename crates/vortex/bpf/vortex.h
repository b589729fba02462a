/* Shared layouts between the XDP program and the Rust loader (src/dataplane.rs
 * mirrors these structs with #[repr(C)]; keep them in sync). */
#ifndef YUNHAN_VORTEX_H
#define YUNHAN_VORTEX_H

#include <linux/types.h>

#define VX_MAX_VIPS_DEFAULT 16
#define VX_MAX_BACKENDS 4096
#define VX_CT_DEFAULT 262144
#define VX_NO_BACKEND 0xffffffffu

/* backend.state */
#define VX_BE_ACTIVE 0   /* in the table (or draining): conntrack honoured */
#define VX_BE_DOWN 1     /* failed health check / removed: conntrack ignored */

/* backend.mode */
#define VX_MODE_DSR 0    /* rewrite destination MAC, same L2 */
#define VX_MODE_VXLAN 1  /* encapsulate in VXLAN/UDP/IPv4 */
#define VX_MODE_NAT 2    /* tc: Vortex translates the packet itself (kernel NAT as fallback) */

/* vip.flags */
#define VX_VIP_HASH_SOURCE 1 /* hash the client address only (source-IP persistence) */

/* The mark the tc program gives a packet for the kernel's NAT (nftables map
 * mark -> backend address . port): VX_NAT_MARK | vip index << 12 | backend id. */
#define VX_NAT_MARK 0x56000000u
#define VX_NAT_MARK_MASK 0xff000000u

#define VX_VXLAN_PORT 4789

/* counters[] indices */
enum {
	VX_C_PASS = 0,     /* not VIP traffic: XDP_PASS */
	VX_C_TX,           /* forwarded */
	VX_C_CT_HIT,
	VX_C_CT_MISS,
	VX_C_NO_BACKEND,   /* VIP without any usable backend: dropped */
	VX_C_FRAGMENT,     /* fragment to a VIP address: dropped */
	VX_C_MALFORMED,    /* truncated L4 / unsupported ext header to a VIP address: dropped */
	VX_C_ICMP_PTB,     /* ICMP frag-needed / packet-too-big forwarded to a backend */
	VX_C_ENCAP_FAIL,
	VX_C_NAT_MARK,     /* tc: marked for the kernel's NAT (the slow path) */
	VX_C_NAT_FWD,      /* tc: translated to its backend and redirected */
	VX_C_NAT_REPLY,    /* tc: a backend's answer translated back and redirected */
	VX_C_NAT_ICMP,     /* tc: a backend's ICMP error about a flow translated back */
	VX_C_NAT_NO_PORT,  /* tc: no free source port for a new flow (kernel NAT took it) */
	VX_C_MAX,
};

struct vx_flow_key {
	__u32 src[4];
	__u32 dst[4];
	__u16 sport; /* network order */
	__u16 dport; /* network order */
	__u8 proto;
	__u8 family; /* 4 or 6 */
	__u8 pad[2];
};

struct vx_ct_value {
	__u32 backend;
	__u32 vip;
	__u16 nat_port;    /* tc: the flow's translated source port (network order), 0: none, 1 (network order): the kernel's NAT */
	__u8 pad[6];
};

/* tc NAT: a backend's answer (backend:bport -> src:nport) identifies its flow. */
struct vx_nat_key {
	__u32 backend;
	__u32 src;         /* the translated source (vx_config.nat_src) */
	__u16 bport;       /* network order */
	__u16 nport;       /* network order */
	__u8 proto;
	__u8 pad[3];
};

struct vx_nat_value {
	__u32 client;
	__u32 vip;         /* the address the client sent to */
	__u16 cport;       /* network order */
	__u16 vport;       /* network order */
	__u16 closing;     /* VX_END_*: a FIN from each side or a RST ends the flow (its port frees sooner) */
	__u16 vip_index;   /* the VIP's index, for its answer counters (vip_reply_stats) */
	__u64 seen_ns;     /* refreshed at most once a second until the flow ends */
};

/* tc NAT: the port of backend `id` behind VIP `index`, keyed by index << 12 | id. */
struct vx_nat_target {
	__u16 port;        /* network order */
	__u16 pad;
};

/* Source ports the tc NAT gives flows: a client's own port when it is in this range
 * and free, else one derived from the flow's hash. The daemon keeps the kernel's own
 * sockets in the namespace (HAProxy's) and the kernel's NAT above it
 * (ip_local_port_range, masquerade to VX_NAT_PORT_END..65535). */
#define VX_NAT_PORT_MIN 1024
#define VX_NAT_PORT_END 49152
/* A translation idle this long (an ended flow: since its end) may be taken by another
 * flow. */
#define VX_NAT_IDLE_NS (120ULL * 1000000000ULL)
#define VX_NAT_CLOSING_NS (10ULL * 1000000000ULL)

struct vx_vip_key {
	__u32 addr[4];
	__u16 port; /* network order */
	__u8 proto;
	__u8 family;
};

struct vx_vip_info {
	__u32 index;       /* 0..max_vips: selects the table pair and stats slot */
	__u32 active_slot; /* 0 or 1: which of the two tables is live */
	__u32 flags;       /* VX_VIP_* */
};

struct vx_addr_key {
	__u32 addr[4];
	__u32 family;
};

struct vx_backend {
	__u32 addr[4];
	__u8 mac[6];       /* DSR: backend MAC; VXLAN: next-hop MAC of the tunnel endpoint */
	__u8 inner_mac[6]; /* VXLAN: MAC of the backend's VXLAN device */
	__u8 family;
	__u8 mode;
	__u8 state;
	__u8 pad;
	__u32 tunnel_ip;   /* VXLAN: outer destination (IPv4, network order) */
	__u32 vni;         /* VXLAN: host order */
};

struct vx_config {
	__u32 ring_size;   /* Maglev table size M (prime) */
	__u32 vxlan_src;   /* outer source IPv4, network order */
	__u32 nat_src;     /* tc NAT: the translated source, the interface's IPv4 (network order) */
};

struct vx_stat {
	__u64 packets;
	__u64 bytes;
};

#endif
