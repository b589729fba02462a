use proptest::prelude::*;

use super::*;
use crate::{InstanceSpec, InstanceStatus, Metadata, Resource};

fn vm(id: &str, vcpus: f64, billable: Vec<Span>) -> Metered {
    Metered {
        id: id.into(),
        kind: "instances".into(),
        name: id.into(),
        pool: None,
        rates: Meters::from([(Meter::VcpuSeconds, vcpus)]),
        billable,
    }
}

fn ledger() -> Ledger {
    Ledger {
        project: "prj-a".into(),
        ..Ledger::default()
    }
}

/// Every second accounted, by resource: the closed records' and the open hour's.
fn seconds_by_resource(records: &[UsageRecord], ledger: &Ledger) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let open = ledger.open.values();
    for l in records.iter().flat_map(|r| &r.lines).chain(open) {
        *out.entry(l.resource.clone()).or_default() += l.seconds;
    }
    out
}

/// Runs passes at `times` in order, merging closed hours like the controller does.
fn run(resources: &[Metered], times: &[i64]) -> (Vec<UsageRecord>, Ledger) {
    let mut stored: BTreeMap<i64, UsageRecord> = BTreeMap::new();
    let mut l = ledger();
    for &t in times {
        let pass = roll_up(&l, resources, t);
        for add in &pass.closed {
            let merged = merge(stored.remove(&add.hour), add);
            stored.insert(add.hour, merged);
        }
        l = pass.ledger;
    }
    (stored.into_values().collect(), l)
}

#[test]
fn a_vm_that_ran_90_seconds_is_90_vcpu_seconds_per_vcpu() {
    let t0 = 1_700_000_000;
    let r = [vm(
        "ins-1",
        2.0,
        vec![Span {
            start: t0,
            end: Some(t0 + 90),
        }],
    )];
    let (records, l) = run(&r, &[t0 + 30, t0 + 200]);
    let all: Vec<_> = records
        .iter()
        .flat_map(|r| &r.lines)
        .chain(l.open.values())
        .collect();
    assert_eq!(all.iter().map(|l| l.seconds).sum::<u64>(), 90);
    let vcpu: f64 = all.iter().map(|l| l.meters[&Meter::VcpuSeconds]).sum();
    assert_eq!(vcpu, 180.0);
}

#[test]
fn hours_are_split_at_their_boundaries_and_closed() {
    let h = 1_700_002_800; // an hour's start
    assert_eq!(hour_of(h), h);
    let r = [vm(
        "ins-1",
        1.0,
        vec![Span {
            start: h - 10,
            end: None,
        }],
    )];
    let pass = roll_up(&ledger(), &r, h + 5);
    assert_eq!(pass.closed.len(), 1);
    assert_eq!(pass.closed[0].hour, h - HOUR_SECS);
    assert_eq!(pass.closed[0].lines[0].seconds, 10);
    assert_eq!(pass.ledger.hour, h);
    assert_eq!(pass.ledger.open["ins-1"].seconds, 5);
    assert!(pass.ledger.cursors["ins-1"].running);
    // The next hour closes the open one.
    let next = roll_up(&pass.ledger, &r, h + HOUR_SECS + 1);
    assert_eq!(next.closed.len(), 1);
    assert_eq!(next.closed[0].hour, h);
    assert_eq!(next.closed[0].lines[0].seconds, 3600);
    assert_eq!(next.ledger.open["ins-1"].seconds, 1);
}

#[test]
fn deleted_resources_leave_the_ledger_and_time_never_goes_back() {
    let r = [vm(
        "ins-1",
        1.0,
        vec![Span {
            start: 100,
            end: None,
        }],
    )];
    let pass = roll_up(&ledger(), &r, 200);
    let gone = roll_up(&pass.ledger, &[], 300);
    assert!(gone.ledger.cursors.is_empty());
    assert_eq!(gone.ledger.open["ins-1"].seconds, 100, "what it used stays");
    let back = roll_up(&pass.ledger, &r, 150);
    assert_eq!(back.ledger, pass.ledger, "an earlier clock adds nothing");
}

fn instance(started: Option<&str>, stopped: Option<&str>, phase: InstancePhase) -> Doc<Instance> {
    let mut metadata = Metadata::new("ins-1", "web", Some("prj-a".into()));
    metadata.created = "2026-01-01T00:00:00Z".into();
    Resource {
        metadata,
        spec: InstanceSpec::default(),
        status: InstanceStatus {
            phase,
            vcpus: 2,
            memory_mib: 1536,
            started_at: started.map(String::from),
            stopped_at: stopped.map(String::from),
            ..InstanceStatus::default()
        },
    }
}

fn spans(doc: &Doc<Instance>, cursor: Option<&Cursor>) -> Vec<Span> {
    instance_metered(doc, cursor).unwrap().billable
}

