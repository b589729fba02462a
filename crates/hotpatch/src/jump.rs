//! x86-64 jump encodings and the choice between them (pure).
//!
//! * `jmp rel32`      — `E9 <rel32>`, 5 bytes, reaches ±2 GiB from the end of the instruction.
//! * `jmp [rip+0]; .quad target` — `FF 25 00 00 00 00 <imm64>`, 14 bytes, reaches anywhere.
//! * relay            — a `jmp rel32` at the old function to a 14-byte absolute jump placed in
//!   a page we map within ±2 GiB of it: only 5 bytes of the old function are overwritten.

use serde::{Deserialize, Serialize};

pub const REL32_LEN: usize = 5;
pub const ABS64_LEN: usize = 14;

/// How the old function's entry is redirected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JumpKind {
    /// `jmp rel32` straight to the new function.
    Rel32,
    /// `jmp rel32` to a relay trampoline, which does an absolute jump to the new function.
    Relay,
    /// `jmp [rip+0]` + 8-byte absolute address written over the old function.
    Abs64,
}

impl JumpKind {
    /// Bytes overwritten at the old function's entry.
    pub fn patch_len(self) -> usize {
        match self {
            JumpKind::Rel32 | JumpKind::Relay => REL32_LEN,
            JumpKind::Abs64 => ABS64_LEN,
        }
    }
}

impl std::fmt::Display for JumpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JumpKind::Rel32 => "rel32",
            JumpKind::Relay => "relay",
            JumpKind::Abs64 => "abs64",
        })
    }
}

/// The displacement of a `jmp rel32` at `at` to `target`, if it fits.
pub fn rel32_disp(at: u64, target: u64) -> Option<i32> {
    let next = at.wrapping_add(REL32_LEN as u64);
    let d = target.wrapping_sub(next) as i64;
    i32::try_from(d).ok()
}

/// `jmp rel32` at `at` to `target`; `None` when out of reach.
pub fn encode_rel32(at: u64, target: u64) -> Option<[u8; REL32_LEN]> {
    let d = rel32_disp(at, target)?;
    let mut b = [0u8; REL32_LEN];
    b[0] = 0xe9;
    b[1..].copy_from_slice(&d.to_le_bytes());
    Some(b)
}

/// `jmp qword ptr [rip+0]` followed by the absolute target.
pub fn encode_abs64(target: u64) -> [u8; ABS64_LEN] {
    let mut b = [0u8; ABS64_LEN];
    b[..6].copy_from_slice(&[0xff, 0x25, 0, 0, 0, 0]);
    b[6..].copy_from_slice(&target.to_le_bytes());
    b
}

/// Decodes one of our jumps located at `at`: returns its length and target.
pub fn decode(at: u64, b: &[u8]) -> Option<(usize, u64)> {
    if b.len() >= REL32_LEN && b[0] == 0xe9 {
        let d = i32::from_le_bytes([b[1], b[2], b[3], b[4]]);
        let target = at
            .wrapping_add(REL32_LEN as u64)
            .wrapping_add(d as i64 as u64);
        return Some((REL32_LEN, target));
    }
    if b.len() >= ABS64_LEN && b[..6] == [0xff, 0x25, 0, 0, 0, 0] {
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[6..14]);
        return Some((ABS64_LEN, u64::from_le_bytes(t)));
    }
    None
}

/// Why no jump can be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// The function is shorter than the shortest usable jump.
    TooShort { size: u64, needed: usize },
}

/// Picks the encoding, in order of preference:
/// 1. `Rel32` when the new function is within ±2 GiB (5 bytes overwritten);
/// 2. `Relay` when a relay page can be placed near the old function (still 5 bytes);
/// 3. `Abs64` when the function has room for 14 bytes.
///
/// Overwriting fewer bytes is preferred: the window in which a thread can be "inside" the
/// patched bytes is smaller, and so is the chance of clobbering a branch target in the body.
pub fn choose(
    old: u64,
    old_size: u64,
    new: u64,
    relay_allowed: bool,
) -> Result<JumpKind, PlanError> {
    if old_size < REL32_LEN as u64 {
        return Err(PlanError::TooShort {
            size: old_size,
            needed: REL32_LEN,
        });
    }
    if rel32_disp(old, new).is_some() {
        return Ok(JumpKind::Rel32);
    }
    if relay_allowed {
        return Ok(JumpKind::Relay);
    }
    if old_size >= ABS64_LEN as u64 {
        return Ok(JumpKind::Abs64);
    }
    Err(PlanError::TooShort {
        size: old_size,
        needed: ABS64_LEN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        // jmp to the next instruction: E9 00 00 00 00
        assert_eq!(encode_rel32(0x1000, 0x1005).unwrap(), [0xe9, 0, 0, 0, 0]);
        // jmp to itself: displacement -5
        assert_eq!(
            encode_rel32(0x1000, 0x1000).unwrap(),
            [0xe9, 0xfb, 0xff, 0xff, 0xff]
        );
        assert_eq!(encode_rel32(0, 0x1_0000_0000), None);
        assert_eq!(
            encode_abs64(0x1122334455667788),
            [0xff, 0x25, 0, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
        );
    }

    #[test]
    fn reach_boundaries() {
        let at = 0x1_4000_0000u64;
        let next = at + 5;
        assert!(rel32_disp(at, next + i32::MAX as u64).is_some());
        assert!(rel32_disp(at, next + i32::MAX as u64 + 1).is_none());
        assert!(rel32_disp(at, next - (1u64 << 31)).is_some());
        assert!(rel32_disp(at, next - (1u64 << 31) - 1).is_none());
    }

    #[test]
    fn choice() {
        let near = 0x7f00_0000_1000;
        assert_eq!(
            choose(near, 16, near + 0x10_0000, true),
            Ok(JumpKind::Rel32)
        );
        assert_eq!(choose(0x401000, 16, near, true), Ok(JumpKind::Relay));
        assert_eq!(choose(0x401000, 16, near, false), Ok(JumpKind::Abs64));
        assert_eq!(
            choose(0x401000, 8, near, false),
            Err(PlanError::TooShort {
                size: 8,
                needed: 14
            })
        );
        assert_eq!(
            choose(near, 4, near + 64, true),
            Err(PlanError::TooShort { size: 4, needed: 5 })
        );
    }

    proptest! {
        #[test]
        fn rel32_roundtrip(at in 0u64..0x7fff_ffff_ffff, delta in i32::MIN as i64..=i32::MAX as i64) {
            let target = (at as i64 + 5 + delta) as u64;
            let b = encode_rel32(at, target).unwrap();
            prop_assert_eq!(decode(at, &b), Some((REL32_LEN, target)));
        }

        #[test]
        fn abs64_roundtrip(at: u64, target: u64) {
            let b = encode_abs64(target);
            prop_assert_eq!(decode(at, &b), Some((ABS64_LEN, target)));
        }

        #[test]
        fn choice_always_fits(old in 0x1000u64..0x7fff_ffff_0000, size in 0u64..64,
                              new in 0x1000u64..0x7fff_ffff_0000, relay: bool) {
            match choose(old, size, new, relay) {
                Ok(k) => {
                    prop_assert!(k.patch_len() as u64 <= size);
                    if k == JumpKind::Rel32 { prop_assert!(encode_rel32(old, new).is_some()); }
                    if k != JumpKind::Rel32 { prop_assert!(encode_rel32(old, new).is_none()); }
                }
                Err(PlanError::TooShort { needed, .. }) => prop_assert!(size < needed as u64),
            }
        }
    }
}
