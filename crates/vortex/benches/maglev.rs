//! Table build time (criterion): what a health-check flip or config reload costs.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use yunhan_vortex::maglev::{build, next_prime, Member, DEFAULT_TABLE_SIZE};

fn members(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| Member::new(format!("10.1.{}.{}", i / 250, i % 250 + 1), 1))
        .collect()
}

fn bench_build(c: &mut Criterion) {
    let mut g = c.benchmark_group("maglev_build");
    g.sample_size(20);
    for n in [3usize, 100, 655] {
        let ms = members(n);
        g.bench_with_input(BenchmarkId::new("m65537", n), &ms, |b, ms| {
            b.iter(|| build(ms, DEFAULT_TABLE_SIZE).unwrap())
        });
    }
    let big = members(1000);
    let m = next_prime(100 * 1000 + 1);
    g.bench_with_input(BenchmarkId::new(format!("m{m}"), 1000), &big, |b, ms| {
        b.iter(|| build(ms, m).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench_build);
criterion_main!(benches);