#[test]
fn an_instance_is_billable_from_its_start_to_its_stop_to_the_second() {
    let t = |s: &str| epoch_of(s).unwrap();
    let (a, b) = ("2026-01-01T10:00:00Z", "2026-01-01T10:00:45Z");
    use InstancePhase::*;
    let running = instance(Some(a), None, Running);
    assert_eq!(
        spans(&running, None),
        [Span {
            start: t(a),
            end: None
        }]
    );
    let m = instance_metered(&running, None).unwrap();
    assert_eq!(m.rates[&Meter::VcpuSeconds], 2.0);
    assert_eq!(m.rates[&Meter::MemoryGibSeconds], 1.5);
    let stopped = instance(Some(a), Some(b), Stopped);
    assert_eq!(
        spans(&stopped, None),
        [Span {
            start: t(a),
            end: Some(t(b))
        }]
    );
    // Stopped without a known stop time (written before stopped_at existed): nothing more.
    assert_eq!(spans(&instance(Some(a), None, Stopped), None), []);
    assert_eq!(spans(&instance(None, None, Pending), None), []);
    // Deleted while running: until the delete request.
    let mut deleting = instance(Some(a), None, Deleting);
    deleting.metadata.deleting = Some("2026-01-01T10:01:00Z".into());
    assert_eq!(
        spans(&deleting, None),
        [Span {
            start: t(a),
            end: Some(t(a) + 60)
        }]
    );
    let mut bad = instance(Some("yesterday"), None, Running);
    assert_eq!(
        instance_metered(&bad, None).unwrap_err().to_string(),
        "status.started_at is not an RFC 3339 time: \"yesterday\""
    );
    bad.status.started_at = None;
    assert!(instance_metered(&bad, None).is_ok());
}

#[test]
fn a_stop_and_a_start_between_two_passes_keep_the_stop() {
    let t = |s: &str| epoch_of(s).unwrap();
    let (stop, start) = ("2026-01-01T10:00:45Z", "2026-01-01T10:00:50Z");
    let restarted = instance(Some(start), Some(stop), InstancePhase::Running);
    let cursor = Cursor {
        until: t(stop) - 15,
        running: true,
    };
    assert_eq!(
        spans(&restarted, Some(&cursor)),
        [
            Span {
                start: t(start),
                end: None
            },
            Span {
                start: cursor.until,
                end: Some(t(stop))
            },
        ]
    );
    let idle = Cursor {
        running: false,
        ..cursor
    };
    assert_eq!(
        spans(&restarted, Some(&idle)),
        [Span {
            start: t(start),
            end: None
        }]
    );
}

#[test]
fn volumes_snapshots_eips_and_lbs_bill_their_lifetime() {
    let mut metadata = Metadata::new("vol-1", "data", Some("prj-a".into()));
    metadata.created = "2026-01-01T00:00:00Z".into();
    metadata.deleting = Some("2026-01-01T00:00:30Z".into());
    let vol: Doc<Volume> = Resource {
        metadata,
        spec: crate::VolumeSpec {
            size_bytes: 3 << 30,
            pool: "ssd".into(),
            source: None,
            bootable: false,
            instance: None,
            restore: None,
        },
        status: Default::default(),
    };
    let m = volume_metered(&vol).unwrap();
    assert_eq!(m.pool.as_deref(), Some("ssd"));
    assert_eq!(m.rates[&Meter::VolumeGibSeconds], 3.0);
    let start = epoch_of("2026-01-01T00:00:00Z").unwrap();
    assert_eq!(
        m.billable,
        [Span {
            start,
            end: Some(start + 30)
        }]
    );
}

#[test]
fn prices_are_checked_and_priced_per_hour() {
    let mut p = PriceList {
        vcpu_hour: 0.036,
        volume_gib_hour: 0.001,
        volume_gib_hour_by_pool: BTreeMap::from([("ssd".into(), 0.002)]),
        ..PriceList::default()
    };
    p.validate().unwrap();
    let line = |pool: Option<&str>, m: Meter, q: f64| UsageLine {
        resource: "r".into(),
        kind: "k".into(),
        name: "n".into(),
        pool: pool.map(String::from),
        seconds: 90,
        meters: Meters::from([(m, q)]),
    };
    assert_eq!(p.cost(&line(None, Meter::VcpuSeconds, 180.0)), 0.0018);
    assert_eq!(
        p.cost(&line(Some("ssd"), Meter::VolumeGibSeconds, 3600.0)),
        0.002
    );
    assert_eq!(
        p.cost(&line(Some("hdd"), Meter::VolumeGibSeconds, 3600.0)),
        0.001
    );
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        p.lb_hour = bad;
        let e = p.validate().unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::InvalidField);
        assert_eq!(e.details["field"], "lb_hour");
    }
    p.lb_hour = 0.0;
    p.volume_gib_hour_by_pool.insert("hdd".into(), -0.5);
    let e = p.validate().unwrap_err();
    assert_eq!(e.details["field"], "volume_gib_hour_by_pool.hdd");
    p.volume_gib_hour_by_pool.clear();
    p.currency = String::new();
    assert_eq!(p.validate().unwrap_err().details["field"], "currency");
}

