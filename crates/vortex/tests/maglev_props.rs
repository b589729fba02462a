//! Property tests for the Maglev table (issue: "How it is checked").

use proptest::prelude::*;
use yunhan_vortex::maglev::{build, counts, Member, DEFAULT_TABLE_SIZE, EMPTY};

fn members(ids: &[u32]) -> Vec<Member> {
    ids.iter()
        .map(|i| {
            Member::new(
                format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255),
                1,
            )
        })
        .collect()
}

/// How much more than 1/N of the slots a removal or drain may move (see
/// `removal_disruption_bounded`).
const EXTRA: f64 = 0.10;

fn backend_ids() -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::btree_set(1u32..1_000_000, 2..=64).prop_map(|s| s.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Balance: with M > 100·N every backend owns within 1 % of M/N slots.
    #[test]
    fn balance_within_one_percent(ids in backend_ids()) {
        let ms = members(&ids);
        let t = build(&ms, DEFAULT_TABLE_SIZE).unwrap();
        let ideal = DEFAULT_TABLE_SIZE as f64 / ms.len() as f64;
        for c in counts(&t, ms.len()) {
            prop_assert!((c as f64 - ideal).abs() <= ideal * 0.01, "count {c} ideal {ideal}");
        }
        prop_assert!(t.iter().all(|&e| e != EMPTY));
    }

    /// Disruption: removing one of N backends remaps its 1/N of the slots and a little of
    /// the others' (slots are what flows hash to, so this is the fraction of flows).
    /// Maglev is near-minimal, not minimal: usually within 2 % of 1/N, but a case with 3
    /// backends moved 41.9 % (8.5 % over 1/3; kept in the regressions file), so the bound
    /// is 1/N + 10 %.
    #[test]
    fn removal_disruption_bounded(ids in backend_ids(), victim in any::<prop::sample::Index>()) {
        let ms = members(&ids);
        let n = ms.len();
        let v = victim.index(n);
        let before = build(&ms, DEFAULT_TABLE_SIZE).unwrap();
        let mut after_ms = ms.clone();
        after_ms.remove(v);
        let after = build(&after_ms, DEFAULT_TABLE_SIZE).unwrap();
        let moved = before.iter().zip(&after).filter(|(b, a)| {
            ms[**b as usize].identity != after_ms[**a as usize].identity
        }).count();
        let frac = moved as f64 / DEFAULT_TABLE_SIZE as f64;
        prop_assert!(frac <= 1.0 / n as f64 + EXTRA, "moved {frac} with n={n}");
    }

    /// Draining (weight 0) behaves like removal for new flows: same bound.
    #[test]
    fn drain_disruption_bounded(ids in backend_ids(), victim in any::<prop::sample::Index>()) {
        let ms = members(&ids);
        let n = ms.len();
        let v = victim.index(n);
        let before = build(&ms, DEFAULT_TABLE_SIZE).unwrap();
        let mut drained = ms.clone();
        drained[v].weight = 0;
        let after = build(&drained, DEFAULT_TABLE_SIZE).unwrap();
        prop_assert!(after.iter().all(|&e| e as usize != v));
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let frac = moved as f64 / DEFAULT_TABLE_SIZE as f64;
        prop_assert!(frac <= 1.0 / n as f64 + EXTRA, "moved {frac} with n={n}");
    }

    /// Identical configs give identical tables — on repeated builds and
    /// regardless of the order backends are listed in.
    #[test]
    fn deterministic_and_order_independent(ids in backend_ids(), seed in any::<u64>()) {
        let ms = members(&ids);
        let a = build(&ms, 10_007).unwrap();
        let b = build(&ms, 10_007).unwrap();
        prop_assert_eq!(&a, &b);
        // Shuffle deterministically and compare by identity.
        let mut shuffled = ms.clone();
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let c = build(&shuffled, 10_007).unwrap();
        for (x, y) in a.iter().zip(&c) {
            prop_assert_eq!(&ms[*x as usize].identity, &shuffled[*y as usize].identity);
        }
    }
}
