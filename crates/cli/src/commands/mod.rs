//! One module per command noun (`yunhan vm …` is in `vm.rs`). Each defines
//! its clap arguments, how its kind is shown and what its verbs do, on top
//! of the plumbing (`ctx`, `client`, `output`, `wait`).

pub mod alarm;
pub mod api_key;
pub mod bucket;
pub mod eip;
pub mod events;
pub mod external_network;
pub mod flavor;
pub mod host;
pub mod image;
pub mod load_balancer;
pub mod metrics;
pub mod migration;
pub mod nat_gateway;
pub mod nic;
pub mod placement_group;
pub mod price_list;
pub mod project;
pub mod route_table;
pub mod s3_key;
pub mod security_group;
pub mod snapshot;
pub mod snapshot_policy;
pub mod storage;
pub mod subnet;
pub mod usage;
pub mod user;
pub mod vip;
pub mod vm;
pub mod volume;
pub mod vpc;
pub mod web_console;
pub mod whoami;

#[cfg(test)]
mod tests;
