//! Placement decisions at data-centre scale: 10,000 hosts carrying 100,000
//! instances (aggregated per host, as the scheduler does), one decision per
//! iteration. Aim: under 100 µs per decision.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use yunhan_model::scheduling::{place, Candidate, Demand, PlacementPolicy, Policy};

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
    // Spread instances deterministically, with some placement groups.
    for n in 0..instances {
        let h = &mut c[(n * 7919) % hosts];
        h.used_vcpus += 2;
        h.used_memory_mib += 4096;
        h.used_disk_gib += 20;
        if n % 50 == 0 {
            h.groups.insert(format!("pg-{:04}", n % 1000));
        }
    }
    c
}

fn bench(c: &mut Criterion) {
    let hosts = cloud(10_000, 100_000);
    let policy = Policy::default();
    let plain = Demand {
        vcpus: 4,
        memory_mib: 8192,
        disk_gib: 40,
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
    let mut g = c.benchmark_group("place_10k_hosts_100k_instances");
    g.bench_function("plain", |b| {
        b.iter(|| place(black_box(&hosts), black_box(&plain), &policy).map(|p| p.host.id.len()))
    });
    g.bench_function("hard_anti_affinity", |b| {
        b.iter(|| place(black_box(&hosts), black_box(&grouped), &policy).map(|p| p.host.id.len()))
    });
    g.bench_function("gpu", |b| {
        b.iter(|| place(black_box(&hosts), black_box(&gpu), &policy).map(|p| p.host.id.len()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
