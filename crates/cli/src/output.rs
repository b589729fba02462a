//! Tables for people, JSON for scripts.

use serde::Serialize;
use serde_json::Value;

use crate::client::Answer;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// A column: header and how to get the cell from a row.
pub struct Column<T> {
    pub header: &'static str,
    pub get: fn(&T) -> String,
}

/// A column showing one field of the row, as [`cell`] prints it.
macro_rules! col {
    ($header:literal, $($field:ident).+) => {
        $crate::output::Column {
            header: $header,
            get: |v| $crate::output::cell(&v.$($field).+),
        }
    };
}
pub(crate) use col;

/// `$columns`, then the three every kind the cloud works on ends with: its
/// `PHASE`, `ID` and, for a failure, `MESSAGE`.
macro_rules! with_phase {
    ($($column:expr),+ $(,)?) => {
        [
            $($column,)+
            $crate::output::col!("PHASE", status.phase),
            $crate::output::col!("ID", metadata.id),
            $crate::output::col!("MESSAGE", status.message),
        ]
    };
}
pub(crate) use with_phase;

/// A column showing a byte count of the row, e.g. `1.5 GiB`.
macro_rules! bytes {
    ($header:literal, $($field:ident).+) => {
        $crate::output::Column {
            header: $header,
            get: |v| yunhan_types::sizes::human(v.$($field).+),
        }
    };
}
pub(crate) use bytes;

/// A JSON value as a cell: `-` for nothing (null or empty), strings bare.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A field as a cell, written as it is in the API's JSON (enums by their
/// wire names, absent options as `-`).
pub fn cell(v: &impl Serialize) -> String {
    text(&serde_json::to_value(v).unwrap_or(Value::Null))
}

/// A list as a comma-separated cell (`-` when empty).
pub fn join(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

/// Renders rows as an aligned table with upper-case headers.
pub fn table<'a, T: 'a>(columns: &[Column<T>], rows: impl IntoIterator<Item = &'a T>) -> String {
    let cells: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| columns.iter().map(|c| (c.get)(r)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let widest = cells.iter().map(|r| r[i].chars().count()).max();
            widest.unwrap_or(0).max(c.header.len())
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, vals: Vec<&str>| {
        let mut l = String::new();
        for (i, v) in vals.iter().enumerate() {
            if i + 1 == vals.len() {
                l.push_str(v);
            } else {
                l.push_str(&format!("{v:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, columns.iter().map(|c| c.header).collect());
    for r in &cells {
        line(&mut out, r.iter().map(String::as_str).collect());
    }
    out
}

/// Prints JSON as `-o json` does.
pub fn print_json(v: &impl Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Prints one object: a one-row table, or the server's JSON.
pub fn print_one<T>(format: Format, columns: &[Column<T>], row: &Answer<T>) {
    match format {
        Format::Json => print_json(&row.raw),
        Format::Table => print!("{}", table(columns, [&row.value])),
    }
}

/// Prints a list: a table, or the server's JSON as an array.
pub fn print_all<T>(format: Format, columns: &[Column<T>], rows: &[Answer<T>]) {
    match format {
        Format::Json => print_json(&rows.iter().map(|r| &r.raw).collect::<Vec<_>>()),
        Format::Table => print!("{}", table(columns, rows.iter().map(|r| &r.value))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row {
        name: &'static str,
        phase: Option<&'static str>,
    }

    #[test]
    fn aligns_columns() {
        let cols: [Column<Row>; 2] = [col!("NAME", name), col!("PHASE", phase)];
        let rows = [
            Row {
                name: "a-long-name",
                phase: Some("Ready"),
            },
            Row {
                name: "b",
                phase: None,
            },
        ];
        insta::assert_snapshot!(table(&cols, &rows), @r"
        NAME         PHASE
        a-long-name  Ready
        b            -
        ");
    }
}
