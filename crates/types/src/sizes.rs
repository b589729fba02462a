//! Pure helpers: size parsing and validation, names, thin-provisioning math.
//! No I/O; property-tested.

/// A refused size or name: `why` says what is wrong and what would be accepted.
/// `yunhan-storage` turns it into `StorageError::Invalid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct SizeError {
    pub why: String,
}

impl SizeError {
    pub fn new(why: impl Into<String>) -> Self {
        SizeError { why: why.into() }
    }
}

pub type Result<T, E = SizeError> = std::result::Result<T, E>;

pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;
pub const GIB: u64 = 1 << 30;
pub const TIB: u64 = 1 << 40;

/// Volumes are whole 512-byte sectors (QEMU's block layer works in sectors).
pub const SECTOR: u64 = 512;
/// The largest volume either driver accepts: 64 TiB. Anything above is a typo.
pub const MAX_VOLUME_BYTES: u64 = 64 * TIB;
/// Physical usage at or above this percentage of capacity raises the warning.
pub const WARN_PHYSICAL_PERCENT: u64 = 80;
/// Longest volume/snapshot/image name.
pub const MAX_NAME_LEN: usize = 96;

/// Parses `"20G"`, `"20GiB"`, `"512M"`, `"4096"`: a whole number with an
/// optional binary unit (K/M/G/T, with or without `i`/`iB`/`B`; `B` = bytes).
/// Units are powers of 1024, as QEMU and Ceph use them.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(SizeError::new(format!(
            "size `{s}` must start with a number (e.g. 20G, 512M, 1073741824)"
        )));
    }
    let mult = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KI" | "KIB" => KIB,
        "M" | "MB" | "MI" | "MIB" => MIB,
        "G" | "GB" | "GI" | "GIB" => GIB,
        "T" | "TB" | "TI" | "TIB" => TIB,
        other => {
            return Err(SizeError::new(format!(
                "size `{s}` has an unknown unit `{other}` (use K, M, G or T)"
            )))
        }
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| SizeError::new(format!("size `{s}` is too large")))
}

/// Checks a volume size: non-zero, whole sectors, at most [`MAX_VOLUME_BYTES`].
pub fn validate_size(bytes: u64) -> Result<()> {
    if bytes == 0 {
        return Err(SizeError::new("a volume size must be greater than 0"));
    }
    if bytes > MAX_VOLUME_BYTES {
        return Err(SizeError::new(format!(
            "size {bytes} bytes ({}) is above the {} limit",
            human(bytes),
            human(MAX_VOLUME_BYTES)
        )));
    }
    if bytes & (SECTOR - 1) != 0 {
        return Err(SizeError::new(format!(
            "size {bytes} bytes is not a whole number of {SECTOR}-byte sectors"
        )));
    }
    Ok(())
}

/// Checks a resize: a valid size that does not shrink the volume.
pub fn validate_extend(current: u64, requested: u64) -> Result<()> {
    validate_size(requested)?;
    if requested < current {
        return Err(SizeError::new(format!(
            "shrinking is not supported: the volume is {} ({current} bytes), {} ({requested} bytes) was requested",
            human(current),
            human(requested)
        )));
    }
    Ok(())
}

/// Names of volumes, snapshots and images: 1..=96 of `[A-Za-z0-9_.-]`, not
/// starting with `.` or `-` (they become file names and RBD image names).
pub fn validate_name(kind: &str, name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !ok_chars
        || name.starts_with('.')
        || name.starts_with('-')
    {
        return Err(SizeError::new(format!(
            "{kind} name `{name}` must be 1-{MAX_NAME_LEN} characters of A-Z a-z 0-9 _ . - \
             and not start with `.` or `-`"
        )));
    }
    Ok(())
}

/// Logical allocation over capacity (2.0 = twice as much promised as exists).
/// 0 when the capacity is unknown (0).
pub fn overcommit_ratio(logical_allocated: u64, capacity: u64) -> f64 {
    if capacity == 0 {
        0.0
    } else {
        logical_allocated as f64 / capacity as f64
    }
}

/// Whether physical usage has reached `percent` of capacity (exact integer
/// math; a zero capacity with any use counts as reached).
pub fn at_or_above(physical_used: u64, capacity: u64, percent: u64) -> bool {
    u128::from(physical_used) * 100 >= u128::from(capacity) * u128::from(percent)
        && (physical_used > 0 || capacity == 0)
}

/// The warning condition: physical use ≥ [`WARN_PHYSICAL_PERCENT`] of capacity.
pub fn physical_warning(physical_used: u64, capacity: u64) -> bool {
    at_or_above(physical_used, capacity, WARN_PHYSICAL_PERCENT)
}

