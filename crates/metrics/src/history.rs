//! Many named series: decoded in memory, written back to one redb file in batches.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, TableDefinition};

use crate::series::{DecodeError, Series, ENCODED_LEN};

/// Series name → [`Series::encode`]d bytes.
const SERIES: TableDefinition<&str, &[u8]> = TableDefinition::new("series");

/// The longest series name, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Bytes of payload per stored series at most: its encoding and its name.
pub const MAX_SERIES_BYTES: usize = ENCODED_LEN + MAX_NAME_BYTES;

/// redb's page cache (reads and writes), instead of its 1 GiB default.
pub const CACHE_BYTES: usize = 16 << 20;

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The database file (open, transaction, table, storage, commit), boxed: redb's
    /// errors are large.
    #[error("metric history: {0}")]
    Redb(Box<redb::Error>),
    #[error("metric history: series {series:?} is unreadable (forget it to start over): {source}")]
    Corrupt { series: String, source: DecodeError },
    #[error("metric history: series {series:?} would be one more than the cap of {cap} series")]
    TooManySeries { series: String, cap: usize },
    #[error("metric history: series name of {len} bytes, longer than {MAX_NAME_BYTES}")]
    NameTooLong { len: usize },
}

/// `?` on redb's calls.
macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for HistoryError {
            fn from(e: $error) -> Self {
                HistoryError::Redb(Box::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The metric history of a host, written back like rrdcached: a series is decoded into
/// memory on first use (record or query) and stays there; recording only changes memory
/// and marks the series dirty; [`History::flush`] writes every dirty series in one redb
/// transaction.
///
/// Bounds, with `n` = `max_series` (or the number of series the file already held when
/// opened, if more):
/// - memory: at most `n` decoded series of about 31.5 KB each (31,320 bytes of slots, a
///   192-byte struct, the name and the map's entry), their names, and the [`CACHE_BYTES`]
///   page cache: about 48 MB for 1,000 series;
/// - disk: at most `n` series of [`MAX_SERIES_BYTES`] payload, each in its own 32 KiB
///   redb page, plus the pages a flush frees and redb reuses a couple of flushes later
///   (see the crate docs);
/// - writes: a flush writes one 32 KiB page per dirty series (and the B-tree's branch
///   pages), whatever number of samples each received since the previous flush.
///
/// A crash loses the samples recorded since the last flush that succeeded: at most
/// `flush_every` of them when the caller calls [`History::flush_if_due`] after each
/// tick. Dropping the history flushes, ignoring a failure.
///
/// Usable as `Arc<History>` from several threads. Recording into, or querying, a series
/// already in memory takes one short lock; a first use waits for a flush or forget in
/// progress (it reads the file).
pub struct History {
    db: Database,
    max_series: usize,
    flush_every: Duration,
    /// Held while the file is read or written (a flush, a forget, a first use), so a
    /// load never sees a series a flush or forget is changing; taken before `memory`.
    /// Holds the time the latest flush started.
    disk: Mutex<Instant>,
    memory: Mutex<Memory>,
}

/// What `History` knows without reading the file.
struct Memory {
    /// Every series, flushed or not: what [`History::series_names`] lists and the cap
    /// counts. A superset of `loaded`'s names.
    names: BTreeSet<String>,
    /// The series used since the file was opened, decoded.
    loaded: HashMap<String, Loaded>,
}

struct Loaded {
    series: Series,
    /// Recorded into since its latest flush.
    dirty: bool,
}

impl History {
    /// Opens the history file at `path`, creating it if absent, and reads the names of
    /// its series (one pass over the file). A file that already holds more than
    /// `max_series` series keeps them; only new series are refused. `flush_every` is the
    /// interval of [`History::flush_if_due`].
    pub fn open(
        path: impl AsRef<Path>,
        max_series: usize,
        flush_every: Duration,
    ) -> Result<Self, HistoryError> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(SERIES)?;
        txn.commit()?;
        let mut names = BTreeSet::new();
        {
            let txn = db.begin_read()?;
            for entry in txn.open_table(SERIES)?.iter()? {
                names.insert(entry?.0.value().to_owned());
            }
        }
        Ok(History {
            db,
            max_series,
            flush_every,
            disk: Mutex::new(Instant::now()),
            memory: Mutex::new(Memory {
                names,
                loaded: HashMap::new(),
            }),
        })
    }

    /// Records one sample; see [`History::record_many`].
    pub fn record(&self, series: &str, t_secs: u64, value: f64) -> Result<(), HistoryError> {
        self.record_many(&[(series, t_secs, value)])
    }

    /// Records `(series, t_secs, value)` samples in memory, each series' samples in their
    /// order here ([`Series::record`]), loading the series not in memory yet from the
    /// file; durable at the next flush. All or nothing: a new series beyond the cap, a
    /// name longer than [`MAX_NAME_BYTES`] or an unreadable series fails the whole batch.
    pub fn record_many(&self, samples: &[(&str, u64, f64)]) -> Result<(), HistoryError> {
        let mut memory = self.memory();
        if samples
            .iter()
            .any(|(name, ..)| !memory.loaded.contains_key(*name))
        {
            drop(memory);
            let _disk = self.disk();
            memory = self.memory();
            self.load_for(&mut memory, samples)?;
        }
        for &(name, t, value) in samples {
            // Every series of the batch is loaded (nothing removes one but `forget`,
            // which needs the `memory` lock held here).
            if let Some(loaded) = memory.loaded.get_mut(name) {
                loaded.series.record(t, value);
                loaded.dirty = true;
            }
        }
        Ok(())
    }

    /// Loads the series of `samples` not in memory, from the file or new, or none of them.
    /// The caller holds the `disk` lock.
    fn load_for(
        &self,
        memory: &mut Memory,
        samples: &[(&str, u64, f64)],
    ) -> Result<(), HistoryError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SERIES)?;
        let mut fresh: HashMap<&str, Series> = HashMap::new();
        let mut new = 0;
        for &(name, ..) in samples {
            if memory.loaded.contains_key(name) || fresh.contains_key(name) {
                continue;
            }
            let series = if memory.names.contains(name) {
                load(&table, name)?.unwrap_or_default()
            } else if name.len() > MAX_NAME_BYTES {
                return Err(HistoryError::NameTooLong { len: name.len() });
            } else if memory.names.len() + new >= self.max_series {
                return Err(HistoryError::TooManySeries {
                    series: name.to_owned(),
                    cap: self.max_series,
                });
            } else {
                new += 1;
                Series::new()
            };
            fresh.insert(name, series);
        }
        for (name, series) in fresh {
            memory.names.insert(name.to_owned());
            let loaded = Loaded {
                series,
                dirty: false,
            };
            memory.loaded.insert(name.to_owned(), loaded);
        }
        Ok(())
    }

    /// [`Series::query`] of `series`, flushed or not; nothing for an unknown series.
    pub fn query(&self, series: &str, from: u64, to: u64) -> Result<Vec<(u64, f64)>, HistoryError> {
        {
            let memory = self.memory();
            if let Some(loaded) = memory.loaded.get(series) {
                return Ok(loaded.series.query(from, to));
            }
            if !memory.names.contains(series) {
                return Ok(Vec::new());
            }
        }
        let _disk = self.disk();
        let mut memory = self.memory();
        if !memory.loaded.contains_key(series) {
            let txn = self.db.begin_read()?;
            let loaded = Loaded {
                series: load(&txn.open_table(SERIES)?, series)?.unwrap_or_default(),
                dirty: false,
            };
            memory.loaded.insert(series.to_owned(), loaded);
        }
        Ok(memory
            .loaded
            .get(series)
            .map_or_else(Vec::new, |loaded| loaded.series.query(from, to)))
    }

    /// The names of the series that start with `prefix`, flushed or not, in byte order.
    pub fn series_names(&self, prefix: &str) -> Vec<String> {
        self.memory()
            .names
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|name| name.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Deletes `series` (e.g. its VM was deleted) from memory and from the file at once,
    /// freeing its place under the cap. Whether it existed.
    pub fn forget(&self, series: &str) -> Result<bool, HistoryError> {
        let _disk = self.disk();
        if !self.memory().names.contains(series) {
            return Ok(false);
        }
        let txn = self.db.begin_write()?;
        txn.open_table(SERIES)?.remove(series)?;
        txn.commit()?;
        let mut memory = self.memory();
        memory.names.remove(series);
        memory.loaded.remove(series);
        Ok(true)
    }

    /// Writes every dirty series in one durable redb transaction (none if nothing is
    /// dirty). On failure the series stay dirty, for the next flush.
    pub fn flush(&self) -> Result<(), HistoryError> {
        let mut disk = self.disk();
        self.flush_locked(&mut disk, Instant::now())
    }

    /// Flushes if `flush_every` has passed since the latest flush started (or since the
    /// file was opened); whether it did. Meant to be called after each tick with the
    /// tick's `Instant::now()`. A failed flush counts as one: the next try is
    /// `flush_every` later (or at an explicit [`History::flush`]).
    pub fn flush_if_due(&self, now: Instant) -> Result<bool, HistoryError> {
        let mut disk = self.disk();
        if now.saturating_duration_since(*disk) < self.flush_every {
            return Ok(false);
        }
        self.flush_locked(&mut disk, now)?;
        Ok(true)
    }

    /// The series are encoded one at a time into the transaction, taking the `memory`
    /// lock for each, so records go on meanwhile and no second copy of them is made.
    fn flush_locked(&self, last_flush: &mut Instant, now: Instant) -> Result<(), HistoryError> {
        *last_flush = now;
        let dirty: Vec<String> = {
            let mut memory = self.memory();
            memory
                .loaded
                .iter_mut()
                .filter(|(_, loaded)| loaded.dirty)
                .map(|(name, loaded)| {
                    loaded.dirty = false;
                    name.clone()
                })
                .collect()
        };
        if dirty.is_empty() {
            return Ok(());
        }
        let written = self.write(&dirty);
        if written.is_err() {
            let mut memory = self.memory();
            for name in &dirty {
                if let Some(loaded) = memory.loaded.get_mut(name) {
                    loaded.dirty = true;
                }
            }
        }
        written
    }

    fn write(&self, names: &[String]) -> Result<(), HistoryError> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(SERIES)?;
            for name in names {
                // Still loaded: only `forget` unloads, and it waits for the `disk` lock.
                let encoded = self
                    .memory()
                    .loaded
                    .get(name)
                    .map(|loaded| loaded.series.encode());
                if let Some(encoded) = encoded {
                    table.insert(name.as_str(), encoded.as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Poisoning is ignored: nothing under these locks panics short of running out of
    /// memory, and were it to, a series would at worst hold part of one sample.
    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn disk(&self) -> MutexGuard<'_, Instant> {
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for History {
    /// Flushes, best effort: there is nowhere to report a failure.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

fn load(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Option<Series>, HistoryError> {
    let Some(blob) = table.get(name)? else {
        return Ok(None);
    };
    Series::decode(blob.value())
        .map(Some)
        .map_err(|source| HistoryError::Corrupt {
            series: name.to_owned(),
            source,
        })
}
