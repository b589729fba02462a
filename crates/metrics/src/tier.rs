//! One resolution of a series: a fixed ring of slot averages and sample counts (pure).

use crate::series::DecodeError;

/// A resolution: `slots` slots of `step` seconds, so it remembers `step × slots` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    /// Seconds per slot; a slot starts at a multiple of it (Unix time).
    pub step: u64,
    /// Slots in the ring.
    pub slots: usize,
}

/// 10 s slots for the last hour (360 slots).
pub const TEN_SECONDS: Tier = Tier {
    step: 10,
    slots: 360,
};
/// 1 min slots for the last day (1,440 slots).
pub const ONE_MINUTE: Tier = Tier {
    step: 60,
    slots: 1440,
};
/// 10 min slots for the last 31 days (4,464 slots).
pub const TEN_MINUTES: Tier = Tier {
    step: 600,
    slots: 4464,
};
/// The tiers of every series, finest first.
pub const TIERS: [Tier; 3] = [TEN_SECONDS, ONE_MINUTE, TEN_MINUTES];

/// Bytes per slot: an `f32` average and a `u8` sample count. The count saturates: a
/// slot's mean is exact for its first 255 samples (in a 10 min slot, a sample every
/// 2.4 s or slower), after which each new sample weighs 1/255. One byte rather than two
/// keeps an encoded series under 32 KiB, the redb page size it is stored in.
pub const SLOT_BYTES: usize = 4 + 1;
/// Bytes of a tier's header: the start of its latest slot (`u64`).
const HEADER_BYTES: usize = 8;
/// The encoded "no write yet": not a multiple of any step, so never a slot start.
const NONE: u64 = u64::MAX;

impl Tier {
    /// Seconds the ring remembers.
    pub const fn span(self) -> u64 {
        self.step * self.slots as u64
    }

    /// Bytes of one ring of this tier, encoded.
    pub const fn encoded_len(self) -> usize {
        HEADER_BYTES + self.slots * SLOT_BYTES
    }

    fn slot_start(self, t: u64) -> u64 {
        t - t % self.step
    }

    fn index(self, slot_start: u64) -> usize {
        // The remainder is below `slots`, a usize.
        ((slot_start / self.step) % self.slots as u64) as usize
    }

    /// The oldest slot start still in a ring whose latest slot starts at `latest`.
    fn oldest(self, latest: u64) -> u64 {
        latest.saturating_sub((self.slots as u64 - 1) * self.step)
    }
}

/// One tier's ring. An empty slot has count 0 and average 0.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ring {
    tier: Tier,
    /// Start of the latest slot written, `None` before the first write.
    latest: Option<u64>,
    avg: Box<[f32]>,
    count: Box<[u8]>,
}

impl Ring {
    pub(crate) fn new(tier: Tier) -> Self {
        Ring {
            tier,
            latest: None,
            avg: vec![0.0; tier.slots].into(),
            count: vec![0; tier.slots].into(),
        }
    }

    /// Averages `value` into the slot of `t`. A slot after the latest clears the slots
    /// skipped since; a slot older than the ring's span is ignored.
    pub(crate) fn record(&mut self, t: u64, value: f32) {
        let start = self.tier.slot_start(t);
        match self.latest {
            Some(latest) if start <= latest => {
                if latest - start >= self.tier.span() {
                    return;
                }
            }
            _ => self.advance(start),
        }
        self.add(start, value);
    }

    /// Makes `start` the latest slot, clearing it and every slot skipped to reach it.
    fn advance(&mut self, start: u64) {
        let step = self.tier.step;
        let first = self.latest.map_or(start, |latest| latest + step);
        let cleared = ((start - first) / step + 1).min(self.tier.slots as u64);
        for k in 0..cleared {
            let i = self.tier.index(start - k * step);
            self.avg[i] = 0.0;
            self.count[i] = 0;
        }
        self.latest = Some(start);
    }

    /// A running mean; past `u8::MAX` samples each new one weighs `1 / u8::MAX`.
    fn add(&mut self, start: u64, value: f32) {
        let i = self.tier.index(start);
        let n = self.count[i].saturating_add(1);
        let avg = f64::from(self.avg[i]);
        self.avg[i] = (avg + (f64::from(value) - avg) / f64::from(n)) as f32;
        self.count[i] = n;
    }

    /// Whether the ring reaches back to `from`: its oldest slot starts at or before it.
    pub(crate) fn covers(&self, from: u64) -> bool {
        self.latest
            .is_some_and(|latest| from >= self.tier.oldest(latest))
    }

    /// `(slot start, average)` of the non-empty slots starting within `[from, to]`,
    /// ascending.
    pub(crate) fn points(&self, from: u64, to: u64) -> Vec<(u64, f64)> {
        let (Some(latest), Some(first)) =
            (self.latest, from.checked_next_multiple_of(self.tier.step))
        else {
            return Vec::new();
        };
        let first = first.max(self.tier.oldest(latest));
        let last = self.tier.slot_start(to).min(latest);
        if first > last {
            return Vec::new();
        }
        (first..=last)
            .step_by(self.tier.step as usize)
            .filter_map(|start| {
                let i = self.tier.index(start);
                (self.count[i] > 0).then(|| (start, f64::from(self.avg[i])))
            })
            .collect()
    }

    /// Appends the ring: latest slot start (`u64::MAX` for none), the averages, the counts.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.latest.unwrap_or(NONE).to_le_bytes());
        self.avg
            .iter()
            .for_each(|a| out.extend_from_slice(&a.to_le_bytes()));
        out.extend_from_slice(&self.count);
    }

    /// Reads a ring of `tier` from exactly `tier.encoded_len()` bytes.
    pub(crate) fn decode(tier: Tier, bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() != tier.encoded_len() {
            return Err(DecodeError::Corrupt("ring of the wrong size"));
        }
        let (header, slots) = bytes.split_at(HEADER_BYTES);
        let (avgs, counts) = slots.split_at(tier.slots * size_of::<f32>());
        let latest = words(header).map(u64::from_le_bytes).next().unwrap_or(NONE);
        let ring = Ring {
            tier,
            latest: (latest != NONE).then_some(latest),
            avg: words(avgs).map(f32::from_le_bytes).collect(),
            count: counts.into(),
        };
        ring.check()
    }

    fn check(self) -> Result<Self, DecodeError> {
        if self
            .latest
            .is_some_and(|latest| latest % self.tier.step != 0)
        {
            return Err(DecodeError::Corrupt("latest slot not on a slot boundary"));
        }
        if self.latest.is_none() && self.count.iter().any(|&c| c > 0) {
            return Err(DecodeError::Corrupt("samples in a ring never written"));
        }
        if self.avg.iter().any(|a| !a.is_finite()) {
            return Err(DecodeError::Corrupt("average not finite"));
        }
        Ok(self)
    }
}

/// The little-endian words of `N` bytes in `bytes` (a trailing partial word is dropped).
fn words<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes.chunks_exact(N).map(|chunk| {
        let mut word = [0; N];
        word.copy_from_slice(chunk);
        word
    })
}
