//! Properties of a series under random writes: query shape, the encoding, coarse means.

use proptest::prelude::*;
use yunhan_metrics::{Series, ENCODED_LEN, TEN_MINUTES, TIERS};

/// A Unix time on a 10 min boundary.
const T0: u64 = 1_700_000_400;
/// How far random writes and queries reach past `T0`: beyond the coarsest span.
const REACH: u64 = 40 * 86_400;

fn writes() -> impl Strategy<Value = Vec<(u64, f64)>> {
    prop::collection::vec((0..REACH, -1e6..1e6f64), 0..300)
}

fn series(writes: &[(u64, f64)]) -> Series {
    let mut s = Series::new();
    writes.iter().for_each(|&(dt, v)| s.record(T0 + dt, v));
    s
}

proptest! {
    #[test]
    fn queries_are_ascending_within_range_and_one_tier_long(
        writes in writes(),
        from in 0..REACH,
        len in 0..REACH,
    ) {
        let (from, to) = (T0 + from, T0 + from + len);
        let points = series(&writes).query(from, to);
        prop_assert!(points.windows(2).all(|w| w[0].0 < w[1].0), "{points:?}");
        prop_assert!(points.iter().all(|&(t, _)| (from..=to).contains(&t)));
        prop_assert!(
            TIERS.iter().any(|tier| points.len() <= tier.slots
                && points.iter().all(|&(t, _)| t % tier.step == 0)),
            "{} points", points.len()
        );
    }

    #[test]
    fn the_encoding_round_trips(writes in writes()) {
        let s = series(&writes);
        let bytes = s.encode();
        prop_assert_eq!(bytes.len(), ENCODED_LEN);
        prop_assert_eq!(Series::decode(&bytes), Ok(s));
    }

    #[test]
    fn damaged_encodings_are_errors_or_series(
        writes in writes(),
        at in 0..ENCODED_LEN,
        byte in any::<u8>(),
        keep in 0..ENCODED_LEN,
    ) {
        let mut bytes = series(&writes).encode();
        bytes[at] = byte;
        if let Ok(s) = Series::decode(&bytes) {
            prop_assert_eq!(s.encode(), bytes.clone());
        }
        prop_assert!(Series::decode(&bytes[..keep]).is_err());
    }

    /// With one value in each 10 s slot, the 10 min slots of a window average to the
    /// window's mean, whatever the order of the writes.
    #[test]
    fn ten_minute_means_are_sample_means(
        (values, order) in (1..=6usize)
            .prop_flat_map(|slots| prop::collection::vec(-1e3..1e3f64, slots * 60))
            .prop_flat_map(|v| {
                let order: Vec<usize> = (0..v.len()).collect();
                (Just(v), Just(order).prop_shuffle())
            }),
        offsets in prop::collection::vec(0..10u64, 360),
        window in 0..100u64,
    ) {
        let start = T0 + window * TEN_MINUTES.step;
        let mut s = Series::new();
        for &i in &order {
            s.record(start + i as u64 * 10 + offsets[i], values[i]);
        }
        // Two days before the window: only the 10 min tier reaches back that far.
        let points = s.query(start - 2 * 86_400, u64::MAX);
        prop_assert_eq!(points.len(), values.len() / 60);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let of_slots = points.iter().map(|&(_, avg)| avg).sum::<f64>() / points.len() as f64;
        prop_assert!((mean - of_slots).abs() < 1e-2, "{mean} vs {of_slots}");
    }
}
