//! From two readings of cumulative counters to the samples of one collection (pure):
//! rates per second over the interval between them, gauges as read.

use std::collections::BTreeMap;

use super::procfs::{DevCounters, USER_HZ};

/// A VM's cumulative counters at one collection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmReading {
    /// CPU ticks of its vCPU threads.
    pub cpu_ticks: Option<u64>,
    /// QEMU's resident memory.
    pub rss_bytes: Option<u64>,
    /// Its disks' counters summed (QMP `query-blockstats`), absent when QMP was busy.
    pub disk: Option<DiskCounters>,
    /// Each NIC's TAP counters by NIC id, as the TAP sees them.
    pub nics: BTreeMap<String, DevCounters>,
    /// Its volumes' disk counters (`volume/<id>/{read,write}_{bytes,ops}`), read with
    /// `disk`.
    pub volumes: Counters,
}

/// Cumulative counters by series name without `_per_second`
/// (`volume/<id>/write_bytes`, `lb/<id>/<listener>/connections`).
pub type Counters = BTreeMap<String, u64>;

/// `<name>_per_second` of each counter that `before` has too, or of every counter when
/// `new_from_zero` (counters that appeared since `before` started at 0 then: a volume
/// plugged into a VM seen before). A counter that went back was reset (its nftables table
/// replaced, its HAProxy restarted) and counts from 0.
pub fn counter_samples(
    before: &Counters,
    now: &Counters,
    secs: f64,
    new_from_zero: bool,
) -> Samples {
    (now.iter())
        .filter_map(|(name, n)| {
            let b = before.get(name).copied().or(new_from_zero.then_some(0))?;
            let b = if b > *n { 0 } else { b };
            Some((format!("{name}_per_second"), rate(b, *n, secs)?))
        })
        .collect()
}

