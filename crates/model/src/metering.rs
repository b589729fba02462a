//! Metering (issue #17): what each project's resources used, to the second, rolled up into
//! hourly usage records, and what that costs under the admin's price list. Pure: the
//! metering controller (`controller/src/metering.rs`) reads the objects, calls
//! [`roll_up`] once per project and pass, and writes the ledger and the closed hours in
//! one compare-and-swap transaction (`store/src/metering.rs`); the API prices them with
//! [`report`]. Design and limits: docs/metering.md.
//!
//! Every resource has a cursor in its project's [`Ledger`]: the time up to which it has
//! been accounted. A pass accounts only the billable time after the cursor and moves the
//! cursor to the pass's `now`, so running a pass twice, or after a restart, never counts a
//! second twice.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    ApiError, Bucket, Doc, ElasticIp, Instance, InstancePhase, LoadBalancer, Snapshot, Volume,
};

/// Seconds in the hour records roll up to.
pub const HOUR_SECS: i64 = 3600;
const GIB: f64 = (1u64 << 30) as f64;

/// What is measured, each a quantity × seconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Meter {
    /// vCPUs × seconds running.
    VcpuSeconds,
    /// GiB of memory × seconds running.
    MemoryGibSeconds,
    /// GiB of volume × seconds it exists (per pool: the line's `pool`).
    VolumeGibSeconds,
    /// GiB of snapshot × seconds it exists.
    SnapshotGibSeconds,
    /// Seconds an elastic IP is held.
    EipSeconds,
    /// An elastic IP's bandwidth cap in Mbit/s × seconds held (0 without a cap).
    EipMbitSeconds,
    /// Seconds a load balancer exists.
    LbSeconds,
    /// GiB stored in a bucket × seconds (as the gateway last counted it).
    BucketGibSeconds,
}

impl Meter {
    pub const ALL: [Meter; 8] = [
        Meter::VcpuSeconds,
        Meter::MemoryGibSeconds,
        Meter::VolumeGibSeconds,
        Meter::SnapshotGibSeconds,
        Meter::EipSeconds,
        Meter::EipMbitSeconds,
        Meter::LbSeconds,
        Meter::BucketGibSeconds,
    ];

    /// The unit, for people: `90 vCPU·s`.
    pub fn unit(self) -> &'static str {
        match self {
            Meter::VcpuSeconds => "vCPU·s",
            Meter::MemoryGibSeconds => "GiB·s RAM",
            Meter::VolumeGibSeconds => "GiB·s vol",
            Meter::SnapshotGibSeconds => "GiB·s snap",
            Meter::EipSeconds => "EIP·s",
            Meter::EipMbitSeconds => "Mbit·s",
            Meter::LbSeconds => "LB·s",
            Meter::BucketGibSeconds => "GiB·s S3",
        }
    }
}

/// Quantities by meter.
pub type Meters = BTreeMap<Meter, f64>;

/// A time a resource is billable: from `start` to `end` (unix seconds; `None`: still).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub end: Option<i64>,
}

/// One resource as a pass sees it: what it accrues per billable second, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Metered {
    pub id: String,
    /// Its kind, as the API's paths name it (`instances`, `volumes`, …).
    pub kind: String,
    pub name: String,
    /// The storage pool of a volume.
    pub pool: Option<String>,
    /// Quantity per billable second, by meter.
    pub rates: Meters,
    pub billable: Vec<Span>,
}

/// What one resource used in one hour (or, in a report, over the period).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UsageLine {
    /// The resource's id.
    pub resource: String,
    /// Its kind (`instances`, `volumes`, `snapshots`, `elastic-ips`, `load-balancers`).
    pub kind: String,
    pub name: String,
    /// The storage pool (volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Billable seconds.
    pub seconds: u64,
    pub meters: Meters,
}

/// A project's usage in one hour, stored once the hour is over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UsageRecord {
    pub project: String,
    /// The hour's start, unix seconds.
    pub hour: i64,
    pub lines: Vec<UsageLine>,
}

/// How far one resource has been accounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Unix seconds: nothing before is ever counted again.
    pub until: i64,
    /// It was billable at `until` (an instance then running).
    #[serde(default)]
    pub running: bool,
}

