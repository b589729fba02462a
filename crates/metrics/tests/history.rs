//! The written-back history: what memory answers, what a flush, a drop and a crash leave
//! in the file, the series cap, forget, threads.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use yunhan_metrics::{History, HistoryError, MAX_NAME_BYTES};

/// A Unix time on a 10 min boundary.
const T0: u64 = 1_700_000_400;
const MINUTE: Duration = Duration::from_secs(60);

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("metrics.redb");
    (dir, path)
}

fn open(path: &Path, max_series: usize) -> Result<History, HistoryError> {
    History::open(path, max_series, MINUTE)
}

/// Set in the child process of [`crash_after`]: the history file's path.
const CRASH_CHILD: &str = "YUNHAN_METRICS_CRASH_CHILD";

/// Runs `work` in a child process (this test binary running only `test`), which then
/// exits without running any destructor, so the history `work` returns is never dropped
/// (nor flushed): a crash. In that child, this runs `work` and exits.
fn crash_after(test: &str, path: &Path, work: fn(&Path) -> Result<History, HistoryError>) {
    if let Some(path) = std::env::var_os(CRASH_CHILD) {
        match work(Path::new(&path)) {
            Ok(_history) => std::process::exit(0),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1)
            }
        }
    }
    let status = Command::new(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CRASH_CHILD, path)
        .stdout(Stdio::null())
        .status()
        .expect("the child process");
    assert!(status.success(), "child: {status}");
}

#[test]
fn unflushed_samples_are_answered_and_listed() -> Result<(), HistoryError> {
    let (_dir, path) = temp();
    let history = open(&path, 10)?;
    history.record_many(&[("vm-1/cpu", T0, 1.0), ("vm-1/cpu", T0 + 5, 3.0)])?;
    history.record("vm-2/cpu", T0 + 10, 4.0)?;
    assert_eq!(history.query("vm-1/cpu", T0, T0 + 10)?, [(T0, 2.0)]);
    assert_eq!(history.query("vm-2/cpu", T0, T0 + 10)?, [(T0 + 10, 4.0)]);
    assert_eq!(history.query("vm-3/cpu", 0, u64::MAX)?, []);
    assert_eq!(history.series_names("vm-"), ["vm-1/cpu", "vm-2/cpu"]);
    history.flush()?;
    history.record("vm-1/cpu", T0 + 10, 5.0)?;
    assert_eq!(
        history.query("vm-1/cpu", T0, T0 + 10)?,
        [(T0, 2.0), (T0 + 10, 5.0)]
    );
    Ok(())
}

#[test]
fn data_survives_drop_and_reopen() -> Result<(), HistoryError> {
    let (_dir, path) = temp();
    let samples: Vec<(&str, u64, f64)> = (0..30)
        .flat_map(|i| {
            [
                ("vm-1/cpu", T0 + i * 10, i as f64),
                ("vm-2/cpu", T0 + i * 10, 1.0),
            ]
        })
        .collect();
    let before = {
        let history = open(&path, 10)?;
        history.record_many(&samples)?;
        history.query("vm-1/cpu", T0, T0 + 300)?
        // Dropped unflushed: the drop flushes.
    };
    assert_eq!(before.len(), 30);
    let history = open(&path, 10)?;
    assert_eq!(history.series_names(""), ["vm-1/cpu", "vm-2/cpu"]);
    assert_eq!(history.query("vm-1/cpu", T0, T0 + 300)?, before);
    let minutes: Vec<(u64, f64)> = (0..5).map(|m| (T0 + m * 60, 1.0)).collect();
    assert_eq!(history.query("vm-2/cpu", T0 - 7200, T0 + 300)?, minutes);
    Ok(())
}

#[test]
fn a_crash_loses_what_was_recorded_since_the_last_flush() -> Result<(), HistoryError> {
    let (_dir, path) = temp();
    crash_after(
        "a_crash_loses_what_was_recorded_since_the_last_flush",
        &path,
        |path| {
            let history = open(path, 10)?;
            history.record("vm-1/cpu", T0, 1.0)?;
            history.flush()?;
            history.record("vm-1/cpu", T0 + 10, 2.0)?;
            history.record("vm-2/cpu", T0, 3.0)?;
            Ok(history)
        },
    );
    let history = open(&path, 10)?;
    assert_eq!(history.query("vm-1/cpu", T0, T0 + 10)?, [(T0, 1.0)]);
    assert_eq!(history.series_names(""), ["vm-1/cpu"]);
    Ok(())
}

