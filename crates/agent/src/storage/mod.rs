//! The storage data plane: converges the volumes and snapshots bound to this
//! host (`Volume.status.host`, written by the binder) through the pool's
//! [`VolumeDriver`], and plugs volumes into this host's VMs over QMP
//! (`blockdev-add` + `device_add virtio-blk-pci` on a free PCIe root port;
//! `device_del`, wait for `DEVICE_DELETED`, `blockdev-del`; `block_resize`
//! after an extend). Design note: docs/storage.md.
//!
//! Level-triggered like compute: every pass compares what the store wants
//! with what the backend and the VMs have, a pure [`decide`] picks one step
//! per volume, and status is written with compare-and-swap. One operation per
//! volume at a time (its snapshots included).

mod decide;
mod plug;
mod pools;
mod reconciler;
mod steps;

pub use decide::{decide, reported, Action, Observed};
pub use pools::{qemu_ceph_conf, CephPool, Pools, Volumes, LOCAL_POOL_DIRS};
pub use reconciler::Storage;
