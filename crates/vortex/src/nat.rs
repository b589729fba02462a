//! NAT mode (`yunhan vortex --mode nat`): the tc program translates each packet to a VIP
//! itself (the destination to the backend's address and port, the source to the VIP and
//! a port it claims below [`PORT_END`], so replies come back through the load
//! balancer) and sends it straight back out (`bpf/vortex.bpf.c`, "tc: Vortex's own
//! NAT"). Its maps keep each flow's translation: a flow stays on its backend whatever the
//! table does later (drain, weight changes), and a flow that fails over from another node
//! with the same table gets the same backend and the same port.
//!
//! What the program cannot translate (no free port) it marks with its backend
//! (`VX_NAT_MARK | vip index << 12 | backend id`, `bpf/vortex.h`) for the slow path: the
//! kernel's NAT, from the nftables table written here, with the kernel's conntrack and
//! source ports from [`PORT_END`] up. Pure: the ruleset as text ([`ruleset`]).

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The end of the source ports Vortex's NAT gives flows (1024 up to it: mirror of
/// `VX_NAT_PORT_END`); the namespace's own sockets and the kernel's NAT stay above.
pub const PORT_END: u16 = 49152;

/// The marks the tc program gives (mirror of `VX_NAT_MARK` in `bpf/vortex.h`).
pub const MARK: u32 = 0x5600_0000;
pub const MARK_MASK: u32 = 0xff00_0000;

/// The mark of backend `backend` of VIP `vip_index`.
pub fn mark(vip_index: u32, backend: u32) -> u32 {
    MARK | ((vip_index & 0xfff) << 12) | (backend & 0xfff)
}

/// Where packets with `mark` go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    pub mark: u32,
    pub addr: Ipv4Addr,
    pub port: u16,
}

/// The nftables table of node `name` (letters, digits and '_' only).
pub fn table(name: &str) -> String {
    let safe: String = (name.chars())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("vortex_{safe}")
}

/// The whole table, replacing any former one in one `nft -f` transaction: marked
/// packets are translated to their target on the way in (prerouting) and, once
/// translated, leave from `iface`'s own address (masquerade) and a port from
/// [`PORT_END`] up.
pub fn ruleset(table: &str, targets: &[Target]) -> String {
    let mut elements = String::new();
    for (i, t) in targets.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(elements, "{sep}{:#010x} : {} . {}", t.mark, t.addr, t.port);
    }
    let elements = match elements.is_empty() {
        true => String::new(),
        false => format!("\n\t\telements = {{ {elements} }}"),
    };
    format!(
        "table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n\
         \tmap backends {{\n\t\ttype mark : ipv4_addr . inet_service{elements}\n\t}}\n\
         \tchain prerouting {{\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tmeta mark & {MARK_MASK:#010x} == {MARK:#010x} meta l4proto {{ tcp, udp }} dnat ip to meta mark map @backends\n\t}}\n\
         \tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tct status dnat meta mark & {MARK_MASK:#010x} == {MARK:#010x} meta l4proto {{ tcp, udp }} masquerade to :{PORT_END}-65535\n\t}}\n}}\n"
    )
}

/// Removes the table (nothing if there is none).
pub fn teardown(table: &str) -> String {
    format!("table ip {table}\ndelete table ip {table}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_carry_vip_and_backend() {
        assert_eq!(mark(0, 0), 0x5600_0000);
        assert_eq!(mark(3, 7), 0x5600_3007);
        assert_eq!(mark(3, 7) & MARK_MASK, MARK);
    }

    #[test]
    fn the_ruleset() {
        let t = |mark, a: [u8; 4], port| Target {
            mark,
            addr: a.into(),
            port,
        };
        let rules = ruleset(
            &table("yh-ab12-ynl-0f"),
            &[
                t(mark(0, 0), [10, 10, 1, 5], 80),
                t(mark(1, 0), [10, 10, 1, 5], 9000),
            ],
        );
        insta::assert_snapshot!(rules);
        assert!(!ruleset("t", &[]).contains("elements"));
    }
}