#[test]
fn flush_if_due_respects_the_interval() -> Result<(), HistoryError> {
    let (_dir, path) = temp();
    crash_after("flush_if_due_respects_the_interval", &path, |path| {
        // The history's clock starts at its opening, a few ms after `start`.
        let start = Instant::now();
        let history = open(path, 10)?;
        history.record("a", T0, 1.0)?;
        assert!(!history.flush_if_due(start + MINUTE / 2)?);
        assert!(history.flush_if_due(start + 2 * MINUTE)?, "a is flushed");
        history.record("a", T0 + 10, 2.0)?;
        history.record("b", T0, 1.0)?;
        assert!(!history.flush_if_due(start + 2 * MINUTE + MINUTE / 2)?);
        assert!(!history.flush_if_due(start + 3 * MINUTE - Duration::from_millis(1))?);
        Ok(history)
    });
    let history = open(&path, 10)?;
    assert_eq!(history.query("a", T0, T0 + 10)?, [(T0, 1.0)]);
    assert_eq!(history.series_names(""), ["a"]);
    let later = Instant::now() + 5 * MINUTE;
    assert!(history.flush_if_due(later)?, "due, even with nothing dirty");
    assert!(!history.flush_if_due(later + MINUTE / 2)?);
    assert!(history.flush_if_due(later + MINUTE)?);
    Ok(())
}

#[test]
fn new_series_beyond_the_cap_are_refused_whole_batch() -> Result<(), HistoryError> {
    let (_dir, path) = temp();
    let history = open(&path, 2)?;
    history.record_many(&[("a", T0, 1.0), ("b", T0, 1.0)])?;
    let refused = history.record_many(&[("a", T0, 3.0), ("c", T0, 1.0)]);
    match refused {
        Err(e @ HistoryError::TooManySeries { cap: 2, .. }) => {
            assert!(e.to_string().contains("cap of 2 series"), "{e}");
        }
        other => panic!("expected the cap, got {other:?}"),
    }
    assert_eq!(
        history.query("a", T0, T0)?,
        [(T0, 1.0)],
        "nothing of the batch"
    );
    assert_eq!(history.series_names(""), ["a", "b"]);
    history.record("a", T0, 3.0)?;
    assert_eq!(history.query("a", T0, T0)?, [(T0, 2.0)]);
    assert!(history.forget("b")?);
    history.record("c", T0, 1.0)?;
    assert_eq!(history.series_names(""), ["a", "c"]);
    Ok(())
}

#[test]
fn the_cap_counts_the_series_in_the_file() -> Result<(), HistoryError> {
    let (_dir, path) = temp();
    {
        let history = open(&path, 3)?;
        history.record_many(&[("a", T0, 1.0), ("b", T0, 1.0), ("c", T0, 1.0)])?;
    }
    // Reopened with a smaller cap: the file keeps its series, new ones are refused.
    let history = open(&path, 2)?;
    assert!(matches!(
        history.record("d", T0, 1.0),
        Err(HistoryError::TooManySeries { cap: 2, .. })
    ));
    history.record_many(&[
        ("a", T0 + 10, 1.0),
        ("b", T0 + 10, 1.0),
        ("c", T0 + 10, 1.0),
    ])?;
    assert!(history.forget("a")?);
    assert!(matches!(
        history.record("d", T0, 1.0),
        Err(HistoryError::TooManySeries { .. })
    ));
    assert!(history.forget("b")?);
    history.record("d", T0, 1.0)?;
    assert_eq!(history.series_names(""), ["c", "d"]);
    Ok(())
}

#[test]
fn forget_removes_a_series_from_memory_and_file() -> Result<(), HistoryError> {
    let (_dir, path) = temp();
    let history = open(&path, 10)?;
    for name in ["vm-1/cpu", "vm-1/disk", "vm-10/cpu", "vm-2/cpu"] {
        history.record(name, T0, 1.0)?;
    }
    history.flush()?;
    history.record("vm-1/disk", T0 + 10, 1.0)?;
    history.record("vm-1/mem", T0, 1.0)?;
    assert_eq!(
        history.series_names("vm-1/"),
        ["vm-1/cpu", "vm-1/disk", "vm-1/mem"]
    );
    assert!(history.forget("vm-1/mem")?, "never flushed");
    assert!(!history.forget("vm-1/mem")?);
    assert!(history.forget("vm-1/disk")?, "flushed, then dirty");
    assert_eq!(history.series_names("vm-1/"), ["vm-1/cpu"]);
    assert_eq!(history.query("vm-1/mem", 0, u64::MAX)?, []);
    assert_eq!(history.query("vm-1/disk", 0, u64::MAX)?, []);
    drop(history);
    assert_eq!(
        open(&path, 10)?.series_names("vm-1"),
        ["vm-1/cpu", "vm-10/cpu"]
    );
    Ok(())
}

