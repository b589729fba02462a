//! Readers of the kernel's accounting files (`/proc`), as pure parsers of their text
//! and thin functions that read them.

use std::collections::BTreeMap;

/// Clock ticks per second of `/proc`'s CPU times (`USER_HZ`, 100 on every Linux ABI
/// the agent runs on).
pub const USER_HZ: f64 = 100.0;

/// utime + stime (ticks) of one `/proc/<pid>[/task/<tid>]/stat` line.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count from the
    // last ')'. After it: state (3), …, utime (14), stime (15).
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of a `/proc/<pid>/status`, in bytes.
pub fn status_rss_bytes(status: &str) -> Option<u64> {
    kib_field(status, "VmRSS:")
}

/// A `Name:   123 kB` line of `/proc/meminfo` or `/proc/<pid>/status`, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

/// The host's memory: (total, available) bytes of `/proc/meminfo`.
pub fn meminfo(text: &str) -> Option<(u64, u64)> {
    Some((
        kib_field(text, "MemTotal:")?,
        kib_field(text, "MemAvailable:")?,
    ))
}

/// The aggregate `cpu` line of `/proc/stat`: (busy, total) ticks. Idle and iowait are
/// not busy; guest time is already inside user time.
pub fn stat_cpu(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = (line.split_whitespace().skip(1))
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// The 1-minute load average of `/proc/loadavg`.
pub fn load1(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// A device's counters in `/proc/net/dev`, as the device sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// Every device of a `/proc/net/dev`.
pub fn net_dev(text: &str) -> BTreeMap<String, DevCounters> {
    let parse = |line: &str| -> Option<(String, DevCounters)> {
        let (name, rest) = line.split_once(':')?;
        let f: Vec<u64> = (rest.split_whitespace())
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let counters = DevCounters {
            rx_bytes: *f.first()?,
            rx_packets: *f.get(1)?,
            tx_bytes: *f.get(8)?,
            tx_packets: *f.get(9)?,
        };
        Some((name.trim().to_owned(), counters))
    };
    text.lines().skip(2).filter_map(parse).collect()
}

/// CPU ticks of the vCPU threads of QEMU `pid` (threads named `CPU n/KVM` or
/// `CPU n/TCG`), or of the whole process when it names none.
pub fn vcpu_ticks(pid: i32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut sum = None;
    for task in tasks.flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if !comm.starts_with("CPU ") {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        if let Some(t) = stat_cpu_ticks(&stat) {
            *sum.get_or_insert(0) += t;
        }
    }
    sum.or_else(|| stat_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
}

/// The resident memory of process `pid`, in bytes.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    status_rss_bytes(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_user_plus_system_time_even_with_spaces_in_the_name() {
        let line = "4242 (CPU 0/KVM) S 1 4240 4240 0 -1 4194368 0 0 0 0 1234 56 0 0 20 0 3 0";
        assert_eq!(stat_cpu_ticks(line), Some(1290));
        assert_eq!(stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn memory_lines_are_read_in_bytes() {
        let status = "Name:\tqemu\nVmPeak:\t  900 kB\nVmRSS:\t  2048 kB\n";
        assert_eq!(status_rss_bytes(status), Some(2 << 20));
        let text = "MemTotal:       16384 kB\nMemFree: 1 kB\nMemAvailable:    4096 kB\n";
        assert_eq!(meminfo(text), Some((16 << 20, 4 << 20)));
    }

    #[test]
    fn the_cpu_line_counts_idle_and_iowait_as_not_busy() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(stat_cpu(stat), Some((150, 1000)));
        assert_eq!(load1("0.52 0.40 0.31 2/345 6789\n"), Some(0.52));
    }

    #[test]
    fn net_dev_reads_each_device_from_its_own_side() {
        let text = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
ynt0a1b2c3d4e: 5000 40 0 0 0 0 0 0 7000 50 0 0 0 0 0 0
";
        let devs = net_dev(text);
        assert_eq!(devs.len(), 2);
        let tap = devs["ynt0a1b2c3d4e"];
        assert_eq!((tap.rx_bytes, tap.rx_packets), (5000, 40));
        assert_eq!((tap.tx_bytes, tap.tx_packets), (7000, 50));
    }
}
