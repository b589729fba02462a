//! A metric's history at every tier, and its byte encoding (pure).

use crate::tier::{Ring, TIERS};

/// The encoding's version, its first byte.
pub const VERSION: u8 = 1;

/// Bytes of an encoded series: the version byte, then for each tier its latest slot
/// start (`u64`), its averages (`f32` each) and its sample counts (`u8` each), all
/// little endian: 1 + 3 × 8 + (360 + 1,440 + 4,464) × 5 = 31,345.
pub const ENCODED_LEN: usize =
    1 + TIERS[0].encoded_len() + TIERS[1].encoded_len() + TIERS[2].encoded_len();

/// Why bytes are not a series.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("series encoding version {found}, this build reads version {VERSION}")]
    Version { found: u8 },
    #[error("encoded series of {found} bytes, expected {ENCODED_LEN}")]
    Length { found: usize },
    #[error("corrupt series: {0}")]
    Corrupt(&'static str),
}

/// One metric's round-robin history: a ring per tier of [`TIERS`], fixed in size
/// whatever it is fed: [`ENCODED_LEN`] bytes encoded; in memory 31,320 bytes of slots
/// on the heap and a 192-byte struct (64-bit targets).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    rings: [Ring; 3],
}

impl Default for Series {
    fn default() -> Self {
        Series {
            rings: TIERS.map(Ring::new),
        }
    }
}

impl Series {
    /// An empty series.
    pub fn new() -> Self {
        Self::default()
    }

    /// Averages `value` into the slot of `t_secs` (Unix seconds) at every tier whose span
    /// still reaches back to it, clearing the slots skipped since that tier's latest
    /// write. A non-finite value is ignored; values are kept as `f32` (saturating at
    /// `±f32::MAX`).
    pub fn record(&mut self, t_secs: u64, value: f64) {
        if !value.is_finite() {
            return;
        }
        let value = value.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32;
        self.rings
            .iter_mut()
            .for_each(|ring| ring.record(t_secs, value));
    }

    /// `(slot start, average)` of the non-empty slots starting within `[from, to]`,
    /// ascending, from the finest tier that still holds the slot of `from` (the
    /// coarsest when none does); so at most that tier's slot count.
    pub fn query(&self, from: u64, to: u64) -> Vec<(u64, f64)> {
        let [.., coarsest] = &self.rings;
        self.rings
            .iter()
            .find(|ring| ring.covers(from))
            .unwrap_or(coarsest)
            .points(from, to)
    }

