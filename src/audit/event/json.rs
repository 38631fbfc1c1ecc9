//! Audit records as JSON, written directly (byte for byte what serde_json writes).

use super::*;

pub(super) fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub(crate) fn rfc3339<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = [0u8; 64];
    let len = match time.duration_since(UNIX_EPOCH) {
        Ok(since) => format_rfc3339(since, &mut text),
        Err(_) => None,
    };
    let len = match len {
        Some(len) => len,
        // Before 1970 or after 9999: the general formatter, which refuses years past 9999
        // (`OffsetDateTime::from(SystemTime)` would panic on them).
        None => {
            let out_of_range = || serde::ser::Error::custom("time out of range");
            let epoch = time::OffsetDateTime::UNIX_EPOCH;
            let date = match time.duration_since(UNIX_EPOCH) {
                Ok(after) => time::Duration::try_from(after)
                    .ok()
                    .and_then(|after| epoch.checked_add(after)),
                Err(before) => time::Duration::try_from(before.duration())
                    .ok()
                    .and_then(|before| epoch.checked_sub(before)),
            }
            .ok_or_else(out_of_range)?;
            let mut cursor = std::io::Cursor::new(&mut text[..]);
            date.format_into(&mut cursor, &time::format_description::well_known::Rfc3339)
                .map_err(serde::ser::Error::custom)?;
            cursor.position() as usize
        }
    };
    let text = std::str::from_utf8(&text[..len]).map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(text)
}

thread_local! {
    /// The `YYYY-MM-DDTHH:MM:SS` of the last second formatted on this thread: records come many
    /// to a second, and only the fraction changes between them.
    static LAST_SECOND: std::cell::Cell<(u64, [u8; 19])> = const { std::cell::Cell::new((u64::MAX, [0; 19])) };
}

/// RFC 3339 in UTC the way `time`'s `Rfc3339` writes it (the fraction without trailing zeros,
/// none when zero, then `Z`), by hand: through `time`'s formatter it took 6 % of the audit
/// thread. `None` past year 9999.
fn format_rfc3339(since_epoch: Duration, out: &mut [u8; 64]) -> Option<usize> {
    const LAST_SECOND_OF_9999: u64 = 253_402_300_799;
    let seconds = since_epoch.as_secs();
    if seconds > LAST_SECOND_OF_9999 {
        return None;
    }
    let (cached, mut prefix) = LAST_SECOND.get();
    if cached != seconds {
        let date = time::OffsetDateTime::from_unix_timestamp(i64::try_from(seconds).ok()?).ok()?;
        let fields = [
            (u32::try_from(date.year()).ok()?, 0, 4),
            (u32::from(u8::from(date.month())), 5, 2),
            (u32::from(date.day()), 8, 2),
            (u32::from(date.hour()), 11, 2),
            (u32::from(date.minute()), 14, 2),
            (u32::from(date.second()), 17, 2),
        ];
        prefix = *b"0000-00-00T00:00:00";
        for (value, at, width) in fields {
            write_digits(&mut prefix[at..at + width], value);
        }
        LAST_SECOND.set((seconds, prefix));
    }
    out[..19].copy_from_slice(&prefix);
    let mut len = 19;
    let mut nanos = since_epoch.subsec_nanos();
    if nanos != 0 {
        let mut digits = 9;
        while nanos.is_multiple_of(10) {
            nanos /= 10;
            digits -= 1;
        }
        out[len] = b'.';
        write_digits(&mut out[len + 1..len + 1 + digits], nanos);
        len += 1 + digits;
    }
    out[len] = b'Z';
    Some(len + 1)
}