/// `1.5 GiB`-style rendering for messages.
pub fn human(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let whole = bytes / size;
            let tenths = (bytes % size) * 10 / size;
            return if tenths == 0 {
                format!("{whole} {unit}")
            } else {
                format!("{whole}.{tenths} {unit}")
            };
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_size("20G").unwrap(), 20 * GIB);
        assert_eq!(parse_size("20GiB").unwrap(), 20 * GIB);
        assert_eq!(parse_size(" 512M ").unwrap(), 512 * MIB);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1t").unwrap(), TIB);
        assert!(parse_size("").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("3X")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
        assert!(parse_size("99999999999999T")
            .unwrap_err()
            .to_string()
            .contains("too large"));
    }

    #[test]
    fn sizes_are_checked() {
        assert!(validate_size(0)
            .unwrap_err()
            .to_string()
            .contains("greater than 0"));
        assert!(validate_size(MAX_VOLUME_BYTES + SECTOR).is_err());
        assert!(validate_size(u64::MAX)
            .unwrap_err()
            .to_string()
            .contains("limit"));
        assert!(validate_size(1000)
            .unwrap_err()
            .to_string()
            .contains("sector"));
        validate_size(MAX_VOLUME_BYTES).unwrap();
        validate_size(SECTOR).unwrap();
        assert!(validate_extend(GIB, MIB)
            .unwrap_err()
            .to_string()
            .contains("shrinking"));
        validate_extend(GIB, GIB).unwrap();
        validate_extend(GIB, 2 * GIB).unwrap();
    }

    #[test]
    fn names_are_checked() {
        for ok in ["a", "vol-1", "img_2.raw", &"x".repeat(96)] {
            validate_name("volume", ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "a/b",
            "-x",
            "a b",
            "é",
            "a@b",
            &"x".repeat(97),
        ] {
            assert!(validate_name("volume", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn thresholds() {
        assert!(!physical_warning(79, 100));
        assert!(physical_warning(80, 100));
        assert!(physical_warning(100, 100));
        assert!(!physical_warning(0, 100));
        assert!(physical_warning(1, 0));
        assert_eq!(overcommit_ratio(300, 100), 3.0);
        assert_eq!(overcommit_ratio(1, 0), 0.0);
        assert_eq!(human(20 * GIB), "20 GiB");
        assert_eq!(human(1536 * MIB), "1.5 GiB");
        assert_eq!(human(7), "7 B");
    }

    proptest! {
        #[test]
        fn parse_roundtrips_every_unit(n in 0u64..1_000_000, u in 0usize..5) {
            let (suffix, mult) = [("", 1), ("K", KIB), ("M", MIB), ("G", GIB), ("T", TIB)][u];
            let want = n.checked_mul(mult);
            let got = parse_size(&format!("{n}{suffix}")).ok();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn parse_never_panics(s in ".{0,24}") {
            let _ = parse_size(&s);
        }

        #[test]
        fn valid_sizes_are_sector_multiples_in_range(b in any::<u64>()) {
            let ok = validate_size(b).is_ok();
            prop_assert_eq!(ok, b > 0 && b <= MAX_VOLUME_BYTES && b % SECTOR == 0);
        }

        #[test]
        fn extend_never_shrinks(cur in 1u64..MAX_VOLUME_BYTES / SECTOR, req in 1u64..MAX_VOLUME_BYTES / SECTOR) {
            let (cur, req) = (cur * SECTOR, req * SECTOR);
            prop_assert_eq!(validate_extend(cur, req).is_ok(), req >= cur);
        }

        #[test]
        fn warning_matches_the_ratio(cap in 1u64..u64::MAX, frac in 0.0f64..1.0) {
            let used = (cap as f64 * frac) as u64;
            let w = physical_warning(used, cap);
            // Exact integer decision agrees with float math away from the edge.
            let ratio = used as f64 / cap as f64;
            if (ratio - 0.8).abs() > 1e-9 {
                prop_assert_eq!(w, ratio >= 0.8);
            }
            // Monotone in usage.
            if w { prop_assert!(physical_warning(used.saturating_add(1).min(cap), cap)); }
        }

        #[test]
        fn overcommit_is_logical_over_capacity(l in any::<u64>(), c in 1u64..u64::MAX) {
            let r = overcommit_ratio(l, c);
            prop_assert!(r >= 0.0);
            prop_assert_eq!(r >= 1.0, l >= c || (l as f64 / c as f64) >= 1.0);
        }

        #[test]
        fn names_never_escape_a_directory(s in "[ -~]{0,100}") {
            if validate_name("volume", &s).is_ok() {
                prop_assert!(!s.contains('/') && s != "." && s != ".." && !s.is_empty());
            }
        }
    }
}
