//! HTTP status codes a health check accepts, in Octavia's `expected_codes` form: one code
//! (`200`), a list (`200,202`), a range (`200-204`) or a mix (`200,300-302`). HAProxy's
//! `http-check expect status` reads the same form.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// At most this many codes and ranges in one list.
pub const MAX_ITEMS: usize = 16;

/// A refused list: `why` says what is wrong and what would be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected codes {text:?}: {why}")]
pub struct StatusCodesError {
    pub text: String,
    pub why: &'static str,
}

/// Accepted status codes, as inclusive ranges (a single code is a range of one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCodes(Vec<RangeInclusive<u16>>);

impl StatusCodes {
    /// Does `code` count as healthy?
    pub fn contains(&self, code: u16) -> bool {
        self.0.iter().any(|r| r.contains(&code))
    }
}

impl Default for StatusCodes {
    /// Any success or redirect (2xx, 3xx).
    fn default() -> Self {
        StatusCodes(vec![200..=399])
    }
}

impl FromStr for StatusCodes {
    type Err = StatusCodesError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let refuse = |why| StatusCodesError {
            text: s.to_string(),
            why,
        };
        let items: Vec<&str> = s.split(',').map(str::trim).collect();
        if items.len() > MAX_ITEMS {
            return Err(refuse("at most 16 codes or ranges"));
        }
        let code = |t: &str| {
            (t.len() == 3)
                .then(|| t.parse::<u16>().ok())
                .flatten()
                .filter(|c| (100..=599).contains(c))
                .ok_or_else(|| refuse("codes are 100–599, like 200, 200,202 or 200-204"))
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let (lo, hi) = match item.split_once('-') {
                Some((lo, hi)) => (code(lo.trim())?, code(hi.trim())?),
                None => (code(item)?, code(item)?),
            };
            if lo > hi {
                return Err(refuse("a range goes from the lower code to the higher"));
            }
            out.push(lo..=hi);
        }
        Ok(StatusCodes(out))
    }
}

impl fmt::Display for StatusCodes {
    /// The canonical form: `200,300-302`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            match (r.start(), r.end()) {
                (lo, hi) if lo == hi => write!(f, "{sep}{lo}")?,
                (lo, hi) => write!(f, "{sep}{lo}-{hi}")?,
            }
        }
        Ok(())
    }
}

serde_as_text!(StatusCodes);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn octavias_forms_read() {
        let c: StatusCodes = "200, 202,300-302".parse().unwrap();
        assert_eq!(c.to_string(), "200,202,300-302");
        assert!(c.contains(202) && c.contains(301) && !c.contains(201) && !c.contains(404));
        assert_eq!(StatusCodes::default().to_string(), "200-399");
        let one: StatusCodes = "404".parse().unwrap();
        assert!(one.contains(404) && !one.contains(200));
    }

    #[test]
    fn bad_lists_say_why() {
        for (text, why) in [
            ("", "100–599"),
            ("20", "100–599"),
            ("600", "100–599"),
            ("2xx", "100–599"),
            ("0200", "100–599"),
            ("300-200", "lower code"),
            ("200,,201", "100–599"),
            (&"200,".repeat(17)[..67], "at most 16"),
        ] {
            let e = text.parse::<StatusCodes>().unwrap_err().to_string();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }

    proptest! {
        #[test]
        fn canonical_text_reads_back(items in prop::collection::vec((100u16..600, 0u16..50), 1..16)) {
            let text = (items.iter())
                .map(|(lo, w)| format!("{lo}-{}", (lo + w).min(599)))
                .collect::<Vec<_>>()
                .join(",");
            let c: StatusCodes = text.parse().unwrap();
            let again: StatusCodes = c.to_string().parse().unwrap();
            prop_assert_eq!(&again, &c);
            for (lo, w) in items {
                prop_assert!(c.contains(lo) && c.contains((lo + w).min(599)));
            }
        }
    }
}
