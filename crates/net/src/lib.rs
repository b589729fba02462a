//! Yunhan software-defined networking.
//!
//! - [`addr`], [`ipam`], [`names`]: IPv4 CIDRs and MAC addresses, address allocation inside
//!   a subnet, the Linux device names (re-exported from `yunhan-types`, where they live so
//!   that the model, API and CLI need not link this crate).
//! - [`model`]: the plain input of the network compiler ([`model::NetworkModel`]: hosts,
//!   VPCs, subnets, ports, security groups, external networks, elastic IPs, NAT gateways,
//!   shared VIPs, anycast addresses) and its validation (subnets inside their VPC, no overlaps within a VPC,
//!   unique VNIs, external addresses used once, …).
//! - [`admit`]: the realisable part of a model built from whatever the store holds, and
//!   why each left-out object was left out (one object never stops the others).
//! - [`compile`]: the pure network compiler: model → one [`plan::HostPlan`] per host.
//! - [`nft`]: renders a host plan's security groups as one nftables table, and each router
//!   namespace's NAT/routing-mark/shaping table (pure text).
//! - [`realise`]: applies a host plan to Linux (ip/bridge/nft/conntrack behind a
//!   [`realise::Runner`] seam), idempotently, repairing drift.
//! - [`lab`]: network-namespace test lab (hosts on an underlay bridge, namespace guests).
//!
//! Security groups, stage by stage: `compile/security_group.rs` (a port's rules and the
//! group address sets in a host plan), `nft/security_group.rs` (the host tables),
//! `realise/security_group.rs` (applying them).
pub mod admit;
pub mod compile;
#[cfg(any(test, feature = "test-util"))]
pub mod lab;
pub mod model;
pub mod nft;
pub mod plan;
pub mod realise;

pub use addr::{Ipv4Cidr, MacAddr};
pub use admit::{admit, compile_admitted, Admitted, ObjectKind, Rejection};
pub use compile::{compile_all, compile_host};
pub use model::NetworkModel;
pub use plan::HostPlan;
pub use yunhan_types::{addr, ipam, names};
