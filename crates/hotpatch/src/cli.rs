//! `yunhan hotpatch …`: the subcommands and their human / JSON output.

use std::path::PathBuf;

use crate::engine::{self, ApplyOptions, RevertOptions};
use crate::error::HotpatchError;
use crate::state::{self, PatchRecord};

/// Output format. Not an argument of the subcommands: `yunhan` has one global `-o/--output`
/// for every command and passes its choice to [`run`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned table / lines for people.
    #[default]
    Table,
    /// One JSON document on stdout.
    Json,
}

/// Live-patch a function of a running x86-64 Linux process (e.g. QEMU) without restarting it.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum HotpatchCommand {
    /// Load a patch library into a running process and redirect old functions to new ones.
    ///
    /// The library is loaded with the target's own dlopen, then every thread is stopped briefly
    /// (the stop time is printed) while the entry of each old function is overwritten with a
    /// jump to its replacement. Which function replaces which comes from --map, else from a
    /// `.yunhan_hotpatch` section in the library (`old=new` lines), else from the naming
    /// convention NAME_vN → NAME. Nothing is changed if any check fails.
    Apply {
        /// Process to patch.
        #[arg(long)]
        pid: i32,
        /// Patch library (a shared object built with -shared -fPIC).
        #[arg(long, value_name = "FILE.so")]
        patch: PathBuf,
        /// Replace OLD by NEW (overrides the library's manifest). OLD may be qualified with
        /// the object defining it: libfoo.so.1:func=func_v2. Repeatable.
        #[arg(long = "map", value_name = "OLD=NEW")]
        map: Vec<String>,
        /// Never map a relay trampoline near the old function: use the 14-byte absolute jump
        /// when the new function is beyond ±2 GiB.
        #[arg(long)]
        no_relay: bool,
        /// How many times to stop the process looking for a moment when no thread is
        /// executing the bytes to be rewritten.
        #[arg(long, default_value_t = engine::DEFAULT_ATTEMPTS)]
        attempts: u32,
    },
    /// Show the patches applied to a process.
    List {
        /// Process to inspect.
        #[arg(long)]
        pid: i32,
    },
    /// Restore the original bytes of applied patches (all of them unless filtered).
    ///
    /// The patch library stays loaded. Refused if a thread keeps executing inside the
    /// rewritten bytes or the relay trampoline, or if the bytes were changed by someone else.
    Revert {
        /// Process to un-patch.
        #[arg(long)]
        pid: i32,
        /// Only the patch of this old function.
        #[arg(long, value_name = "NAME")]
        func: Option<String>,
        /// Only the patches from this library.
        #[arg(long, value_name = "FILE.so")]
        patch: Option<PathBuf>,
        /// How many times to stop the process looking for a safe moment.
        #[arg(long, default_value_t = engine::DEFAULT_ATTEMPTS)]
        attempts: u32,
    },
}

fn ms(us: u64) -> String {
    format!("{}.{:03} ms", us / 1000, us % 1000)
}

/// How long an apply or revert held the target: `target stopped for …`.
fn stopped_for(s: &engine::StopStats) -> String {
    format!(
        "target stopped for {} (fully frozen {}; {} threads, {} attempt{})",
        ms(s.stop_us),
        ms(s.frozen_us),
        s.threads,
        s.attempts,
        if s.attempts == 1 { "" } else { "s" }
    )
}

fn table(rows: &[Vec<String>]) -> String {
    let mut w = vec![0usize; rows.first().map_or(0, Vec::len)];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        out += line.join("  ").trim_end();
        out.push('\n');
    }
    out
}

fn patch_rows(records: &[PatchRecord], status: Option<&[&str]>) -> String {
    let mut rows = vec![vec![
        "FUNCTION".to_string(),
        "OBJECT".into(),
        "ADDRESS".into(),
        "NEW".into(),
        "JUMP".into(),
        "PATCH".into(),
    ]];
    if status.is_some() {
        rows[0].push("STATUS".into());
    }
    for (i, r) in records.iter().enumerate() {
        let mut row = vec![
            r.old_symbol.clone(),
            crate::procfs::basename(&r.old_object).to_string(),
            format!("{:#x}", r.old_addr),
            r.new_symbol.clone(),
            r.kind.to_string(),
            r.patch.display().to_string(),
        ];
        if let Some(s) = status {
            row.push(s[i].to_string());
        }
        rows.push(row);
    }
    table(&rows)
}

