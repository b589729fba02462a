//! Rules of the block storage kinds, [`volumes`], [`snapshots`] and
//! [`snapshot_policies`]. What the
//! agent cannot do is refused with a clear 4xx before anything is written.
//! The binder (controller) gives each volume a host; that host's agent does
//! the work (docs/storage.md).

pub(crate) mod snapshot_policies;
pub(crate) mod snapshots;
pub(crate) mod volumes;
