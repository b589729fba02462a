//! Tables for people, JSON for scripts.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// A column: header and how to get the cell from an object.
pub struct Column {
    pub header: &'static str,
    pub get: fn(&Value) -> String,
}

pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders rows as an aligned table with upper-case headers.
pub fn table(columns: &[Column], rows: &[Value]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| (c.get)(r)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(c.header.len())
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

pub fn print(format: Format, columns: &[Column], value: &Value) {
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Format::Table => match value {
            Value::Array(rows) => print!("{}", table(columns, rows)),
            one => print!("{}", table(columns, std::slice::from_ref(one))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aligns_columns() {
        let cols = [
            Column {
                header: "NAME",
                get: |v| text(&v["name"]),
            },
            Column {
                header: "PHASE",
                get: |v| text(&v["phase"]),
            },
        ];
        let rows = vec![
            json!({"name": "a-long-name", "phase": "Ready"}),
            json!({"name": "b", "phase": null}),
        ];
        insta::assert_snapshot!(table(&cols, &rows), @r"
        NAME         PHASE
        a-long-name  Ready
        b            -
        ");
    }
}