/// Prints `v` as JSON, or for people as `text` does.
fn show<T: serde::Serialize>(
    output: OutputFormat,
    v: &T,
    text: impl FnOnce(&T),
) -> Result<(), HotpatchError> {
    match output {
        OutputFormat::Json => print_json(v),
        OutputFormat::Table => text(v),
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    );
}

/// Runs one `yunhan hotpatch` subcommand, printing its result on stdout in `output` format.
pub fn run(cmd: HotpatchCommand, output: OutputFormat) -> Result<(), HotpatchError> {
    match cmd {
        HotpatchCommand::Apply {
            pid,
            patch,
            map,
            no_relay,
            attempts,
        } => {
            let mut o = ApplyOptions::new(pid, patch);
            o.maps = map;
            o.allow_relay = !no_relay;
            o.attempts = attempts;
            show(output, &engine::apply(&o)?, |r| {
                println!(
                    "applied {} to process {} (mapping from {}; {})",
                    r.patch.display(),
                    r.pid,
                    match r.mapping_source {
                        crate::manifest::MappingSource::CommandLine => "--map",
                        crate::manifest::MappingSource::Manifest => "the .yunhan_hotpatch manifest",
                        crate::manifest::MappingSource::Convention => "the NAME_vN convention",
                    },
                    if r.loaded {
                        format!("library loaded in {}", ms(r.load_us))
                    } else {
                        "library was already loaded".into()
                    }
                );
                print!("{}", patch_rows(&r.patches, None));
                println!("{}", stopped_for(&r.stop));
            })
        }
        HotpatchCommand::List { pid } => {
            let entries = engine::list(pid, &state::default_dir())?;
            show(output, &entries, |entries| {
                if entries.is_empty() {
                    println!("no patches applied to process {pid}");
                    return;
                }
                let recs: Vec<PatchRecord> = entries.iter().map(|e| e.record.clone()).collect();
                let st: Vec<&str> = entries.iter().map(|e| e.status).collect();
                print!("{}", patch_rows(&recs, Some(&st)));
            })
        }
        HotpatchCommand::Revert {
            pid,
            func,
            patch,
            attempts,
        } => {
            let mut o = RevertOptions::new(pid);
            o.func = func;
            o.patch = patch;
            o.attempts = attempts;
            show(output, &engine::revert(&o)?, |r| {
                println!(
                    "reverted {} patch(es) in process {}",
                    r.reverted.len(),
                    r.pid
                );
                print!("{}", patch_rows(&r.reverted, None));
                println!("{}", stopped_for(&r.stop));
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Top {
        #[command(subcommand)]
        cmd: HotpatchCommand,
    }

    #[test]
    fn parses_apply_with_maps() {
        let t = Top::try_parse_from([
            "x", "apply", "--pid", "12", "--patch", "fix.so", "--map", "a=b", "--map", "c=d",
        ])
        .unwrap();
        match t.cmd {
            HotpatchCommand::Apply {
                pid, map, no_relay, ..
            } => {
                assert_eq!(pid, 12);
                assert_eq!(map, ["a=b", "c=d"]);
                assert!(!no_relay);
            }
            _ => panic!(),
        }
        let t = Top::try_parse_from(["x", "list", "--pid", "1"]).unwrap();
        assert!(matches!(t.cmd, HotpatchCommand::List { pid: 1 }));
        // The output format belongs to the caller (`yunhan -o`), not to the subcommands.
        assert!(Top::try_parse_from(["x", "list", "--pid", "1", "-o", "json"]).is_err());
        assert!(Top::try_parse_from(["x", "apply", "--pid", "1"]).is_err());
    }

    #[test]
    fn table_aligns() {
        let t = table(&[
            vec!["A".into(), "BB".into()],
            vec!["CCC".into(), "D".into()],
        ]);
        assert_eq!(t, "A    BB\nCCC  D\n");
    }
}
