//! Rules of the VPC networking kinds, one file each: names resolved to ids within the
//! caller's project (another project's object is `not_found`), VNIs and addresses
//! allocated atomically with compare-and-swap claim keys ([`addresses`]), and deletion
//! refused (409) while something still uses the object. The SDN controller turns the
//! result into per-host plans.

pub(crate) mod addresses;
pub(crate) mod eips;
pub(crate) mod external_networks;
pub(crate) mod nat_gateways;
pub(crate) mod nics;
pub(crate) mod route_tables;
pub(crate) mod security_groups;
pub(crate) mod subnets;
pub(crate) mod vips;
pub(crate) mod vpcs;
