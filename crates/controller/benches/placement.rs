//! Placement decisions at data-centre scale: 10,000 hosts carrying 100,000
//! instances (aggregated per host, as the scheduler does), one decision per
//! iteration, from the index ([`Capacity::place`], what the scheduler calls) and from
//! the linear scan ([`place`], the reference) in the same run; then building the
//! index, once per scheduler pass. Aim: under 10 µs per indexed decision.
//! Last, a line per demand: the scan's time over the index's, timed interleaved.

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use yunhan_model::scheduling::{
    place, Candidate, Capacity, Demand, Groups, PlacementPolicy, Policy,
};

const HOSTS: usize = 10_000;
const INSTANCES: usize = 100_000;

fn cloud(hosts: usize, instances: usize) -> Vec<Candidate> {
    let mut c: Vec<Candidate> = (0..hosts)
        .map(|i| Candidate {
            id: format!("hst-{i:016x}"),
            cpus: 64,
            memory_mib: 256 * 1024,
            disk_gib: 4000,
            schedulable: i % 97 != 0,
            free_gpus: if i % 10 == 0 {
                vec!["0000:3b:00.0".into(), "0000:3c:00.0".into()]
            } else {
                vec![]
            },
            ..Default::default()
        })
        .collect();
    // Spread instances deterministically: ten per host, 500 projects of 200 VMs on
    // 140 hosts each, 20 placement groups of 100 members on 10 hosts each.
    for n in 0..instances {
        let h = &mut c[(n * 7919) % hosts];
        h.used_vcpus += 2;
        h.used_memory_mib += 4096;
        h.used_disk_gib += 20;
        h.instances += 1;
        h.projects.insert(format!("prj-{:04}", (n / 7) % 500));
        if n % 50 == 0 {
            h.groups.insert(format!("pg-{:04}", n % 1000));
        }
    }
    c
}

/// The three demands, each of a project with VMs on 140 hosts.
fn demands() -> [(&'static str, Demand); 3] {
    let plain = Demand {
        vcpus: 4,
        memory_mib: 8192,
        disk_gib: 40,
        project: Some("prj-0007".into()),
        ..Default::default()
    };
    let grouped = Demand {
        group: Some(("pg-0050".into(), PlacementPolicy::HardAntiAffinity)),
        ..plain.clone()
    };
    let gpu = Demand {
        gpus: 1,
        ..plain.clone()
    };
    [
        ("plain", plain),
        ("hard_anti_affinity", grouped),
        ("gpu", gpu),
    ]
}

fn decisions(c: &mut Criterion) {
    let hosts = cloud(HOSTS, INSTANCES);
    let cap = Capacity::new(hosts.clone(), Groups::default());
    let policy = Policy::default();
    let mut g = c.benchmark_group("place_10k_hosts_100k_instances");
    for (name, d) in demands() {
        g.bench_function(format!("{name}/indexed"), |b| {
            b.iter(|| (cap.place(black_box(&d), &policy)).map(|p| p.host.id.len()))
        });
        g.bench_function(format!("{name}/scan"), |b| {
            b.iter(|| place(black_box(&hosts), black_box(&d), &policy).map(|p| p.host.id.len()))
        });
    }
    g.finish();
}

fn build(c: &mut Criterion) {
    let hosts = cloud(HOSTS, INSTANCES);
    c.bench_function("index_10k_hosts", |b| {
        b.iter_batched(
            || hosts.clone(),
            |hosts| Capacity::new(hosts, Groups::default()),
            BatchSize::LargeInput,
        )
    });
}

/// Prints, per demand, the scan's time over the index's: rounds of each, interleaved.
fn ratios(_: &mut Criterion) {
    let hosts = cloud(HOSTS, INSTANCES);
    let cap = Capacity::new(hosts.clone(), Groups::default());
    let policy = Policy::default();
    for (name, d) in demands() {
        let (mut indexed, mut scan) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..20 {
            indexed += timed(1000, || cap.place(black_box(&d), &policy).is_ok());
            scan += timed(10, || place(black_box(&hosts), &d, &policy).is_ok());
        }
        let (indexed, scan) = (indexed / 20_000, scan / 200);
        let ratio = scan.as_secs_f64() / indexed.as_secs_f64();
        println!(
            "{name}: indexed {indexed:?}, scan {scan:?} per decision: scan/indexed {ratio:.0}x"
        );
    }
}

/// The total time of `n` calls of `f`.
fn timed(n: u32, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    start.elapsed()
}

criterion_group!(benches, decisions, build, ratios);
criterion_main!(benches);
