//! Taking the readings of one collection: each running VM's counters and the host's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use yunhan_model::{Doc, Instance};
use yunhan_net::plan::HostPlan;
use yunhan_net::{names, nft};

use super::procfs::{self, DevCounters};
use super::rates::{Counters, DiskCounters, HostReading, VmReading};
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
    let stats = tokio::time::timeout(QMP_WAIT, blockstats(runtime, id)).await;
    let stats = stats.ok().flatten();
    let boot = vm.spec.boot_volume.as_deref();
    VmReading {
        cpu_ticks: procfs::vcpu_ticks(pid),
        rss_bytes: procfs::rss_bytes(pid),
        disk: stats.as_ref().map(sum_blockstats),
        nics: (nics.iter())
            .filter_map(|nic| Some((nic.id.clone(), *devices.get(&nic.device)?)))
            .collect(),
        volumes: stats
            .as_ref()
            .map(|s| volume_counters(s, boot))
            .unwrap_or_default(),
    }
}

/// QMP `query-blockstats` of the VM.
async fn blockstats(runtime: &Runtime, id: &str) -> Option<Value> {
    let qmp = runtime.qmp(id).await.ok()?;
    qmp.execute_raw("query-blockstats", json!({})).await.ok()
}

fn counters_of(device: &Value) -> DiskCounters {
    let stat = |k: &str| device["stats"][k].as_u64().unwrap_or(0);
    DiskCounters {
        read_bytes: stat("rd_bytes"),
        write_bytes: stat("wr_bytes"),
        read_ops: stat("rd_operations"),
        write_ops: stat("wr_operations"),
    }
}

fn sum_blockstats(answer: &Value) -> DiskCounters {
    let mut sum = DiskCounters::default();
    for c in answer.as_array().into_iter().flatten().map(counters_of) {
        sum.read_bytes += c.read_bytes;
        sum.write_bytes += c.write_bytes;
        sum.read_ops += c.read_ops;
        sum.write_ops += c.write_ops;
    }
    sum
}

/// The counters of the VM's volumes: hot-plugged ones are devices named after the
/// volume (`vol-…`), the boot volume (`boot`) is the `root-disk` device.
fn volume_counters(answer: &Value, boot: Option<&str>) -> Counters {
    let mut out = Counters::new();
    for device in answer.as_array().into_iter().flatten() {
        let qdev = device["qdev"].as_str().unwrap_or_default();
        let name = qdev.strip_prefix("/machine/peripheral/").unwrap_or(qdev);
        let name = name.split('/').next().unwrap_or_default();
        let volume = match (name, boot) {
            ("root-disk", Some(boot)) => boot,
            (v, _) if v.starts_with("vol-") => v,
            _ => continue,
        };
        let c = counters_of(device);
        for (what, n) in [
            ("read_bytes", c.read_bytes),
            ("write_bytes", c.write_bytes),
            ("read_ops", c.read_ops),
            ("write_ops", c.write_ops),
        ] {
            out.insert(format!("volume/{volume}/{what}"), n);
        }
    }
    out
}

/// The traffic counters of the elastic IPs `plan` realises here
/// (`eip/<id>/{rx,tx}_{bytes,packets}`: rx is what came in to the address), from the
/// `eip_traffic` chain of each VPC router (`nft -j list table`); a router that cannot be
/// read is left out of this collection.
pub async fn eip_counters(plan: &HostPlan, router_prefix: &str) -> Counters {
    let vnis: BTreeSet<u32> = plan.elastic_ips.iter().map(|e| e.vni).collect();
    let mut out = Counters::new();
    for vni in vnis {
        let ns = format!("{router_prefix}{}", names::router_netns(vni));
        let args = ["netns", "exec", &ns, "nft", "-j", "list", "table", "ip"];
        let listing = (tokio::process::Command::new("ip"))
            .args(args)
            .arg(names::NFT_ROUTER_TABLE)
            .output()
            .await;
        let Ok(listing) = listing.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()) else {
            continue;
        };
        for (id, inbound, packets, bytes) in nft::eip_counters(&listing) {
            let dir = if inbound { "rx" } else { "tx" };
            out.insert(format!("eip/{id}/{dir}_bytes"), bytes);
            out.insert(format!("eip/{id}/{dir}_packets"), packets);
        }
    }
    out
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
    fn volumes_are_the_devices_named_after_them_and_the_boot_disk() {
        let answer = json!([
            {"qdev": "/machine/peripheral/root-disk/virtio-backend", "stats": {"wr_bytes": 1}},
            {"qdev": "/machine/peripheral/vol-9/virtio-backend", "stats": {"wr_bytes": 2}},
            {"qdev": "/machine/peripheral/seed-disk/virtio-backend", "stats": {"wr_bytes": 3}},
        ]);
        let c = volume_counters(&answer, Some("vol-boot"));
        assert_eq!(c["volume/vol-boot/write_bytes"], 1);
        assert_eq!(c["volume/vol-9/write_bytes"], 2);
        assert_eq!(c.len(), 8);
        assert_eq!(volume_counters(&answer, None).len(), 4);
    }

    #[test]
    fn the_hosts_own_namespace_has_a_loopback() {
        assert!(net_devices(None).contains_key("lo"));
    }
}
