//! Names of the Linux objects a plan creates (all at most 15 characters, IFNAMSIZ − 1).
//! The compute agent uses [`port_device`] to name the tap/veth of a VM's NIC.
use sha2::{Digest, Sha256};

fn short_hash(s: &str, n: usize) -> String {
    let h = Sha256::digest(s.as_bytes());
    hex::encode(h)[..n].to_string()
}

/// The bridge of a VPC on a host (`ynb-` + 6 hex digits of the VNI).
pub fn bridge(vni: u32) -> String {
    format!("ynb-{vni:06x}")
}
/// The VXLAN device of a VPC on a host.
pub fn vxlan(vni: u32) -> String {
    format!("ynx-{vni:06x}")
}
/// The router namespace of a VPC on a host (the realiser may prefix it).
pub fn router_netns(vni: u32) -> String {
    format!("ynr-{vni:06x}")
}
/// Host side of a subnet's router veth (a port of the VPC bridge).
pub fn router_host_dev(subnet: &str) -> String {
    format!("yng{}", short_hash(subnet, 10))
}
/// Router side of a subnet's router veth (holds the gateway IP and MAC).
pub fn router_dev(subnet: &str) -> String {
    format!("gw{}", short_hash(subnet, 10))
}
/// The host-side device of a port (the VM's tap, or a lab guest's veth peer).
pub fn port_device(port: &str) -> String {
    format!("ynt{}", short_hash(port, 10))
}
/// The namespace of a load balancer on its host (`ynl-` + 10 hex digits of its id; the
/// agent may prefix it like router namespaces). Its `eth0` is the far end of the veth whose
/// host end is the load balancer's port device.
pub fn lb_netns(lb_id: &str) -> String {
    format!("ynl-{}", short_hash(lb_id, 10))
}
/// Host side of a VPC router's uplink veth (towards the external networks).
pub fn uplink_host_dev(vni: u32) -> String {
    format!("{UPLINK_PREFIX}{vni:06x}")
}
/// Router side of the uplink veth (inside the router namespace).
pub const UPLINK_ROUTER_DEV: &str = "uplink";
/// Host side of the NAT gateway's transit veth (a port of the VPC bridge).
pub fn transit_host_dev(vpc: &str) -> String {
    // Subnet ids never contain '/': no clash with router_host_dev.
    router_host_dev(&format!("{vpc}/transit"))
}
/// The bridge of an external network that lives on the host itself (holding its
/// gateway address; owned by the realiser).
pub fn external_bridge(network: &str) -> String {
    format!("ynp-{}", short_hash(network, 10))
}
/// Router side of the transit veth.
pub const TRANSIT_ROUTER_DEV: &str = "transit";
/// Prefix of uplink host devices (owned by the realiser like [`OWNED_PREFIXES`]).
pub const UPLINK_PREFIX: &str = "ynu-";
/// The nftables table of a router namespace (NAT, routing marks, shaping marks).
pub const NFT_ROUTER_TABLE: &str = "yunhan_router";
/// The nftables table that holds a host's security groups.
pub const NFT_TABLE: &str = "yunhan";
/// Prefixes of devices the realiser owns (it deletes stale ones).
pub const OWNED_PREFIXES: [&str; 4] = ["ynb-", "ynx-", "yng", "ynp-"];

#[cfg(test)]
mod tests {
    #[test]
    fn lengths() {
        for n in [
            super::bridge(0xffffff),
            super::vxlan(0xffffff),
            super::router_netns(1),
            super::router_host_dev("sn-x"),
            super::router_dev("sn-x"),
            super::port_device("p-1"),
            super::uplink_host_dev(0xffffff),
            super::transit_host_dev("vpc-x"),
            super::external_bridge("extnet-0123456789abcdef"),
            super::lb_netns("lb-0123456789abcdef0123456789"),
        ] {
            assert!(n.len() <= 15, "{n}");
        }
    }

    #[test]
    fn lb_netns_is_stable_short_and_distinct() {
        let a = super::lb_netns("lb-a");
        assert_eq!(a, super::lb_netns("lb-a"));
        assert_ne!(a, super::lb_netns("lb-b"));
        assert!(a.starts_with("ynl-") && a.len() == 14, "{a}");
        assert!(a[4..].bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
    }
}