/// A project's metering state: the cursors and the open hour's lines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub project: String,
    /// The time of the last pass (unix seconds).
    pub last_pass: i64,
    pub cursors: BTreeMap<String, Cursor>,
    /// Start of the open hour.
    pub hour: i64,
    /// What the open hour holds so far, by resource id.
    pub open: BTreeMap<String, UsageLine>,
}

/// What a pass produced: the new ledger and what closed hours gained.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    pub ledger: Ledger,
    /// Additions to hours that are over (merge them into stored records: [`merge`]).
    pub closed: Vec<UsageRecord>,
}

/// The start of the hour `t` is in.
pub fn hour_of(t: i64) -> i64 {
    t.div_euclid(HOUR_SECS) * HOUR_SECS
}

/// One pass over a project: accounts each resource's billable time between its cursor
/// and `now`, split at hour boundaries. Resources absent from `resources` (deleted) leave
/// the ledger. `now` never goes back before the ledger's last pass.
pub fn roll_up(ledger: &Ledger, resources: &[Metered], now: i64) -> Pass {
    let now = now.max(ledger.last_pass);
    let mut hours: BTreeMap<i64, BTreeMap<String, UsageLine>> = BTreeMap::new();
    if !ledger.open.is_empty() {
        hours.insert(ledger.hour, ledger.open.clone());
    }
    let mut cursors = BTreeMap::new();
    for r in resources {
        let from = ledger.cursors.get(&r.id).map_or(i64::MIN, |c| c.until);
        let spans = union(&r.billable, now);
        for &(a, b) in &spans {
            account(&mut hours, r, a.max(from), b);
        }
        let running = (r.billable.iter()).any(|s| s.start <= now && s.end.is_none_or(|e| e > now));
        cursors.insert(
            r.id.clone(),
            Cursor {
                until: now,
                running,
            },
        );
    }
    let open_hour = hour_of(now);
    let open = hours.remove(&open_hour).unwrap_or_default();
    let closed = (hours.into_iter())
        .map(|(hour, lines)| UsageRecord {
            project: ledger.project.clone(),
            hour,
            lines: lines.into_values().collect(),
        })
        .collect();
    let ledger = Ledger {
        project: ledger.project.clone(),
        last_pass: now,
        cursors,
        hour: open_hour,
        open,
    };
    Pass { ledger, closed }
}

