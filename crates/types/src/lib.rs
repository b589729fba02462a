//! Yunhan's value types and pure helpers, shared by the resource model (`yunhan-model`),
//! the API, the CLI and the data-plane drivers (`yunhan-net`, `yunhan-storage`).
//!
//! A leaf crate: no I/O, no processes, no async runtime.
//!
//! - [`addr`]: IPv4 CIDRs and MAC addresses (serde as strings), the VXLAN VNI range.
//! - [`http_status`]: the HTTP status codes a health check accepts (`200,300-302`).
//! - [`ipam`]: address allocation inside a subnet.
//! - [`names`]: names of the Linux objects a network plan creates (bridges, VXLAN
//!   devices, router namespaces, a VM NIC's tap/veth).
//! - [`sizes`]: volume size parsing/validation/rendering, volume names,
//!   thin-provisioning math; refusals are a [`sizes::SizeError`].
/// Serde as the type's text: `Display` out, `FromStr` in (its error as serde's message).
macro_rules! serde_as_text {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod addr;
pub mod http_status;
pub mod ipam;
pub mod names;
pub mod sizes;

pub use addr::{Ipv4Cidr, MacAddr};
pub use http_status::StatusCodes;
pub use sizes::SizeError;
