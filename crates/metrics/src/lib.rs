//! Per-host metric history, bounded in memory and on disk, outside the control-plane
//! store, and the endpoint through which a host's agent serves it to the control plane
//! (`serve.rs`, `client.rs`, `wire.rs`; docs/monitoring.md).
//!
//! A [`Series`] is one metric's round-robin history at three [`TIERS`]:
//!
//! | tier | slot | slots | span |
//! |---|---|---|---|
//! | [`TEN_SECONDS`] | 10 s | 360 | 1 hour |
//! | [`ONE_MINUTE`] | 60 s | 1,440 | 1 day |
//! | [`TEN_MINUTES`] | 600 s | 4,464 | 31 days |
//!
//! Each slot keeps the mean of the samples written into it (`f32`) and their count
//! (`u8`, see [`SLOT_BYTES`]); every sample goes into its slot at each tier, slots
//! skipped since a tier's latest write are cleared (a gap stays a gap), and a query
//! answers from the finest tier that still holds the slot of its start. A series is
//! fixed in size whatever it is fed: [`ENCODED_LEN`] = 1 + 3 × 8 + 6,264 × 5 = 31,345
//! bytes encoded, 31,320 bytes of slots on the heap.
//!
//! [`History`] keeps named series like rrdcached: decoded in memory, written back to one
//! redb file in batches. A series is loaded from the file on first use (record or
//! query) and stays in memory; recording only changes memory and marks the series dirty;
//! [`History::flush`] writes every dirty series in one redb transaction, and
//! [`History::flush_if_due`], called after each tick, does so every `flush_every` (a
//! constructor parameter). Queries answer from memory, so unflushed samples are visible.
//! A crash loses what was recorded since the last flush: at most `flush_every` of
//! samples; dropping the history flushes (best effort).
//!
//! Bounds, with `max_series` the cap on series (a constructor parameter; a file already
//! holding more keeps them, and they count instead):
//! - memory: `max_series` decoded series of about 31.5 KB each (31,320 bytes of slots,
//!   a 192-byte struct, the name and the map entry), their names, and a [`CACHE_BYTES`]
//!   (16 MiB) page cache: about 48 MB for 1,000 series (measured: 52 MB peak resident
//!   for the whole process over 60 flushes). A flush encodes one series at a time, so it
//!   adds no second copy.
//! - disk: each series lives in its own 32 KiB redb page ([`MAX_SERIES_BYTES`] = 31,600
//!   bytes of payload), which a flush rewrites (copy-on-write; redb reuses a freed page
//!   a couple of commits later). So a file needs about `max_series × 4 × 32 KiB` and is
//!   at most twice that (redb doubles a file as it grows), then stops growing: measured,
//!   101 MB allocated in a 135 MB file for 1,000 series all dirty at every flush.
//! - writes: a flush writes one 32 KiB page per dirty series (plus a few B-tree branch
//!   pages), however many samples each received. With 1,000 series sampled every 10 s
//!   and `flush_every` = 60 s that is about 33 MB a minute, 0.55 MB/s, instead of the
//!   3.3 MB/s of writing at every sample.

mod client;
mod history;
mod series;
mod serve;
mod tier;
pub mod wire;

pub use client::{ClientError, HostMetrics, TIMEOUT};
pub use serve::{router, step_for, Latest};

pub use history::{History, HistoryError, CACHE_BYTES, MAX_NAME_BYTES, MAX_SERIES_BYTES};
pub use series::{DecodeError, Series, ENCODED_LEN, VERSION};
pub use tier::{Tier, ONE_MINUTE, SLOT_BYTES, TEN_MINUTES, TEN_SECONDS, TIERS};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