#[test]
fn names_are_bounded() -> Result<(), HistoryError> {
    let (_dir, path) = temp();
    let history = open(&path, 10)?;
    let long = "x".repeat(MAX_NAME_BYTES + 1);
    assert!(matches!(
        history.record(&long, T0, 1.0),
        Err(HistoryError::NameTooLong { len }) if len == MAX_NAME_BYTES + 1
    ));
    history.record(&long[1..], T0, 1.0)?;
    Ok(())
}

#[test]
fn an_unreadable_series_is_an_error_naming_it() -> Result<(), Box<dyn std::error::Error>> {
    let (_dir, path) = temp();
    {
        let db = redb::Database::create(&path)?;
        let txn = db.begin_write()?;
        let table: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("series");
        txn.open_table(table)?
            .insert("bad", [7u8, 0, 0].as_slice())?;
        txn.commit()?;
    }
    let history = open(&path, 10)?;
    assert_eq!(history.series_names(""), ["bad"]);
    let err = history.query("bad", 0, u64::MAX).expect_err("corrupt");
    assert!(err.to_string().contains("\"bad\""), "{err}");
    assert!(history
        .record_many(&[("ok", T0, 1.0), ("bad", T0, 1.0)])
        .is_err());
    assert_eq!(history.series_names(""), ["bad"], "nothing of the batch");
    assert!(history.forget("bad")?);
    history.record("bad", T0, 1.0)?;
    assert_eq!(history.query("bad", 0, u64::MAX)?, [(T0, 1.0)]);
    Ok(())
}

#[test]
fn the_file_stops_growing() -> Result<(), HistoryError> {
    let (_dir, path) = temp();
    let history = open(&path, 20)?;
    let names: Vec<String> = (0..20).map(|i| format!("vm-{i}/cpu")).collect();
    let mut sizes = Vec::new();
    for round in 0..40 {
        let batch: Vec<(&str, u64, f64)> = names
            .iter()
            .map(|n| (n.as_str(), T0 + round * 10, 1.0))
            .collect();
        history.record_many(&batch)?;
        history.flush()?;
        sizes.push(std::fs::metadata(&path).expect("file").len());
    }
    assert_eq!(sizes[10], sizes[39], "{sizes:?}");
    assert!(sizes[39] <= 20 * 256 * 1024 + (2 << 20), "{sizes:?}");
    Ok(())
}

#[test]
fn one_history_serves_several_threads() -> Result<(), HistoryError> {
    fn shareable<T: Send + Sync>() {}
    shareable::<History>();

    let (_dir, path) = temp();
    let history = Arc::new(open(&path, 10)?);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let history = Arc::clone(&history);
            std::thread::spawn(move || -> Result<(), HistoryError> {
                let own = format!("vm-{w}/cpu");
                for i in 0..100 {
                    let t = T0 + i * 10;
                    history.record_many(&[(own.as_str(), t, w as f64), ("shared", t, 1.0)])?;
                }
                Ok(())
            })
        })
        .collect();
    let flusher = {
        let history = Arc::clone(&history);
        std::thread::spawn(move || -> Result<(), HistoryError> {
            for _ in 0..20 {
                history.flush()?;
                history.query("shared", T0, T0 + 1000)?;
            }
            Ok(())
        })
    };
    for thread in writers.into_iter().chain([flusher]) {
        thread.join().expect("no panic")?;
    }
    let check = |history: &History| -> Result<(), HistoryError> {
        for w in 0..4 {
            let points = history.query(&format!("vm-{w}/cpu"), T0, T0 + 990)?;
            assert_eq!(points.len(), 100);
            assert!(points.iter().all(|&(_, v)| v == w as f64));
        }
        let shared = history.query("shared", T0, T0 + 990)?;
        assert_eq!(shared.len(), 100);
        assert!(shared.iter().all(|&(_, v)| v == 1.0));
        Ok(())
    };
    check(&history)?;
    drop(history);
    check(&open(&path, 10)?)
}
