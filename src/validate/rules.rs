//! Reusable rules for common API fields, for `#[validate(custom(function = "..."))]`.
//!
//! Each returns a [`ValidationError`] with a stable `code` (the function's name) and a fixed
//! message, so error reports say what is expected and never quote the value.

use std::borrow::Cow;

use validator::ValidationError;

fn fail(code: &'static str, message: &'static str) -> Result<(), ValidationError> {
    Err(ValidationError::new(code).with_message(Cow::Borrowed(message)))
}

/// 1 to 128 ASCII letters, digits, `_` and `-`, not starting with `-` or `_`: safe in URLs, file
/// names and log lines, and never read as a command-line option.
pub fn identifier(value: &str) -> Result<(), ValidationError> {
    let valid = (1..=128).contains(&value.len())
        && value
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_alphanumeric() || (i > 0 && matches!(b, b'_' | b'-')));
    if valid {
        Ok(())
    } else {
        fail(
            "identifier",
            "must be 1 to 128 letters, digits, '_' or '-', starting with a letter or digit",
        )
    }
}

/// A URL slug: 1 to 64 lower-case ASCII letters and digits in words joined by single `-`
/// (`spring-sale-2026`), so two spellings of one slug cannot exist.
pub fn slug(value: &str) -> Result<(), ValidationError> {
    let valid = (1..=64).contains(&value.len())
        && value.split('-').all(|word| {
            !word.is_empty() && word.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9'))
        });
    if valid {
        Ok(())
    } else {
        fail(
            "slug",
            "must be lower-case letters and digits in words joined by '-'",
        )
    }
}

/// Characters that are never wanted in text fields: control characters (C0, DEL, C1), which
/// inject lines into logs and terminals, the Unicode line and paragraph separators, and the
/// bidirectional overrides and isolates that make text display differently from what it is
/// ("Trojan Source", CVE-2021-42574).
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Single-line text (names, titles): no control characters at all (line breaks included), no
/// Unicode line separators, no bidirectional overrides.
pub fn safe_line(value: &str) -> Result<(), ValidationError> {
    if value.chars().any(unsafe_char) {
        fail(
            "safe_line",
            "must be a single line without control or bidirectional-override characters",
        )
    } else {
        Ok(())
    }
}

/// Multi-line text (descriptions, notes): like [`safe_line`], but tabs and line breaks are
/// allowed.
pub fn safe_text(value: &str) -> Result<(), ValidationError> {
    if value
        .chars()
        .any(|c| unsafe_char(c) && !matches!(c, '\t' | '\n' | '\r'))
    {
        fail(
            "safe_text",
            "must not contain control or bidirectional-override characters",
        )
    } else {
        Ok(())
    }
}

/// A finite number. validator's `range` lets NaN through (every comparison with NaN is false),
/// and a query string or form can carry `NaN` or `inf`: pair `range` with this rule on floats.
pub fn finite<T: Into<f64>>(value: T) -> Result<(), ValidationError> {
    if value.into().is_finite() {
        Ok(())
    } else {
        fail("finite", "must be a finite number")
    }
}

/// A calendar date in ISO 8601 / RFC 3339 `full-date` form, `YYYY-MM-DD`, years 0001 to 9999.
///
/// Written here rather than with a date crate: the grammar is fixed-width digits plus the
/// Gregorian month lengths, and date parsers accept more than this (signs, week dates, ordinal
/// dates, other widths) that an API field should not.
pub fn iso_date(value: &str) -> Result<(), ValidationError> {
    let valid = || -> Option<()> {
        let bytes = value.as_bytes();
        if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return None;
        }
        let number = |range: std::ops::Range<usize>| -> Option<u32> {
            let digits = bytes.get(range)?;
            digits
                .iter()
                .all(u8::is_ascii_digit)
                .then(|| digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
        };
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        (year >= 1 && (1..=days).contains(&day)).then_some(())
    };
    match valid() {
        Some(()) => Ok(()),
        None => fail("iso_date", "must be a date written YYYY-MM-DD"),
    }
}

/// An absolute `https` URL with a host, without user name or password, at most 2048 bytes.
///
/// Whitespace and control characters are refused before parsing: the URL standard's parser
/// silently strips tabs and line breaks, so `https://exa\nmple.com` would otherwise pass as a
/// different URL than the one stored.
pub fn https_url(value: &str) -> Result<(), ValidationError> {
    let valid = value.len() <= 2048
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && url::Url::parse(value).is_ok_and(|url| {
            url.scheme() == "https"
                && url.host().is_some()
                && url.username().is_empty()
                && url.password().is_none()
        });
    if valid {
        Ok(())
    } else {
        fail("https_url", "must be an https URL without credentials")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for good in ["a", "user_42", "A-b_c", "0", &"x".repeat(128)] {
            assert!(identifier(good).is_ok(), "{good}");
        }
        for bad in ["", "-rf", "_x", "a b", "a/b", "é", "a\0", &"x".repeat(129)] {
            assert!(identifier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slugs() {
        for good in ["a", "spring-sale-2026", "x1"] {
            assert!(slug(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "a--b", "A", "a_b", "a b", &"a".repeat(65)] {
            assert!(slug(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn safe_strings() {
        assert!(safe_line("Grüße, 東京 <script>").is_ok());
        assert!(safe_text("line one\n\tline two\r\n").is_ok());
        for bad in [
            "a\nb",
            "a\rb",
            "a\u{0}",
            "\u{7f}",
            "\u{85}",
            "a\u{2028}",
            "\u{202E}txt.exe",
        ] {
            assert!(safe_line(bad).is_err(), "{bad:?}");
        }
        for bad in ["a\u{0}", "\u{1b}[31m", "\u{2066}x", "\u{2029}"] {
            assert!(safe_text(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn finite_numbers() {
        assert!(finite(1.5f64).is_ok());
        assert!(finite(-0.0f32).is_ok());
        assert!(finite(7u32).is_ok());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(finite(bad).is_err());
        }
    }

    #[test]
    fn dates() {
        for good in [
            "2026-11-24",
            "2024-02-29",
            "2000-02-29",
            "0001-01-01",
            "9999-12-31",
        ] {
            assert!(iso_date(good).is_ok(), "{good}");
        }
        for bad in [
            "2026-02-29",
            "1900-02-29",
            "2026-13-01",
            "2026-00-10",
            "2026-04-31",
            "0000-01-01",
            "2026-1-01",
            "26-11-24",
            "2026/11/24",
            "+2026-11-24",
            "2026-11-24T00:00:00Z",
            "",
            "２０２６-11-24",
        ] {
            assert!(iso_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn https_urls() {
        for good in [
            "https://example.com",
            "https://example.com:8443/a?b=c#d",
            "https://[::1]/",
        ] {
            assert!(https_url(good).is_ok(), "{good}");
        }
        for bad in [
            "http://example.com",
            "javascript:alert(1)",
            "https://user:pw@example.com",
            "https://user@example.com",
            "https://exa\nmple.com",
            " https://example.com",
            "//example.com",
            "example.com",
            "https:///",
            "data:text/html,x",
        ] {
            assert!(https_url(bad).is_err(), "{bad:?}");
        }
        assert!(https_url(&format!("https://example.com/{}", "a".repeat(2048))).is_err());
    }
}