/// `value` in decimal, zero-padded to fill `out`.
fn write_digits(out: &mut [u8], mut value: u32) {
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// An IPv4 address written digit by digit rather than through `Display` (whose formatting
/// machinery took 4 % of the audit thread); IPv6 goes through `Display` as before.
pub(super) fn ip_text<S: Serializer>(
    ip: &Option<IpAddr>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match ip {
        Some(IpAddr::V4(v4)) => {
            let mut text = [0u8; 15];
            let text = std::str::from_utf8(ipv4_text(*v4, &mut text))
                .map_err(serde::ser::Error::custom)?;
            serializer.serialize_str(text)
        }
        Some(ip) => serializer.collect_str(ip),
        None => serializer.serialize_none(),
    }
}

impl AuditEvent {
    /// Writes `{"type":"request",...}`: the bytes serde_json writes for
    /// `AuditEntry::Request(self)`, written directly. Through serde this took a third of the
    /// audit thread (a call per member, every string escaped byte by byte); here a string that
    /// needs no escape is copied whole. Returns `false`, having written nothing, when the time
    /// is outside what [`format_rfc3339`] writes: serde then writes the record (or refuses it)
    /// as before. The property test `direct_json_matches_serde` holds the two to the same bytes.
    pub(crate) fn write_entry_json(&self, out: &mut Vec<u8>) -> bool {
        let mut time = [0u8; 64];
        let Some(time_len) = self
            .time
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|since| format_rfc3339(since, &mut time))
        else {
            return false;
        };
        out.extend_from_slice(b"{\"type\":\"request\"");
        plain_member(out, "time", &time[..time_len]);
        member(out, "request_id", &self.request_id);
        member(out, "method", &self.method);
        optional(out, "route", self.route.as_deref());
        member(out, "path", &self.path);
        number(out, "status", self.status);
        plain_member(out, "outcome", self.outcome.as_str().as_bytes());
        optional(out, "layer", self.layer.as_deref());
        optional(out, "reason", self.reason.as_deref());
        if let Some(principal) = &self.principal {
            out.extend_from_slice(b",\"principal\":{\"subject\":");
            json_str(out, &principal.subject);
            optional(out, "issuer", principal.issuer.as_deref());
            member(out, "method", principal.method);
            optional(out, "api_key_id", principal.api_key_id.as_deref());
            out.push(b'}');
        }
        optional(out, "attempted_user", self.attempted_user.as_deref());
        match self.client_ip {
            Some(IpAddr::V4(v4)) => plain_member(out, "client_ip", ipv4_text(v4, &mut [0u8; 15])),
            Some(IpAddr::V6(v6)) => {
                // Hex digits, colons and dots: nothing to escape, and no `String` to allocate.
                key(out, "client_ip");
                // Writing into a `Vec` cannot fail.
                let _ = write!(out, "\"{v6}\"");
            }
            None => {}
        }
        optional(out, "user_agent", self.user_agent.as_deref());
        number(out, "latency_us", self.latency_us);
        if self.redacted != 0 {
            number(out, "redacted", self.redacted);
        }
        out.push(b'}');
        true
    }
}

/// `,"name":`, the start of every member after the first.
fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

/// `,"name":"value"`, the value escaped as serde_json escapes it.
fn member(out: &mut Vec<u8>, name: &str, value: &str) {
    key(out, name);
    json_str(out, value);
}

/// `,"name":"value"` for a value written here that never needs an escape (a time, an outcome
/// name, an IPv4 address), so it is not scanned for one.
fn plain_member(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    key(out, name);
    out.push(b'"');
    out.extend_from_slice(value);
    out.push(b'"');
}

/// [`member`] when there is a value; nothing otherwise (serde's `skip_serializing_if`).
fn optional(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    if let Some(value) = value {
        member(out, name, value);
    }
}

/// `,"name":123`.
fn number(out: &mut Vec<u8>, name: &str, value: impl itoa::Integer) {
    key(out, name);
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// A JSON string as serde_json writes it: copied whole when no byte needs an escape (the usual
/// case), else through serde_json's escaping.
fn json_str(out: &mut Vec<u8>, text: &str) {
    // A branch-free pass the compiler vectorizes.
    let plain = text.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20 && b != b'"' && b != b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// `v4` in dotted decimal, written into `text`.
fn ipv4_text(v4: std::net::Ipv4Addr, text: &mut [u8; 15]) -> &[u8] {
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        let digits = match octet {
            0..=9 => 1,
            10..=99 => 2,
            _ => 3,
        };
        write_digits(&mut text[len..len + digits], u32::from(octet));
        len += digits;
    }
    &text[..len]
}
