//! Taking the readings of one collection: each running VM's counters and the host's.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use yunhan_model::{Doc, Instance};

use super::procfs::{self, DevCounters};
use super::rates::{DiskCounters, HostReading, VmReading};
use crate::compute::Runtime;
use crate::network::AttachedNic;

/// How long a VM's QMP may take to answer `query-blockstats` before its disk figures
/// are left out of this collection (another operation may hold its one QMP connection).
const QMP_WAIT: Duration = Duration::from_secs(2);

/// Every device's counters in the host's namespace (`netns`, or the agent's own).
pub fn net_devices(netns: Option<&str>) -> BTreeMap<String, DevCounters> {
    let read = || std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default();
    let text = match netns {
        None => read(),
        Some(ns) => {
            let path = format!("/run/netns/{ns}");
            let in_ns = move || {
                let f = std::fs::File::open(&path).ok()?;
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
                Some(read())
            };
            (std::thread::spawn(in_ns).join().ok().flatten()).unwrap_or_default()
        }
    };
    procfs::net_dev(&text)
}

/// The counters of VM `vm`, running as QEMU `pid`, its `nics`' read from `devices`.
pub async fn vm(
    runtime: &Runtime,
    vm: &Doc<Instance>,
    pid: i32,
    nics: &[AttachedNic],
    devices: &BTreeMap<String, DevCounters>,
) -> VmReading {
    let id = &vm.metadata.id;
    VmReading {
        cpu_ticks: procfs::vcpu_ticks(pid),
        rss_bytes: procfs::rss_bytes(pid),
        disk: tokio::time::timeout(QMP_WAIT, blockstats(runtime, id))
            .await
            .ok()
            .flatten(),
        nics: (nics.iter())
            .filter_map(|nic| Some((nic.id.clone(), *devices.get(&nic.device)?)))
            .collect(),
    }
}

/// The VM's disks' counters summed, from QMP `query-blockstats`.
async fn blockstats(runtime: &Runtime, id: &str) -> Option<DiskCounters> {
    let qmp = runtime.qmp(id).await.ok()?;
    let answer = qmp.execute_raw("query-blockstats", json!({})).await.ok()?;
    Some(sum_blockstats(&answer))
}

fn sum_blockstats(answer: &Value) -> DiskCounters {
    let mut sum = DiskCounters::default();
    for device in answer.as_array().into_iter().flatten() {
        let stat = |k: &str| device["stats"][k].as_u64().unwrap_or(0);
        sum.read_bytes += stat("rd_bytes");
        sum.write_bytes += stat("wr_bytes");
        sum.read_ops += stat("rd_operations");
        sum.write_ops += stat("wr_operations");
    }
    sum
}

/// The host's counters: CPU, memory, load, the file system of `state_dir`, and the
/// network devices of its namespace but loopback and the platform's own (`yn…`).
pub fn host(state_dir: &Path, devices: &BTreeMap<String, DevCounters>) -> HostReading {
    let proc = |f: &str| std::fs::read_to_string(format!("/proc/{f}")).unwrap_or_default();
    let disk = nix::sys::statvfs::statvfs(state_dir).ok().map(|s| {
        let block = s.fragment_size();
        let total = s.blocks() * block;
        (total, total - s.blocks_free() * block)
    });
    let mut net = DevCounters::default();
    for (_, d) in (devices.iter()).filter(|(name, _)| *name != "lo" && !name.starts_with("yn")) {
        net.rx_bytes += d.rx_bytes;
        net.rx_packets += d.rx_packets;
        net.tx_bytes += d.tx_bytes;
        net.tx_packets += d.tx_packets;
    }
    HostReading {
        cpu: procfs::stat_cpu(&proc("stat")),
        memory: procfs::meminfo(&proc("meminfo")),
        load1: procfs::load1(&proc("loadavg")),
        disk,
        net: Some(net),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blockstats_of_every_disk_are_summed() {
        let answer = json!([
            {"device": "", "qdev": "root-disk", "stats": {"rd_bytes": 10, "wr_bytes": 20, "rd_operations": 1, "wr_operations": 2}},
            {"device": "", "qdev": "vol-1", "stats": {"rd_bytes": 5, "wr_bytes": 7, "rd_operations": 1, "wr_operations": 1}},
        ]);
        let sum = sum_blockstats(&answer);
        assert_eq!((sum.read_bytes, sum.write_bytes), (15, 27));
        assert_eq!((sum.read_ops, sum.write_ops), (2, 3));
    }

    #[test]
    fn the_hosts_own_namespace_has_a_loopback() {
        assert!(net_devices(None).contains_key("lo"));
    }
}
