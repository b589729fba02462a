// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/* XDP_PASS for the peer of a veth on which Vortex does XDP_TX: veth delivers
 * XDP_TX frames only if the peer device has an XDP program too. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int vortex_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