impl VmReading {
    /// Keeps `before`'s counters where this reading has none (QMP was busy, a TAP
    /// could not be read), so the next rate covers the missed interval too and the
    /// series still adds up to what the VM did.
    pub fn carry_from(&mut self, before: &VmReading) {
        self.cpu_ticks = self.cpu_ticks.or(before.cpu_ticks);
        if self.disk.is_none() {
            self.volumes = before.volumes.clone();
        }
        self.disk = self.disk.or(before.disk);
        for (nic, counters) in &before.nics {
            self.nics.entry(nic.clone()).or_insert(*counters);
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCounters {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_ops: u64,
    pub write_ops: u64,
}

/// What a VM's samples are relative to.
#[derive(Debug, Clone, Copy)]
pub struct VmShape {
    pub vcpus: u32,
    pub memory_bytes: u64,
}

/// `(series suffix, value)` pairs.
pub type Samples = Vec<(String, f64)>;

/// The rate of a counter that went from `before` to `now` in `secs`; none when it went
/// back (QEMU restarted, a device was replaced).
fn rate(before: u64, now: u64, secs: f64) -> Option<f64> {
    (now >= before && secs > 0.0).then(|| (now - before) as f64 / secs)
}

fn push_rate(out: &mut Samples, name: &str, before: Option<u64>, now: Option<u64>, secs: f64) {
    if let Some(r) = before.zip(now).and_then(|(b, n)| rate(b, n, secs)) {
        out.push((name.to_owned(), r));
    }
}

/// A VM's samples: `cpu_percent` (of all its vCPUs), `memory_used_bytes` (QEMU's
/// resident memory: the guest RAM it touched and QEMU's own), `memory_total_bytes`
/// (the flavor's), `disk_{read,write}_{bytes,ops}_per_second`, per NIC
/// `nic/<id>/{rx,tx}_{bytes,packets}_per_second` with rx and tx as the guest sees them
/// (what the TAP sends, the guest receives), and their sums over the NICs,
/// `net_{rx,tx}_{bytes,packets}_per_second`. Rates need the previous reading, taken
/// `secs` before.
pub fn vm_samples(
    before: Option<&VmReading>,
    now: &VmReading,
    secs: f64,
    shape: VmShape,
) -> Samples {
    let mut out = Samples::new();
    if let Some(rss) = now.rss_bytes {
        out.push(("memory_used_bytes".into(), rss as f64));
    }
    out.push(("memory_total_bytes".into(), shape.memory_bytes as f64));
    let Some(before) = before else {
        return out;
    };
    let vcpus = f64::from(shape.vcpus.max(1));
    if let Some(ticks) = before.cpu_ticks.zip(now.cpu_ticks) {
        if let Some(r) = rate(ticks.0, ticks.1, secs) {
            out.push((
                "cpu_percent".into(),
                (r / USER_HZ / vcpus * 100.0).min(100.0),
            ));
        }
    }
    let disk =
        |f: fn(&DiskCounters) -> u64| (before.disk.as_ref().map(f), now.disk.as_ref().map(f));
    for (name, (b, n)) in [
        ("disk_read_bytes_per_second", disk(|d| d.read_bytes)),
        ("disk_write_bytes_per_second", disk(|d| d.write_bytes)),
        ("disk_read_ops_per_second", disk(|d| d.read_ops)),
        ("disk_write_ops_per_second", disk(|d| d.write_ops)),
    ] {
        push_rate(&mut out, name, b, n, secs);
    }
    let mut all = [0.0f64; 4];
    for (nic, tap) in &now.nics {
        let Some(was) = before.nics.get(nic) else {
            continue;
        };
        let counters = [
            ("rx_bytes", was.tx_bytes, tap.tx_bytes),
            ("rx_packets", was.tx_packets, tap.tx_packets),
            ("tx_bytes", was.rx_bytes, tap.rx_bytes),
            ("tx_packets", was.rx_packets, tap.rx_packets),
        ];
        for (sum, (dir, b, n)) in all.iter_mut().zip(counters) {
            if let Some(r) = rate(b, n, secs) {
                out.push((format!("nic/{nic}/{dir}_per_second"), r));
                *sum += r;
            }
        }
    }
    if !now.nics.is_empty() {
        for (dir, r) in ["rx_bytes", "rx_packets", "tx_bytes", "tx_packets"]
            .iter()
            .zip(all)
        {
            out.push((format!("net_{dir}_per_second"), r));
        }
    }
    out
}

/// A host's counters at one collection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostReading {
    /// (busy, total) CPU ticks of all CPUs.
    pub cpu: Option<(u64, u64)>,
    /// (total, available) memory bytes.
    pub memory: Option<(u64, u64)>,
    pub load1: Option<f64>,
    /// (total, used) bytes of the file system holding the agent's state.
    pub disk: Option<(u64, u64)>,
    /// Every device's counters but loopback and the platform's own (`yn…`), summed.
    pub net: Option<DevCounters>,
}

/// A host's samples: `cpu_percent`, `memory_{used,total}_bytes`, `load1`,
/// `disk_{used,total}_bytes`, `net_{rx,tx}_{bytes,packets}_per_second`.
pub fn host_samples(before: Option<&HostReading>, now: &HostReading, secs: f64) -> Samples {
    let mut out = Samples::new();
    if let Some((total, available)) = now.memory {
        out.push((
            "memory_used_bytes".into(),
            total.saturating_sub(available) as f64,
        ));
        out.push(("memory_total_bytes".into(), total as f64));
    }
    if let Some(load) = now.load1 {
        out.push(("load1".into(), load));
    }
    if let Some((total, used)) = now.disk {
        out.push(("disk_used_bytes".into(), used as f64));
        out.push(("disk_total_bytes".into(), total as f64));
    }
    let Some(before) = before else {
        return out;
    };
    if let (Some((b0, t0)), Some((b1, t1))) = (before.cpu, now.cpu) {
        if t1 > t0 && b1 >= b0 {
            out.push((
                "cpu_percent".into(),
                (b1 - b0) as f64 / (t1 - t0) as f64 * 100.0,
            ));
        }
    }
    if let (Some(b), Some(n)) = (before.net, now.net) {
        push_rate(
            &mut out,
            "net_rx_bytes_per_second",
            Some(b.rx_bytes),
            Some(n.rx_bytes),
            secs,
        );
        push_rate(
            &mut out,
            "net_tx_bytes_per_second",
            Some(b.tx_bytes),
            Some(n.tx_bytes),
            secs,
        );
        push_rate(
            &mut out,
            "net_rx_packets_per_second",
            Some(b.rx_packets),
            Some(n.rx_packets),
            secs,
        );
        push_rate(
            &mut out,
            "net_tx_packets_per_second",
            Some(b.tx_packets),
            Some(n.tx_packets),
            secs,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SHAPE: VmShape = VmShape {
        vcpus: 2,
        memory_bytes: 1 << 30,
    };

    fn value(samples: &Samples, name: &str) -> Option<f64> {
        samples.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    #[test]
    fn a_first_reading_gives_gauges_only() {
        let now = VmReading {
            cpu_ticks: Some(500),
            rss_bytes: Some(100 << 20),
            ..Default::default()
        };
        let s = vm_samples(None, &now, 10.0, SHAPE);
        assert_eq!(value(&s, "memory_used_bytes"), Some((100 << 20) as f64));
        assert_eq!(value(&s, "cpu_percent"), None);
    }

    #[test]
    fn cpu_is_a_share_of_all_vcpus_and_nic_directions_are_the_guests() {
        let tap = |rx, tx| DevCounters {
            rx_bytes: rx,
            rx_packets: rx / 100,
            tx_bytes: tx,
            tx_packets: tx / 100,
        };
        let before = VmReading {
            cpu_ticks: Some(1000),
            nics: [("nic-a".to_string(), tap(0, 0))].into(),
            disk: Some(DiskCounters::default()),
            ..Default::default()
        };
        let now = VmReading {
            // One vCPU of two busy for 10 s: 1000 ticks.
            cpu_ticks: Some(2000),
            nics: [("nic-a".to_string(), tap(1_000, 50_000))].into(),
            disk: Some(DiskCounters {
                write_bytes: 10 << 20,
                write_ops: 100,
                ..Default::default()
            }),
            ..Default::default()
        };
        let s = vm_samples(Some(&before), &now, 10.0, SHAPE);
        assert_eq!(value(&s, "cpu_percent"), Some(50.0));
        assert_eq!(value(&s, "nic/nic-a/rx_bytes_per_second"), Some(5_000.0));
        assert_eq!(value(&s, "nic/nic-a/tx_bytes_per_second"), Some(100.0));
        assert_eq!(value(&s, "net_rx_bytes_per_second"), Some(5_000.0));
        assert_eq!(
            value(&s, "disk_write_bytes_per_second"),
            Some((1 << 20) as f64)
        );
        assert_eq!(value(&s, "disk_write_ops_per_second"), Some(10.0));
    }

    #[test]
    fn a_missed_reading_is_made_up_by_the_next_one() {
        let disk = |w| DiskCounters {
            write_bytes: w,
            ..Default::default()
        };
        let first = VmReading {
            disk: Some(disk(0)),
            ..Default::default()
        };
        let mut missed = VmReading::default();
        missed.carry_from(&first);
        let third = VmReading {
            disk: Some(disk(300)),
            ..Default::default()
        };
        let total: f64 = [(&first, &missed), (&missed, &third)]
            .iter()
            .filter_map(|(b, n)| {
                value(
                    &vm_samples(Some(b), n, 10.0, SHAPE),
                    "disk_write_bytes_per_second",
                )
            })
            .map(|rate| rate * 10.0)
            .sum();
        assert_eq!(total, 300.0);
    }

    #[test]
    fn resource_counters_become_rates_once_seen_twice() {
        let before: Counters = [("lb/lb-1/http/connections".to_string(), 100)].into();
        let now: Counters = [
            ("lb/lb-1/http/connections".to_string(), 150),
            ("lb/lb-1/tcp/connections".to_string(), 7),
        ]
        .into();
        let s = counter_samples(&before, &now, 10.0, false);
        assert_eq!(
            s,
            [("lb/lb-1/http/connections_per_second".to_string(), 5.0)]
        );
        let s = counter_samples(&before, &now, 10.0, true);
        assert_eq!(
            s[1],
            ("lb/lb-1/tcp/connections_per_second".to_string(), 0.7)
        );
        let reset: Counters = [("lb/lb-1/http/connections".to_string(), 30)].into();
        let s = counter_samples(&before, &reset, 10.0, false);
        assert_eq!(
            s,
            [("lb/lb-1/http/connections_per_second".to_string(), 3.0)]
        );
    }

    #[test]
    fn a_counter_that_went_back_gives_no_rate() {
        let before = VmReading {
            cpu_ticks: Some(5000),
            ..Default::default()
        };
        let now = VmReading {
            cpu_ticks: Some(10),
            ..Default::default()
        };
        assert_eq!(
            value(&vm_samples(Some(&before), &now, 10.0, SHAPE), "cpu_percent"),
            None
        );
    }

    #[test]
    fn host_cpu_is_the_busy_share_of_all_ticks() {
        let before = HostReading {
            cpu: Some((100, 1000)),
            ..Default::default()
        };
        let now = HostReading {
            cpu: Some((400, 2000)),
            memory: Some((8 << 30, 6 << 30)),
            ..Default::default()
        };
        let s = host_samples(Some(&before), &now, 10.0);
        assert_eq!(value(&s, "cpu_percent"), Some(30.0));
        assert_eq!(value(&s, "memory_used_bytes"), Some((2u64 << 30) as f64));
    }

    proptest! {
        #[test]
        fn vm_cpu_stays_within_0_and_100_percent(t0 in 0u64..1 << 40, d in 0u64..1 << 20, secs in 0.1f64..100.0, vcpus in 1u32..64) {
            let before = VmReading { cpu_ticks: Some(t0), ..Default::default() };
            let now = VmReading { cpu_ticks: Some(t0 + d), ..Default::default() };
            let shape = VmShape { vcpus, memory_bytes: 1 };
            let s = vm_samples(Some(&before), &now, secs, shape);
            let cpu = value(&s, "cpu_percent").unwrap();
            prop_assert!((0.0..=100.0).contains(&cpu));
        }
    }
}
