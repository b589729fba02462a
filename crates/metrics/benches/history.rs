//! The history's hot paths (criterion): one sample into each of 1,000 series (a host's
//! 10 s tick, memory only), a flush of 1,000 dirty series (one redb transaction), and a
//! month of one series.
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use yunhan_metrics::History;

const SERIES: usize = 1000;
const T0: u64 = 1_700_000_400;
const MONTH: u64 = 31 * 86_400;

fn bench_history(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = History::open(
        dir.path().join("metrics.redb"),
        SERIES,
        Duration::from_secs(60),
    )
    .expect("open");
    let names: Vec<String> = (0..SERIES).map(|i| format!("vm-{i:04}/cpu")).collect();
    let month: Vec<(&str, u64, f64)> = (0..MONTH / 10)
        .map(|i| (names[0].as_str(), T0 + i * 10, i as f64))
        .collect();
    history.record_many(&month).expect("a month");
    let mut t = T0 + MONTH;
    let tick = |t: u64| {
        let tick: Vec<(&str, u64, f64)> = names.iter().map(|n| (n.as_str(), t, 1.0)).collect();
        history.record_many(&tick).expect("record")
    };
    tick(t);
    history.flush().expect("flush");

    let mut g = c.benchmark_group("history");
    g.bench_function("record_1000_series", |b| {
        b.iter(|| {
            t += 10;
            tick(t)
        })
    });
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    g.bench_function("flush_1000_dirty_series", |b| {
        b.iter_batched(
            || {
                t += 10;
                tick(t)
            },
            |()| history.flush().expect("flush"),
            BatchSize::PerIteration,
        )
    });
    g.finish();
    c.bench_function("history/query_month", |b| {
        b.iter(|| history.query(&names[0], t - MONTH, t).expect("query"))
    });
}

criterion_group!(benches, bench_history);
criterion_main!(benches);
