//! Byte-level helpers of the walk: where a string's plain run ends, escapes, hex digits.

use super::*;

/// The first `"`, `\` or control character (< 0x20) in `b` at or after `from`: where a string's
/// plain run ends. Eight bytes at a time, since most strings are short and a SIMD search's set-up
/// would cost more than it saves.
pub(super) fn string_stop(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // Flags zero bytes (and bytes below 0x20), exactly up to the first one.
        let stops = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let stops = stops & HIGH;
        if stops != 0 {
            return Some(i + (stops.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let rest = b.get(i..)?;
    rest.iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|at| i + at)
}

/// The end of the escape sequence whose backslash is at `at - 1`. Surrogates must come in
/// pairs, as serde_json requires for a string: a lone one cannot be turned into UTF-8.
pub(super) fn escape_end(b: &[u8], at: usize) -> Pass<usize> {
    match b.get(at) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 1),
        Some(b'u') => match hex4(b, at + 1)? {
            0xD800..=0xDBFF
                if b.get(at + 5..at + 7) == Some(b"\\u")
                    && matches!(hex4(b, at + 7)?, 0xDC00..=0xDFFF) =>
            {
                Ok(at + 11)
            }
            0xD800..=0xDFFF => Err(NotJson),
            _ => Ok(at + 5),
        },
        _ => Err(NotJson),
    }
}

/// The four hex digits at `at` as a UTF-16 code unit.
pub(super) fn hex4(b: &[u8], at: usize) -> Pass<u32> {
    let digits = b.get(at..at + 4).ok_or(NotJson)?;
    digits.iter().try_fold(0, |n, &d| {
        let d = char::from(d).to_digit(16).ok_or(NotJson)?;
        Ok(n << 4 | d)
    })
}