#[test]
fn a_report_sums_hours_per_resource_and_prices_them() {
    let r = [vm(
        "ins-1",
        2.0,
        vec![Span {
            start: 3500,
            end: Some(3700),
        }],
    )];
    let (records, l) = run(&r, &[3600, 3800]);
    let open = UsageRecord {
        project: "prj-a".into(),
        hour: l.hour,
        lines: l.open.into_values().collect(),
    };
    let all: Vec<UsageRecord> = records.into_iter().chain([open]).collect();
    let prices = PriceList {
        vcpu_hour: 3.6,
        currency: "EUR".into(),
        ..PriceList::default()
    };
    let rep = report("prj-a", (0, 7200), &all, &prices);
    assert_eq!(rep.lines.len(), 1);
    assert_eq!(rep.lines[0].line.seconds, 200);
    assert_eq!(rep.totals[&Meter::VcpuSeconds], 400.0);
    assert_eq!(rep.total_cost, 0.4);
    assert_eq!(rep.currency, "EUR");
    assert_eq!(rep.from, "1970-01-01T00:00:00Z");
    let json = serde_json::to_value(&rep).unwrap();
    assert_eq!(json["lines"][0]["meters"]["vcpu_seconds"], 400.0);
    assert_eq!(json["lines"][0]["seconds"], 200);
}

#[test]
fn report_bounds_read_times_and_durations_ago() {
    let now = epoch_of("2026-03-15T12:30:00Z").unwrap();
    assert_eq!(when_of("2026-03-15T12:00:00Z", now), Some(now - 1800));
    assert_eq!(when_of("1h", now), Some(now - 3600));
    assert_eq!(when_of("30d", now), Some(now - 30 * 86_400));
    assert_eq!(when_of("90", now), Some(now - 90));
    for bad in ["", "h", "1w", "-5s", "yesterday", "99999999999999999999d"] {
        assert_eq!(when_of(bad, now), None, "{bad}");
    }
    assert_eq!(rfc3339_of(month_start(now)), "2026-03-01T00:00:00Z");
}

fn arb_span() -> impl Strategy<Value = Span> {
    (0i64..20_000, proptest::option::of(0i64..20_000)).prop_map(|(start, len)| Span {
        start,
        end: len.map(|l| start + l),
    })
}

fn arb_resources() -> impl Strategy<Value = Vec<Metered>> {
    proptest::collection::vec((1u32..8, proptest::collection::vec(arb_span(), 0..4)), 1..5)
        .prop_map(|rs| {
            (rs.into_iter().enumerate())
                .map(|(i, (v, spans))| vm(&format!("ins-{i}"), v as f64, spans))
                .collect()
        })
}

/// The billable seconds of `r` up to `now`: its spans' union, measured directly.
fn measure(r: &Metered, now: i64) -> u64 {
    (0..now.max(0))
        .filter(|&s| (r.billable.iter()).any(|sp| sp.start <= s && sp.end.is_none_or(|e| s < e)))
        .count() as u64
}

proptest! {
    #[test]
    fn every_billable_second_is_counted_once(
        resources in arb_resources(),
        mut times in proptest::collection::vec(0i64..30_000, 1..8),
    ) {
        times.sort_unstable();
        let (records, l) = run(&resources, &times);
        let counted = seconds_by_resource(&records, &l);
        let end = *times.last().unwrap();
        for r in &resources {
            prop_assert_eq!(counted.get(&r.id).copied().unwrap_or(0), measure(r, end), "{}", r.id);
        }
        for line in records.iter().flat_map(|r| &r.lines).chain(l.open.values()) {
            prop_assert!(line.seconds <= HOUR_SECS as u64);
            let rate = resources.iter().find(|r| r.id == line.resource).unwrap().rates[&Meter::VcpuSeconds];
            prop_assert_eq!(line.meters[&Meter::VcpuSeconds], rate * line.seconds as f64);
        }
        let hours: Vec<i64> = records.iter().map(|r| r.hour).collect();
        prop_assert!(hours.iter().all(|&h| h < l.hour && h % HOUR_SECS == 0));
    }

    #[test]
    fn a_pass_again_at_the_same_time_adds_nothing(
        resources in arb_resources(),
        t in 0i64..30_000,
    ) {
        let first = roll_up(&ledger(), &resources, t);
        let again = roll_up(&first.ledger, &resources, t);
        prop_assert!(again.closed.is_empty());
        prop_assert_eq!(again.ledger, first.ledger);
    }
}
