//! Cron schedules, pure: five fields `minute hour day-of-month month day-of-week`, or
//! six with a leading `second` field. Each field is a comma list of `*`, `N`, `N-M`,
//! each optionally `/STEP`; months and week days may be named (`jan`, `mon`), and a
//! week day of 7 is Sunday. As in Vixie cron, when both day fields are restricted a
//! day matches either of them. Times are UTC.

use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, Time};

/// How far ahead [`Cron::next_after`] looks: fifty years. A day-of-month restricted
/// together with a weekday and a month (`* * * */7 3 3`: March Wednesdays that are the
/// 1st, 8th, …) can fire only every 5 to 11 years, and a 29 February on a given weekday
/// every 28 (40 across 2100, which has no leap day); fifty years covers them all from
/// any start.
pub const HORIZON_DAYS: i64 = 50 * 366;

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("a schedule has 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading second field, not {0}")]
    FieldCount(usize),
    #[error("the {field} field {text:?}: {why}")]
    Field {
        field: &'static str,
        text: String,
        why: String,
    },
    #[error("it never fires (no matching time within {} years)", HORIZON_DAYS / 366)]
    NeverFires,
}

/// One field's range and its names.
struct FieldKind {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

impl FieldKind {
    /// A field of numbers only (no names such as `jan` or `mon`).
    const fn numeric(name: &'static str, min: u32, max: u32) -> FieldKind {
        FieldKind {
            name,
            min,
            max,
            names: &[],
        }
    }
}

const SECOND: FieldKind = FieldKind::numeric("second", 0, 59);
const MINUTE: FieldKind = FieldKind::numeric("minute", 0, 59);
const HOUR: FieldKind = FieldKind::numeric("hour", 0, 23);
const DOM: FieldKind = FieldKind::numeric("day-of-month", 1, 31);
const MONTH: FieldKind = FieldKind {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: FieldKind = FieldKind {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    /// The day fields as written were `*` (unrestricted).
    any_day: bool,
    any_weekday: bool,
}

impl Cron {
    /// Parses a schedule and refuses one that never fires.
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let (seconds, rest) = match fields.len() {
            5 => (1, &fields[..]),
            6 => (parse_field(&SECOND, fields[0])?, &fields[1..]),
            n => return Err(CronError::FieldCount(n)),
        };
        let mut weekdays = parse_field(&DOW, rest[4])?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays | 1) & !(1 << 7);
        }
        let cron = Cron {
            seconds,
            minutes: parse_field(&MINUTE, rest[0])?,
            hours: parse_field(&HOUR, rest[1])?,
            days: parse_field(&DOM, rest[2])?,
            months: parse_field(&MONTH, rest[3])?,
            weekdays,
            any_day: rest[2].starts_with('*'),
            any_weekday: rest[4].starts_with('*'),
        };
        cron.fires_some_day()?;
        Ok(cron)
    }

    /// Refuses a schedule whose day fields match no date in the horizon (30 February).
    fn fires_some_day(&self) -> Result<(), CronError> {
        let start = Date::from_calendar_date(2024, time::Month::January, 1).unwrap_or(Date::MIN);
        let found = (0..HORIZON_DAYS).any(|d| self.day_matches(start + Duration::days(d)));
        found.then_some(()).ok_or(CronError::NeverFires)
    }

    /// Whether the schedule fires at `t` (to the second).
    pub fn matches(&self, t: OffsetDateTime) -> bool {
        let t = t.to_offset(time::UtcOffset::UTC);
        self.day_matches(t.date()) && self.time_matches(t.time())
    }

    fn time_matches(&self, t: Time) -> bool {
        bit(self.hours, t.hour()) && bit(self.minutes, t.minute()) && bit(self.seconds, t.second())
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = bit(self.days, d.day());
        let dow = bit(self.weekdays, d.weekday().number_days_from_sunday());
        let day = match (self.any_day, self.any_weekday) {
            (false, false) => dom || dow,
            _ => dom && dow,
        };
        day && bit(self.months, u8::from(d.month()))
    }

    /// The first time strictly after `t` (whole seconds, UTC) when the schedule fires;
    /// None if there is none within [`HORIZON_DAYS`].
    pub fn next_after(&self, t: OffsetDateTime) -> Option<OffsetDateTime> {
        let start = t
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .ok()?
            + Duration::SECOND;
        (0..HORIZON_DAYS).find_map(|d| {
            let date = start.date().checked_add(Duration::days(d))?;
            if !self.day_matches(date) {
                return None;
            }
            let from = if d == 0 { start.time() } else { Time::MIDNIGHT };
            let at = self.first_time_from(from)?;
            Some(PrimitiveDateTime::new(date, at).assume_utc())
        })
    }

    /// The first matching time of a day at or after `from`.
    fn first_time_from(&self, from: Time) -> Option<Time> {
        for h in from.hour()..24 {
            if !bit(self.hours, h) {
                continue;
            }
            let m0 = if h == from.hour() { from.minute() } else { 0 };
            for m in (m0..60).filter(|m| bit(self.minutes, *m)) {
                let s0 = if (h, m) == (from.hour(), from.minute()) {
                    from.second()
                } else {
                    0
                };
                if let Some(s) = (s0..60).find(|s| bit(self.seconds, *s)) {
                    return Time::from_hms(h, m, s).ok();
                }
            }
        }
        None
    }
}