    /// The series as [`ENCODED_LEN`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(ENCODED_LEN);
        out.push(VERSION);
        self.rings
            .iter()
            .for_each(|ring| ring.encode_into(&mut out));
        out
    }

    /// Reads what [`Series::encode`] wrote; anything else is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        match bytes.first() {
            Some(&VERSION) => {}
            Some(&found) => return Err(DecodeError::Version { found }),
            None => return Err(DecodeError::Length { found: 0 }),
        }
        if bytes.len() != ENCODED_LEN {
            return Err(DecodeError::Length { found: bytes.len() });
        }
        let mut rest = &bytes[1..];
        let [a, b, c] = TIERS.map(|tier| {
            let (ring, tail) = rest.split_at(tier.encoded_len());
            rest = tail;
            Ring::decode(tier, ring)
        });
        Ok(Series {
            rings: [a?, b?, c?],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Unix time on a 10 min boundary.
    const T0: u64 = 1_700_000_400;

    fn series(samples: &[(u64, f64)]) -> Series {
        let mut s = Series::new();
        samples.iter().for_each(|&(t, v)| s.record(t, v));
        s
    }

    #[test]
    fn the_encoding_has_the_documented_size() {
        assert_eq!(T0 % 600, 0);
        assert_eq!(ENCODED_LEN, 31_345);
        assert_eq!(Series::new().encode().len(), ENCODED_LEN);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<Series>(), 192);
    }

    #[test]
    fn an_hour_old_point_is_answered_from_the_minute_tier() {
        let s = series(&[(T0 + 5, 1.0), (T0 + 35, 3.0), (T0 + 3600, 7.0)]);
        assert_eq!(s.query(T0, T0 + 3600), [(T0, 2.0), (T0 + 3600, 7.0)]);
        assert_eq!(
            s.query(T0 + 30, T0 + 3600),
            [(T0 + 30, 3.0), (T0 + 3600, 7.0)]
        );
    }

    #[test]
    fn a_gap_comes_back_empty_not_stale() {
        let hour: Vec<(u64, f64)> = (0..360).map(|i| (T0 + i * 10, 1.0)).collect();
        let mut s = series(&hour);
        s.record(T0 + 3590 + 600, 2.0);
        assert_eq!(s.query(T0 + 3600, T0 + 4190), [(T0 + 4190, 2.0)]);
    }

    #[test]
    fn the_minute_average_of_six_ten_second_values_is_their_mean() {
        let s = series(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0].map(|v| (T0 + v as u64 * 10 - 7, v)));
        assert_eq!(s.query(T0, T0 + 59).len(), 6);
        assert_eq!(s.query(T0 - 3600, T0 + 59), [(T0, 3.5)]);
    }

    #[test]
    fn out_of_order_writes_within_the_span_are_kept() {
        let s = series(&[(T0 + 100, 5.0), (T0 + 20, 1.0), (T0 + 25, 3.0)]);
        assert_eq!(s.query(T0, T0 + 100), [(T0 + 20, 2.0), (T0 + 100, 5.0)]);
    }

    #[test]
    fn writes_beyond_a_tiers_span_are_ignored_by_that_tier_only() {
        // T0's 10 s slot shares its ring place with T0 + 3600's.
        let s = series(&[(T0 + 3600, 5.0), (T0, 9.0)]);
        assert_eq!(s.query(T0 + 10, T0 + 3600), [(T0 + 3600, 5.0)]);
        assert_eq!(s.query(T0, T0 + 3600), [(T0, 9.0), (T0 + 3600, 5.0)]);
    }

    #[test]
    fn values_that_are_not_f32_are_ignored_or_saturate() {
        let s = series(&[(T0, f64::NAN), (T0 + 10, f64::INFINITY), (T0 + 20, 1e300)]);
        assert_eq!(s.query(T0, T0 + 20), [(T0 + 20, f64::from(f32::MAX))]);
    }

    #[test]
    fn what_no_tier_reaches_back_to_is_answered_from_the_coarsest() {
        let later = T0 + 40 * 86_400;
        let s = series(&[(T0, 1.0), (later, 2.0)]);
        assert_eq!(s.query(0, u64::MAX), [(later, 2.0)]);
        let month: Vec<(u64, f64)> = (0..4464).map(|i| (T0 + i * 600, 1.0)).collect();
        assert_eq!(series(&month).query(0, u64::MAX).len(), 4464);
    }

    #[test]
    fn an_empty_series_answers_nothing() {
        assert_eq!(Series::new().query(0, u64::MAX), []);
        assert_eq!(series(&[(T0, 1.0)]).query(u64::MAX, u64::MAX), []);
        assert_eq!(series(&[(T0, 1.0)]).query(T0 + 1, T0), []);
    }

    #[test]
    fn bad_bytes_are_errors() {
        let good = series(&[(T0, 1.0)]).encode();
        let with = |at: usize, bytes: &[u8]| {
            let mut b = good.clone();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            Series::decode(&b)
        };
        assert_eq!(Series::decode(&[]), Err(DecodeError::Length { found: 0 }));
        assert_eq!(
            Series::decode(&good[..100]),
            Err(DecodeError::Length { found: 100 })
        );
        assert_eq!(with(0, &[2]), Err(DecodeError::Version { found: 2 }));
        let misaligned = (T0 + 1).to_le_bytes();
        assert!(matches!(with(1, &misaligned), Err(DecodeError::Corrupt(_))));
        assert!(matches!(
            with(9, &f32::NAN.to_le_bytes()),
            Err(DecodeError::Corrupt(_))
        ));
        assert!(matches!(
            with(1, &u64::MAX.to_le_bytes()),
            Err(DecodeError::Corrupt(_))
        ));
        assert_eq!(Series::decode(&good).map(|s| s.encode()), Ok(good));
    }
}
