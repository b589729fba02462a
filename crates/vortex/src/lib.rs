//! Vortex: an XDP layer-4 load balancer with Maglev consistent hashing,
//! per-flow connection tracking and direct server return / VXLAN forwarding.
//!
//! * [`hash`] and [`maglev`] are pure and deterministic (property-tested);
//! * the XDP program lives in `bpf/vortex.bpf.c` and is compiled by `build.rs`;
//!   [`dataplane`] loads it (aya) and owns its maps;
//! * [`nat`]: NAT mode's port range and its slow path's nftables table (what the tc
//!   program cannot translate itself, it marks for the kernel's NAT).

pub mod cli;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod error;
pub mod hash;
pub mod health;
pub mod maglev;
pub mod nat;
pub mod packet;

pub use cli::{run, VortexArgs};
pub use error::VortexError;