fn bit(set: u64, v: u8) -> bool {
    set & (1 << v) != 0
}

/// One field: a comma list of `*`, `N`, `N-M`, each optionally `/STEP`.
fn parse_field(kind: &FieldKind, text: &str) -> Result<u64, CronError> {
    let bad = |why: String| CronError::Field {
        field: kind.name,
        text: text.to_string(),
        why,
    };
    let mut set = 0u64;
    for item in text.split(',') {
        set |= parse_item(kind, item).map_err(bad)?;
    }
    Ok(set)
}

/// One item of a field; the error says what is wrong with it.
fn parse_item(kind: &FieldKind, item: &str) -> Result<u64, String> {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (item, None),
    };
    let (lo, hi) = match range.split_once('-') {
        _ if range == "*" => (kind.min, kind.max),
        Some((a, b)) => (value(kind, a)?, value(kind, b)?),
        // `N/STEP` runs from N to the end of the range.
        None if step.is_some() => (value(kind, range)?, kind.max),
        None => {
            let v = value(kind, range)?;
            (v, v)
        }
    };
    if lo > hi {
        return Err(format!("the range {lo}-{hi} is backwards"));
    }
    let step = match step {
        Some(s) => s.parse::<u32>().ok().filter(|s| *s > 0),
        None => Some(1),
    };
    let step = step.ok_or_else(|| format!("{item:?}: a step is a whole number above 0"))?;
    Ok((lo..=hi)
        .step_by(step as usize)
        .fold(0, |set, v| set | 1 << v))
}

