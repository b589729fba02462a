//! Prometheus text metrics for the API, without a registry dependency.
//!
//! Every label value comes from a closed set, so no request can grow the
//! series: methods outside the standard ones count as `OTHER`, routes are the
//! matched route templates (`/v1/instances/{id}`, never the raw path) or
//! `unmatched`, statuses are the server's own. What `/metrics` shows without a
//! token is safe for anyone: these counters and process figures (docs/metrics.md).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::Method;

const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// A gauge line: name, help text, value.
pub type Gauge = (&'static str, &'static str, f64);

/// The route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The method label: a standard method's name, anything else `OTHER`.
pub fn method_label(m: &Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "OTHER",
    }
}

pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    started: SystemTime,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Mutex::default(),
            latency: Mutex::default(),
            started: SystemTime::now(),
        }
    }
}

impl Metrics {
    /// Counts one request. `method` is a [`method_label`] (a static string:
    /// never a client's bytes); `route` the matched route template (None: no
    /// route matched).
    pub fn observe(&self, method: &'static str, route: Option<&str>, status: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let route = route.unwrap_or(UNMATCHED);
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((method, route.to_string(), status))
            .or_default() += 1;
        let mut lat = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = lat.entry(route.to_string()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// Figures of this process safe to show anyone: start time, resident
    /// memory, threads and open descriptors (the last three from /proc).
    pub fn process_gauges(&self) -> Vec<Gauge> {
        let start = self
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64().floor());
        let mut g = vec![(
            "process_start_time_seconds",
            "Start time of the API since the Unix epoch, in seconds.",
            start,
        )];
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        if let Some(kib) = proc_status_field(&status, "VmRSS:") {
            g.push((
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                kib * 1024.0,
            ));
        }
        if let Some(n) = proc_status_field(&status, "Threads:") {
            g.push(("process_threads", "OS threads of the process.", n));
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            let n = fds.count() as f64;
            g.push(("process_open_fds", "Open file descriptors.", n));
        }
        g
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP yunhan_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE yunhan_http_requests_total counter\n");
        for ((m, r, s), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "yunhan_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{s}\"}} {n}"
            );
        }
        out.push_str("# HELP yunhan_http_request_duration_seconds Request latency by route.\n");
        out.push_str("# TYPE yunhan_http_request_duration_seconds histogram\n");
        for (r, h) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "yunhan_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "yunhan_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "yunhan_http_request_duration_seconds_sum{{route=\"{r}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "yunhan_http_request_duration_seconds_count{{route=\"{r}\"}} {}",
                h.count
            );
        }
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

/// The number after `field` in /proc/self/status (`VmRSS:  1234 kB` → 1234).
fn proc_status_field(status: &str, field: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_keep_their_name_others_are_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        for odd in ["get", "PURGE", "BREW", &"X".repeat(2048)] {
            let m = Method::from_bytes(odd.as_bytes()).unwrap();
            assert_eq!(method_label(&m), "OTHER", "{odd:.20}");
        }
    }

    #[test]
    fn odd_methods_do_not_grow_the_exposition() {
        let m = Metrics::default();
        let odd = |i: usize| Method::from_bytes(format!("M{i}{}", "Z".repeat(2000)).as_bytes());
        let odd = |i| method_label(&odd(i).unwrap());
        m.observe(odd(0), Some("/v1/instances"), 405, Duration::ZERO);
        m.observe("GET", None, 404, Duration::ZERO);
        let before = m.render(&[]);
        for i in 1..1000 {
            m.observe(odd(i), Some("/v1/instances"), 405, Duration::ZERO);
            m.observe("GET", None, 404, Duration::ZERO);
        }
        let after = m.render(&[]);
        assert_eq!(before.lines().count(), after.lines().count(), "{after}");
        // Only counter values grow (1 → 1000: three digits a line).
        assert!(after.len() <= before.len() + 3 * before.lines().count());
        assert!(!after.contains("ZZZ"), "{after}");
        assert!(after.contains("method=\"OTHER\",route=\"/v1/instances\",status=\"405\"} 1000"));
        assert!(after.contains("method=\"GET\",route=\"unmatched\",status=\"404\"} 1000"));
    }

    #[test]
    fn process_figures_come_from_proc() {
        let status = "Name:\tx\nVmRSS:\t  2048 kB\nThreads:\t7\n";
        assert_eq!(proc_status_field(status, "VmRSS:"), Some(2048.0));
        assert_eq!(proc_status_field(status, "Threads:"), Some(7.0));
        assert_eq!(proc_status_field(status, "VmSwap:"), None);
        let names: Vec<_> = Metrics::default()
            .process_gauges()
            .iter()
            .map(|g| g.0)
            .collect();
        assert!(names.contains(&"process_start_time_seconds"), "{names:?}");
    }
}