/// The spans cut at `now` and merged where they overlap, in order.
fn union(spans: &[Span], now: i64) -> Vec<(i64, i64)> {
    let mut cut: Vec<(i64, i64)> = (spans.iter())
        .map(|s| (s.start, s.end.unwrap_or(now).min(now)))
        .filter(|(a, b)| a < b)
        .collect();
    cut.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(cut.len());
    for (a, b) in cut {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Adds `r`'s use from `a` to `b` to the hours it falls in.
fn account(
    hours: &mut BTreeMap<i64, BTreeMap<String, UsageLine>>,
    r: &Metered,
    mut a: i64,
    b: i64,
) {
    while a < b {
        let hour = hour_of(a);
        let end = b.min(hour + HOUR_SECS);
        let line = (hours.entry(hour).or_default())
            .entry(r.id.clone())
            .or_insert_with(|| line_of(r));
        add(line, &r.rates, (end - a) as u64);
        a = end;
    }
}

fn line_of(r: &Metered) -> UsageLine {
    UsageLine {
        resource: r.id.clone(),
        kind: r.kind.clone(),
        name: r.name.clone(),
        pool: r.pool.clone(),
        seconds: 0,
        meters: Meters::new(),
    }
}

fn add(line: &mut UsageLine, rates: &Meters, secs: u64) {
    line.seconds += secs;
    for (m, rate) in rates {
        *line.meters.entry(*m).or_default() += rate * secs as f64;
    }
}

/// Adds one line's use to another's (same resource; the newer name and pool win).
fn add_line(into: &mut UsageLine, more: &UsageLine) {
    into.seconds += more.seconds;
    into.name.clone_from(&more.name);
    into.pool.clone_from(&more.pool);
    for (m, q) in &more.meters {
        *into.meters.entry(*m).or_default() += q;
    }
}

/// A stored hour record with a pass's addition to the same hour merged in.
pub fn merge(stored: Option<UsageRecord>, addition: &UsageRecord) -> UsageRecord {
    let mut out = stored.unwrap_or_else(|| UsageRecord {
        lines: Vec::new(),
        ..addition.clone()
    });
    for line in &addition.lines {
        match out.lines.iter_mut().find(|l| l.resource == line.resource) {
            Some(l) => add_line(l, line),
            None => out.lines.push(line.clone()),
        }
    }
    out.lines.sort_by(|a, b| a.resource.cmp(&b.resource));
    out
}

/// Unix seconds of an RFC 3339 time.
pub fn epoch_of(stamp: &str) -> Option<i64> {
    let t =
        time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    Some(t.unix_timestamp())
}

/// RFC 3339 (UTC, whole seconds) of unix seconds.
pub fn rfc3339_of(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A report's bound: RFC 3339, or a time ago like `90s`, `10m`, `1h`, `30d` (or plain
/// seconds) before `now`.
pub fn when_of(s: &str, now: i64) -> Option<i64> {
    if let Some(t) = epoch_of(s) {
        return Some(t);
    }
    let (num, per) = match s.char_indices().last()? {
        (i, 's') => (&s[..i], 1),
        (i, 'm') => (&s[..i], 60),
        (i, 'h') => (&s[..i], 3600),
        (i, 'd') => (&s[..i], 86_400),
        _ => (s, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ago = num.parse::<i64>().ok()?.checked_mul(per)?;
    now.checked_sub(ago)
}

/// The start of the (UTC) month `t` is in.
pub fn month_start(t: i64) -> i64 {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.replace_day(1).ok())
        .map_or(0, |d| d.replace_time(time::Time::MIDNIGHT).unix_timestamp())
}

/// Why an object cannot be metered (the controller skips it and says why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} is not an RFC 3339 time: {value:?}")]
pub struct BadTime {
    pub field: &'static str,
    pub value: String,
}

fn time_of(field: &'static str, v: Option<&String>) -> Result<Option<i64>, BadTime> {
    v.map(|s| {
        epoch_of(s).ok_or_else(|| BadTime {
            field,
            value: s.clone(),
        })
    })
    .transpose()
}

fn metered_of<S, T>(
    doc: &crate::Resource<S, T>,
    kind: &str,
    rates: Meters,
    billable: Vec<Span>,
) -> Metered {
    Metered {
        id: doc.metadata.id.clone(),
        kind: kind.to_string(),
        name: doc.metadata.name.clone(),
        pool: None,
        rates,
        billable,
    }
}

/// From creation until the delete request (volumes, snapshots, elastic IPs, load balancers).
fn lifetime<S, T>(doc: &crate::Resource<S, T>) -> Result<Vec<Span>, BadTime> {
    let created = time_of("metadata.created", Some(&doc.metadata.created))?;
    let deleting = time_of("metadata.deleting", doc.metadata.deleting.as_ref())?;
    Ok(created
        .map(|start| Span {
            start,
            end: deleting,
        })
        .into_iter()
        .collect())
}

/// An instance: billable while it runs, from `status.started_at` to `status.stopped_at`
/// (the agent's times), or to the delete request, or still. A stop and a start between two
/// passes: the ledger knew it ran at its cursor, so it ran until `stopped_at`.
pub fn instance_metered(doc: &Doc<Instance>, cursor: Option<&Cursor>) -> Result<Metered, BadTime> {
    let s = &doc.status;
    let started = time_of("status.started_at", s.started_at.as_ref())?;
    let stopped = time_of("status.stopped_at", s.stopped_at.as_ref())?;
    let deleting = time_of("metadata.deleting", doc.metadata.deleting.as_ref())?;
    let mut spans = Vec::new();
    if let Some(start) = started {
        match stopped {
            Some(stop) if stop >= start => spans.push(Span {
                start,
                end: Some(stop),
            }),
            _ if may_run(s.phase) => spans.push(Span {
                start,
                end: deleting,
            }),
            _ => {}
        }
        if let (Some(stop), Some(c)) = (stopped, cursor) {
            if stop < start && c.running {
                spans.push(Span {
                    start: c.until,
                    end: Some(stop),
                });
            }
        }
    }
    if let Some(d) = deleting {
        for s in &mut spans {
            s.end = Some(s.end.map_or(d, |e| e.min(d)));
        }
    }
    let rates = Meters::from([
        (Meter::VcpuSeconds, s.vcpus as f64),
        (Meter::MemoryGibSeconds, s.memory_mib as f64 / 1024.0),
    ]);
    Ok(metered_of(doc, "instances", rates, spans))
}

/// Phases in which a started instance may be running (a stop records `stopped_at`).
fn may_run(phase: InstancePhase) -> bool {
    use InstancePhase::*;
    matches!(phase, Starting | Running | Stopping | Deleting)
}

pub fn volume_metered(doc: &Doc<Volume>) -> Result<Metered, BadTime> {
    let gib = doc.spec.size_bytes as f64 / GIB;
    let rates = Meters::from([(Meter::VolumeGibSeconds, gib)]);
    let mut m = metered_of(doc, "volumes", rates, lifetime(doc)?);
    m.pool = Some(doc.spec.pool.clone());
    Ok(m)
}

pub fn snapshot_metered(doc: &Doc<Snapshot>) -> Result<Metered, BadTime> {
    let gib = doc.status.size_bytes as f64 / GIB;
    let rates = Meters::from([(Meter::SnapshotGibSeconds, gib)]);
    Ok(metered_of(doc, "snapshots", rates, lifetime(doc)?))
}

pub fn eip_metered(doc: &Doc<ElasticIp>) -> Result<Metered, BadTime> {
    let cap = doc.spec.bandwidth_mbit.unwrap_or(0) as f64;
    let rates = Meters::from([(Meter::EipSeconds, 1.0), (Meter::EipMbitSeconds, cap)]);
    Ok(metered_of(doc, "elastic-ips", rates, lifetime(doc)?))
}

pub fn lb_metered(doc: &Doc<LoadBalancer>) -> Result<Metered, BadTime> {
    let rates = Meters::from([(Meter::LbSeconds, 1.0)]);
    Ok(metered_of(doc, "load-balancers", rates, lifetime(doc)?))
}

/// A bucket accrues the GiB it holds (its last usage reading) while it exists.
pub fn bucket_metered(doc: &Doc<Bucket>) -> Result<Metered, BadTime> {
    let bytes = doc.status.usage.as_ref().map_or(0, |u| u.bytes);
    let rates = Meters::from([(Meter::BucketGibSeconds, bytes as f64 / GIB)]);
    Ok(metered_of(doc, "buckets", rates, lifetime(doc)?))
}

/// The admin's prices, per unit-hour (`PUT /v1/price-list`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceList {
    /// The currency the prices are in (a label: `USD`, `EUR`, `credits`).
    #[schemars(length(min = 1, max = 16))]
    pub currency: String,
    /// Per vCPU-hour running.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub vcpu_hour: f64,
    /// Per GiB of memory-hour running.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub memory_gib_hour: f64,
    /// Per volume GiB-hour, in pools without a price of their own.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub volume_gib_hour: f64,
    /// Per volume GiB-hour, by pool.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_gib_hour_by_pool: BTreeMap<String, f64>,
    /// Per snapshot GiB-hour.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub snapshot_gib_hour: f64,
    /// Per elastic-IP-hour.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub eip_hour: f64,
    /// Per Mbit/s of bandwidth cap-hour.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub eip_mbit_hour: f64,
    /// Per load-balancer-hour.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub lb_hour: f64,
    /// Per GiB-hour stored in buckets.
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub bucket_gib_hour: f64,
}

impl Default for PriceList {
    fn default() -> Self {
        PriceList {
            currency: "USD".into(),
            vcpu_hour: 0.0,
            memory_gib_hour: 0.0,
            volume_gib_hour: 0.0,
            volume_gib_hour_by_pool: BTreeMap::new(),
            snapshot_gib_hour: 0.0,
            eip_hour: 0.0,
            eip_mbit_hour: 0.0,
            lb_hour: 0.0,
            bucket_gib_hour: 0.0,
        }
    }
}

impl PriceList {
    /// Prices are finite and not negative; the currency is a short printable label.
    pub fn validate(&self) -> Result<(), ApiError> {
        let c = &self.currency;
        if c.is_empty() || c.chars().count() > 16 || c.chars().any(char::is_control) {
            let why = "currency is 1–16 printable characters";
            return Err(ApiError::invalid_field("currency", why));
        }
        let named = [
            ("vcpu_hour", self.vcpu_hour),
            ("memory_gib_hour", self.memory_gib_hour),
            ("volume_gib_hour", self.volume_gib_hour),
            ("snapshot_gib_hour", self.snapshot_gib_hour),
            ("eip_hour", self.eip_hour),
            ("eip_mbit_hour", self.eip_mbit_hour),
            ("lb_hour", self.lb_hour),
            ("bucket_gib_hour", self.bucket_gib_hour),
        ];
        let pools = (self.volume_gib_hour_by_pool.iter())
            .map(|(p, v)| (format!("volume_gib_hour_by_pool.{p}"), *v));
        let all = named.iter().map(|(f, v)| (f.to_string(), *v)).chain(pools);
        for (field, v) in all {
            if !v.is_finite() || v < 0.0 {
                let why = format!("{field} must be a finite number ≥ 0, not {v}");
                return Err(ApiError::invalid_field(&field, why));
            }
        }
        Ok(())
    }

    /// The price of one unit-hour of `meter` (a volume's: in `pool`).
    pub fn per_hour(&self, meter: Meter, pool: Option<&str>) -> f64 {
        match meter {
            Meter::VcpuSeconds => self.vcpu_hour,
            Meter::MemoryGibSeconds => self.memory_gib_hour,
            Meter::VolumeGibSeconds => pool
                .and_then(|p| self.volume_gib_hour_by_pool.get(p))
                .copied()
                .unwrap_or(self.volume_gib_hour),
            Meter::SnapshotGibSeconds => self.snapshot_gib_hour,
            Meter::EipSeconds => self.eip_hour,
            Meter::EipMbitSeconds => self.eip_mbit_hour,
            Meter::LbSeconds => self.lb_hour,
            Meter::BucketGibSeconds => self.bucket_gib_hour,
        }
    }

    /// What a line costs, rounded to millionths.
    pub fn cost(&self, line: &UsageLine) -> f64 {
        let raw: f64 = (line.meters.iter())
            .map(|(m, q)| q / HOUR_SECS as f64 * self.per_hour(*m, line.pool.as_deref()))
            .sum();
        micro(raw)
    }
}

fn micro(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// One resource's use over a report's period, priced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PricedLine {
    #[serde(flatten)]
    pub line: UsageLine,
    pub cost: f64,
}

/// `GET /v1/usage`: a project's use over a period, per resource, priced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UsageReport {
    pub project: String,
    /// The period, RFC 3339: whole hours from the hour `from` is in up to `to`.
    pub from: String,
    pub to: String,
    pub currency: String,
    pub lines: Vec<PricedLine>,
    /// Each meter summed over the lines.
    pub totals: Meters,
    pub total_cost: f64,
}

/// The report of `records` (the hours of the period, the open one included), priced.
pub fn report(
    project: &str,
    (from, to): (i64, i64),
    records: &[UsageRecord],
    prices: &PriceList,
) -> UsageReport {
    let mut by_resource: BTreeMap<&str, UsageLine> = BTreeMap::new();
    let mut sorted: Vec<&UsageRecord> = records.iter().collect();
    sorted.sort_by_key(|r| r.hour);
    for line in sorted.iter().flat_map(|r| &r.lines) {
        (by_resource.entry(&line.resource))
            .and_modify(|l| add_line(l, line))
            .or_insert_with(|| line.clone());
    }
    let mut totals = Meters::new();
    let lines: Vec<PricedLine> = (by_resource.into_values())
        .map(|line| {
            for (m, q) in &line.meters {
                *totals.entry(*m).or_default() += q;
            }
            PricedLine {
                cost: prices.cost(&line),
                line,
            }
        })
        .collect();
    let total_cost = micro(lines.iter().map(|l| l.cost).sum());
    UsageReport {
        project: project.to_string(),
        from: rfc3339_of(from),
        to: rfc3339_of(to),
        currency: prices.currency.clone(),
        lines,
        totals,
        total_cost,
    }
}

#[cfg(test)]
mod tests;