/// A number (or name) within the field's range.
fn value(kind: &FieldKind, text: &str) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let named = kind.names.iter().position(|n| *n == lower);
    let v = match named {
        Some(i) => i as u32 + if kind.min == 1 { 1 } else { 0 },
        None => text
            .parse::<u32>()
            .map_err(|_| format!("{text:?} is not a number"))?,
    };
    if v < kind.min || v > kind.max {
        return Err(format!("{v} is outside {}-{}", kind.min, kind.max));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn next(expr: &str, t: OffsetDateTime) -> OffsetDateTime {
        Cron::parse(expr).unwrap().next_after(t).unwrap()
    }

    #[test]
    fn ordinary_schedules() {
        let t = datetime!(2025-03-10 12:34:56 UTC); // a Monday
        assert_eq!(next("*/1 * * * *", t), datetime!(2025-03-10 12:35:00 UTC));
        assert_eq!(next("*/5 * * * * *", t), datetime!(2025-03-10 12:35:00 UTC));
        assert_eq!(next("0 3 * * *", t), datetime!(2025-03-11 03:00:00 UTC));
        assert_eq!(next("0 0 1 jan *", t), datetime!(2026-01-01 00:00:00 UTC));
        assert_eq!(next("30 2 * * sun", t), datetime!(2025-03-16 02:30:00 UTC));
        assert_eq!(next("30 2 * * 7", t), datetime!(2025-03-16 02:30:00 UTC));
        assert_eq!(next("0 0 29 2 *", t), datetime!(2028-02-29 00:00:00 UTC));
        assert_eq!(
            next("10-20/5 * * * *", t),
            datetime!(2025-03-10 13:10:00 UTC)
        );
        // Both day fields restricted: either one (the 15th, or a Friday).
        assert_eq!(next("0 0 15 * fri", t), datetime!(2025-03-14 00:00:00 UTC));
    }

    #[test]
    fn never_firing_and_bad_schedules_are_refused() {
        assert_eq!(Cron::parse("0 0 30 2 *"), Err(CronError::NeverFires));
        assert_eq!(Cron::parse("0 0 31 4,6,9,11 *"), Err(CronError::NeverFires));
        for bad in [
            "",
            "* * * *",
            "* * * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "5-1 * * * *",
            "*/0 * * * *",
            "x * * * *",
            "1,,2 * * * *",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad:?}");
        }
        let e = Cron::parse("* 25 * * *").unwrap_err().to_string();
        assert!(e.contains("hour") && e.contains("0-23"), "{e}");
    }

    fn field(max: u32) -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_string()),
            (0..=max).prop_map(|v| v.to_string()),
            (0..=max, 1..=max.max(1)).prop_map(|(v, s)| format!("{v}/{s}")),
            (1..=max.max(1)).prop_map(|s| format!("*/{s}")),
            (0..=max, 0..=max).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
        ]
    }

    fn schedule() -> impl Strategy<Value = String> {
        let days = (field(30), field(11), field(6)).prop_map(|(d, m, w)| (bump(&d), bump(&m), w));
        (field(59), field(59), field(23), days)
            .prop_map(|(s, mi, h, (d, mo, w))| format!("{s} {mi} {h} {d} {mo} {w}"))
    }

    /// A 0-based field as the 1-based one it stands for (days, months).
    fn bump(f: &str) -> String {
        let up = |n: &str| {
            n.parse::<u32>()
                .map_or(n.to_string(), |v| (v + 1).to_string())
        };
        let (range, step) = f.split_once('/').map_or((f, None), |(r, s)| (r, Some(s)));
        let range = match range.split_once('-') {
            Some((a, b)) => format!("{}-{}", up(a), up(b)),
            None => up(range),
        };
        step.map_or(range.clone(), |s| format!("{range}/{s}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Whatever parses fires after any time, at a matching time, and nothing in
        /// between matches (checked second by second over the first hour).
        #[test]
        fn next_is_the_first_match_after(expr in schedule(), secs in 0i64..4_000_000_000) {
            let Ok(cron) = Cron::parse(&expr) else { return Ok(()) };
            let t = OffsetDateTime::from_unix_timestamp(secs).unwrap();
            let n = cron.next_after(t);
            prop_assert!(n.is_some(), "{expr} found nothing after {t}");
            let n = n.unwrap();
            prop_assert!(n > t);
            prop_assert!(cron.matches(n), "{expr}: {n}");
            let gap = (n - t).whole_seconds().min(3600);
            for s in 1..gap {
                prop_assert!(!cron.matches(t + Duration::seconds(s)), "{expr}: {t} + {s}s");
            }
        }

        #[test]
        fn parsing_never_panics(s in "[0-9a-z*/,-]{0,8}( [0-9a-z*/,-]{0,6}){0,6}") {
            let _ = Cron::parse(&s);
        }
    }
}
