//! The audit event, and how a finished request is classified into one.

use std::borrow::Cow;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::MatchedPath;
use http::{Method, StatusCode};
use serde::{Serialize, Serializer};

use super::RequestId;
use crate::decision::{Decision, LayerKind};
use crate::error::{Reason, RejectionKind};
use crate::identity::Identity;

/// Longest path kept in an event, in bytes; the rest is cut (a path is attacker-controlled).
const MAX_PATH: usize = 1024;
/// Longest `User-Agent` kept in an event, in bytes.
const MAX_USER_AGENT: usize = 256;
/// Longest method name kept (extension methods are arbitrary tokens).
const MAX_METHOD: usize = 32;
/// How much of the path and `User-Agent` is scrubbed before the cut: more than is kept, so a
/// secret across the cut is still found whole.
const SCRUB_WINDOW: usize = 4096;

/// How a request ended, from a security point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Outcome {
    /// Every layer let it through and the handler answered with a 1xx, 2xx or 3xx.
    Allowed,
    /// Refused for missing or bad credentials (401), or a credential that could not be read.
    Unauthenticated,
    /// Authenticated but not allowed (403).
    Forbidden,
    /// Refused by a rate limit or a brute-force lockout (429).
    RateLimited,
    /// Refused as malformed, too large, of the wrong type or for the wrong route (other 4xx).
    Invalid,
    /// The server failed (5xx, or the handler panicked).
    Error,
    /// The client went away before the answer (recorded with status 499).
    Cancelled,
}

impl Outcome {
    /// The name used in events and metrics: `allowed`, `unauthenticated`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::Invalid => "invalid",
            Self::Error => "error",
            Self::Cancelled => "cancelled",
        }
    }

    fn of_rejection(kind: RejectionKind) -> Self {
        match kind {
            RejectionKind::MissingCredentials
            | RejectionKind::InvalidToken
            | RejectionKind::InvalidCredentials
            | RejectionKind::InsufficientUserAuthentication => Self::Unauthenticated,
            RejectionKind::InsufficientScope | RejectionKind::Forbidden => Self::Forbidden,
            RejectionKind::TooManyRequests => Self::RateLimited,
            RejectionKind::ResponseWithheld | RejectionKind::Internal => Self::Error,
            _ => Self::Invalid,
        }
    }
}

/// The authenticated caller, as far as an audit trail needs it: never a token or a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Principal {
    /// The subject (`sub` claim, API key owner, Basic user).
    pub subject: String,
    /// The token issuer, for tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// How the caller authenticated: `jwt`, `api_key`, `basic`, ...
    pub method: &'static str,
    /// The id of the API key used (never the key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<String>,
}

/// One request, as the audit trail records it.
///
/// Built on the audit thread from what the layers left in the request and response extensions;
/// the path and `User-Agent` are cut to a bounded length and scrubbed with the redaction
/// detectors before anything sees them.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct AuditEvent {
    /// When the request arrived.
    #[serde(serialize_with = "rfc3339")]
    pub time: SystemTime,
    /// The request id: the caller's `X-Request-Id` when acceptable, else a generated one.
    pub request_id: String,
    /// The request method.
    pub method: String,
    /// The matched route template (`/items/{id}`), when the router matched one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The request path, without the query string (which often carries secrets), scrubbed.
    pub path: String,
    /// The response status (499 when the request was abandoned before an answer).
    pub status: u16,
    /// How the request ended.
    pub outcome: Outcome,
    /// The layer that decided: `auth`, `rbac`, `rate_limit`, `lockout`, `validate`, `handler`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<Cow<'static, str>>,
    /// That layer's machine-readable reason (`expired`, `missing_scope`, `rate_limited`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Cow<'static, str>>,
    /// The authenticated caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    /// For a refused Basic login, a keyed fingerprint of the user name tried (`hmac:...`): it
    /// correlates attempts without writing what may be a mistyped password to the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempted_user: Option<String>,
    /// The client address ([`ClientIp`](crate::ClientIp) when a `ClientIpLayer` ran, else the
    /// socket peer when known).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "ip_text")]
    pub client_ip: Option<IpAddr>,
    /// The `User-Agent`, cut and scrubbed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Time from the request reaching the audit layer to the response head leaving it.
    pub latency_us: u64,
    /// How many values the redaction layer masked in the response.
    #[serde(skip_serializing_if = "is_zero")]
    pub redacted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub(super) fn rfc3339<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
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
fn ip_text<S: Serializer>(ip: &Option<IpAddr>, serializer: S) -> Result<S::Ok, S::Error> {
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
    pub(super) fn write_entry_json(&self, out: &mut Vec<u8>) -> bool {
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

/// What the request path hands to the audit thread. Free text is copied, cut to a bounded
/// length, so a queued event never holds on to a request's header buffer (or a password); the
/// rest are reference-counted clones. Scrubbing and formatting happen on the audit thread.
///
/// Events live in boxes the audit thread hands back once it has used them (see
/// [`EventPool`](super::pipeline::EventPool)): the text buffers keep their capacity, so the
/// request path copies into memory it already has instead of allocating, and nothing it
/// allocated is freed on the audit thread (a free from another thread takes the allocator lock
/// the request path needs too).
pub(crate) struct RawEvent {
    pub(crate) time: SystemTime,
    pub(crate) latency_us: u64,
    pub(crate) request_id: String,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) route: Option<MatchedPath>,
    /// `None` when the request had no `User-Agent`; the buffer is kept either way.
    pub(crate) user_agent: String,
    pub(crate) has_user_agent: bool,
    /// Empty unless `has_attempted_user`; the buffer is kept either way.
    pub(crate) attempted_user: String,
    pub(crate) has_attempted_user: bool,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) identity: Option<Identity>,
    pub(crate) status: StatusCode,
    pub(crate) rejection: Option<(RejectionKind, Reason)>,
    pub(crate) decision: Option<Decision>,
    pub(crate) redacted: u64,
    pub(crate) ended: Ended,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// With a response (or an error, recorded as a 500).
    Answered,
    /// Dropped before answering: the client went away.
    Cancelled,
    /// Dropped while unwinding from a panic.
    Panicked,
}

/// Text buffers above this capacity are given back to the allocator when an event is recycled,
/// so one long path does not pin its memory in the pool.
const KEEP_CAPACITY: usize = 512;

impl RawEvent {
    pub(crate) fn empty() -> Self {
        Self {
            time: SystemTime::UNIX_EPOCH,
            latency_us: 0,
            request_id: String::new(),
            method: Method::GET,
            path: String::new(),
            route: None,
            user_agent: String::new(),
            has_user_agent: false,
            attempted_user: String::new(),
            has_attempted_user: false,
            client_ip: None,
            identity: None,
            status: StatusCode::OK,
            rejection: None,
            decision: None,
            redacted: 0,
            ended: Ended::Cancelled,
        }
    }

    /// Copies what the event needs from a request, bounded, into this (recycled) event.
    pub(crate) fn capture(
        &mut self,
        request_id: &RequestId,
        parts: (&Method, &http::Uri, &http::HeaderMap, &http::Extensions),
        client_ip: Option<IpAddr>,
    ) {
        let (method, uri, headers, extensions) = parts;
        self.time = SystemTime::now();
        self.latency_us = 0;
        self.request_id.clear();
        self.request_id.push_str(request_id.as_str());
        self.method = method.clone();
        self.path.clear();
        self.path.push_str(cut(uri.path(), SCRUB_WINDOW));
        self.route = extensions.get::<MatchedPath>().cloned();
        self.user_agent.clear();
        self.has_user_agent = false;
        if let Some(ua) = headers.get(http::header::USER_AGENT) {
            // Cut the bytes first: a huge header of invalid UTF-8 is never copied whole.
            let bytes = ua.as_bytes();
            let bytes = &bytes[..bytes.len().min(SCRUB_WINDOW)];
            self.user_agent.push_str(&String::from_utf8_lossy(bytes));
            self.has_user_agent = true;
        }
        // Only a Basic credential names a user worth correlating: keep the name, never the
        // password.
        self.attempted_user.clear();
        self.has_attempted_user = false;
        if let Some(user) = crate::request::credential::basic_user_name(headers) {
            self.attempted_user.push_str(cut(&user, MAX_USER_AGENT));
            self.has_attempted_user = true;
        }
        self.client_ip = client_ip;
        self.identity = extensions.get::<Identity>().cloned();
        self.status = StatusCode::OK;
        self.rejection = None;
        self.decision = None;
        self.redacted = 0;
        self.ended = Ended::Cancelled;
    }

    /// Lets go of what the event shares with requests, keeping its text buffers for the next.
    pub(crate) fn recycle(&mut self) {
        // An extension method of any length is its own allocation: do not keep it in the pool.
        self.method = Method::GET;
        self.route = None;
        self.identity = None;
        self.decision = None;
        for text in [
            &mut self.request_id,
            &mut self.path,
            &mut self.user_agent,
            &mut self.attempted_user,
        ] {
            text.clear();
            if text.capacity() > KEEP_CAPACITY {
                *text = String::new();
            }
        }
    }

    pub(crate) fn classify(
        &self,
    ) -> (
        Outcome,
        Option<Cow<'static, str>>,
        Option<Cow<'static, str>>,
    ) {
        match self.ended {
            Ended::Answered => {}
            Ended::Cancelled => {
                return (
                    Outcome::Cancelled,
                    Some("client".into()),
                    Some("cancelled".into()),
                );
            }
            Ended::Panicked => {
                return (
                    Outcome::Error,
                    Some("handler".into()),
                    Some("panicked".into()),
                );
            }
        }
        let denied_by = self.decision.as_ref().filter(|d| !d.allowed);
        if let Some((kind, rejection_reason)) = self.rejection {
            let layer = denied_by.map_or(Cow::Borrowed("handler"), |d| {
                Cow::Borrowed(d.layer.as_str())
            });
            return (
                Outcome::of_rejection(kind),
                Some(layer),
                Some(Cow::Borrowed(rejection_reason.as_str())),
            );
        }
        let layer = self
            .decision
            .as_ref()
            .map(|d| Cow::Borrowed(d.layer.as_str()));
        let reason = self
            .decision
            .as_ref()
            .map(|d| Cow::Borrowed(d.reason.as_str()));
        if let Some(d) = denied_by
            && !(self.status.is_client_error() || self.status.is_server_error())
        {
            // Refused, but answered with another status (a redirect to HTTPS, a renderer that
            // turns refusals into 200s): the deciding layer says what kind of refusal it was.
            let outcome = match d.layer {
                LayerKind::Auth => Outcome::Unauthenticated,
                LayerKind::Rbac => Outcome::Forbidden,
                LayerKind::RateLimit | LayerKind::Lockout => Outcome::RateLimited,
                LayerKind::Validate
                | LayerKind::Redact
                | LayerKind::Transport
                | LayerKind::ClientIp => Outcome::Invalid,
            };
            return (outcome, layer, reason);
        }
        if self.status.is_client_error() || self.status.is_server_error() {
            // Refused without a `Rejection`: by the handler (a bare 403 from an object-level
            // check, axum's own 404/405/422) or by a layer whose rejection was re-rendered.
            let (layer, reason) = match denied_by {
                Some(d) => (
                    Some(Cow::Borrowed(d.layer.as_str())),
                    Some(Cow::Borrowed(d.reason.as_str())),
                ),
                None => (Some(Cow::Borrowed("handler")), None),
            };
            return (Outcome::of_status(self.status), layer, reason);
        }
        (Outcome::Allowed, layer, reason)
    }

    /// Builds the event; `scrub` masks detected secrets in free text.
    pub(crate) fn to_event(
        &self,
        scrub: impl Fn(&str) -> String,
        fingerprint: impl Fn(&[u8]) -> String,
    ) -> AuditEvent {
        let (outcome, layer, reason) = self.classify();
        let principal = self.identity.as_ref().map(|identity| Principal {
            subject: identity.subject().to_owned(),
            issuer: identity.issuer().map(str::to_owned),
            method: identity.method().as_str(),
            api_key_id: identity.api_key_id().map(str::to_owned),
        });
        let attempted_user = match outcome {
            Outcome::Unauthenticated | Outcome::RateLimited if self.has_attempted_user => {
                Some(fingerprint(self.attempted_user.as_bytes()))
            }
            _ => None,
        };
        // Scrub a window wider than what is kept, so a secret that straddles the cut is still
        // seen whole. The path is kept as sent (`%2F` and `/` stay apart, attack bytes stay
        // visible) unless its percent-decoded form holds a secret (`alice%40example.com`):
        // then the decoded, scrubbed form is kept.
        let path = {
            let raw = scrub(&self.path);
            if self.path.contains('%') {
                let decoded = percent_encoding::percent_decode_str(&self.path).decode_utf8_lossy();
                let scrubbed = scrub(&decoded);
                if scrubbed != decoded { scrubbed } else { raw }
            } else {
                raw
            }
        };
        AuditEvent {
            time: self.time,
            request_id: self.request_id.clone(),
            method: cut(self.method.as_str(), MAX_METHOD).to_owned(),
            route: self.route.as_ref().map(|r| r.as_str().to_owned()),
            path: truncated(path, MAX_PATH),
            status: self.status.as_u16(),
            outcome,
            layer,
            reason,
            principal,
            attempted_user,
            client_ip: self.client_ip,
            user_agent: self
                .has_user_agent
                .then(|| truncated(scrub(&self.user_agent), MAX_USER_AGENT)),
            latency_us: self.latency_us,
            redacted: self.redacted,
        }
    }
}

impl Outcome {
    fn of_status(status: StatusCode) -> Self {
        match status.as_u16() {
            401 => Self::Unauthenticated,
            403 => Self::Forbidden,
            429 => Self::RateLimited,
            400..=499 => Self::Invalid,
            500.. => Self::Error,
            _ => Self::Allowed,
        }
    }
}

/// [`cut`], in place.
fn truncated(mut text: String, max: usize) -> String {
    let len = cut(&text, max).len();
    text.truncate(len);
    text
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_respects_char_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("abc", 10), "abc");
    }

    /// What `time`'s formatter writes, which the hand-written one must match byte for byte.
    fn reference(time: SystemTime) -> String {
        time::OffsetDateTime::from(time)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    }

    fn serialized<T: Serialize>(value: T) -> String {
        serde_json::to_string(&value).unwrap()
    }

    #[derive(Serialize)]
    struct Stamp(#[serde(serialize_with = "rfc3339")] SystemTime);

    #[derive(Serialize)]
    struct Address(#[serde(serialize_with = "ip_text")] Option<IpAddr>);

    #[test]
    fn timestamps_match_the_general_formatter_at_the_edges() {
        let at = |secs: u64, nanos: u32| UNIX_EPOCH + Duration::new(secs, nanos);
        let edges = [
            at(0, 0),
            at(0, 1),
            at(1_795_579_673, 578_659_464),
            at(1_795_579_673, 500_000_000),
            at(1_795_579_673, 999_999_999),
            at(951_782_400, 10), // 2000-02-29
            at(253_402_300_799, 999_999_990),
        ];
        for time in edges {
            assert_eq!(serialized(Stamp(time)), format!("\"{}\"", reference(time)));
        }
        // Past year 9999: an error for this record, not a panic.
        assert!(serde_json::to_string(&Stamp(at(253_402_300_800, 0))).is_err());
        assert!(serde_json::to_string(&Stamp(at(u64::MAX / 2, 0))).is_err());
        // Before 1970 the general formatter writes it.
        let before = UNIX_EPOCH - Duration::new(86_400, 500_000_000);
        assert_eq!(serialized(Stamp(before)), "\"1969-12-30T23:59:59.5Z\"");
    }

    proptest::proptest! {
        #[test]
        fn timestamps_match_the_general_formatter(
            secs in 0u64..=253_402_300_799,
            nanos in 0u32..1_000_000_000,
            zeros in 0u32..9,
        ) {
            // Trailing zeros in the fraction are what the formatter trims: make them common.
            let nanos = nanos / 10u32.pow(zeros) * 10u32.pow(zeros);
            let time = UNIX_EPOCH + Duration::new(secs, nanos);
            // Twice: the second hits the cached second.
            for _ in 0..2 {
                proptest::prop_assert_eq!(
                    serialized(Stamp(time)),
                    format!("\"{}\"", reference(time))
                );
            }
        }

        #[test]
        fn addresses_match_display(bits in proptest::prelude::any::<u32>(), v6 in proptest::prelude::any::<u128>()) {
            for ip in [
                IpAddr::from(std::net::Ipv4Addr::from(bits)),
                IpAddr::from(std::net::Ipv6Addr::from(v6)),
            ] {
                proptest::prop_assert_eq!(serialized(Address(Some(ip))), format!("\"{ip}\""));
            }
        }
    }

    /// Text of every kind a request can bring: plain, quotes and backslashes, control bytes,
    /// DEL, non-ASCII and astral characters.
    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy;
        proptest::prop_oneof![
            "[a-zA-Z0-9/._~-]{0,40}",
            proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::char::range('\0', '\u{7f}'),
                    proptest::char::any(),
                    proptest::sample::select(vec!['"', '\\', '\u{1f}', '\u{7f}', 'é', '😀']),
                ],
                0..24,
            )
            .prop_map(|chars| chars.into_iter().collect()),
        ]
    }

    fn event() -> impl proptest::strategy::Strategy<Value = AuditEvent> {
        use proptest::option::of;
        use proptest::prelude::*;
        let principal = (text(), of(text()), of(text()), 0..4usize).prop_map(
            |(subject, issuer, api_key_id, method)| Principal {
                subject,
                issuer,
                method: ["jwt", "api_key", "basic", "introspection"][method],
                api_key_id,
            },
        );
        let ip = prop_oneof![
            any::<u32>().prop_map(|b| IpAddr::from(std::net::Ipv4Addr::from(b))),
            any::<u128>().prop_map(|b| IpAddr::from(std::net::Ipv6Addr::from(b))),
        ];
        let outcome = proptest::sample::select(OUTCOMES.to_vec());
        (
            (
                0u64..=253_402_300_799,
                0u32..1_000_000_000,
                text(),
                text(),
                of(text()),
                text(),
            ),
            (
                any::<u16>(),
                outcome,
                of(text()),
                of(text()),
                of(principal),
                of(text()),
            ),
            (
                of(ip),
                of(text()),
                any::<u64>(),
                prop_oneof![Just(0u64), any::<u64>()],
            ),
        )
            .prop_map(
                |(
                    (secs, nanos, request_id, method, route, path),
                    (status, outcome, layer, reason, principal, attempted_user),
                    (client_ip, user_agent, latency_us, redacted),
                )| AuditEvent {
                    time: UNIX_EPOCH + Duration::new(secs, nanos),
                    request_id,
                    method,
                    route,
                    path,
                    status,
                    outcome,
                    layer: layer.map(Cow::Owned),
                    reason: reason.map(Cow::Owned),
                    principal,
                    attempted_user,
                    client_ip,
                    user_agent,
                    latency_us,
                    redacted,
                },
            )
    }

    proptest::proptest! {
        #[test]
        fn direct_json_matches_serde(event in event()) {
            let mut direct = Vec::new();
            proptest::prop_assert!(event.write_entry_json(&mut direct));
            let entry = crate::audit::AuditEntry::Request(event);
            let through_serde = serde_json::to_vec(&entry)
                .map_err(|error| proptest::test_runner::TestCaseError::fail(error.to_string()))?;
            proptest::prop_assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&through_serde)
            );
            proptest::prop_assert_eq!(direct, through_serde);
        }
    }

    /// Every outcome. The direct writer names them with `as_str`, serde with `rename_all`: a new
    /// variant must be added here.
    const OUTCOMES: [Outcome; 7] = [
        Outcome::Allowed,
        Outcome::Unauthenticated,
        Outcome::Forbidden,
        Outcome::RateLimited,
        Outcome::Invalid,
        Outcome::Error,
        Outcome::Cancelled,
    ];

    #[test]
    fn outcome_names_match_serde() {
        for outcome in OUTCOMES {
            assert_eq!(serialized(outcome), format!("\"{}\"", outcome.as_str()));
        }
    }

    #[test]
    fn direct_json_leaves_times_out_of_range_to_serde() {
        let mut event = AuditEvent {
            time: UNIX_EPOCH + Duration::new(253_402_300_800, 0),
            request_id: "id".into(),
            method: "GET".into(),
            route: None,
            path: "/".into(),
            status: 200,
            outcome: Outcome::Allowed,
            layer: None,
            reason: None,
            principal: None,
            attempted_user: None,
            client_ip: None,
            user_agent: None,
            latency_us: 1,
            redacted: 0,
        };
        let mut out = Vec::new();
        assert!(!event.write_entry_json(&mut out));
        assert!(
            out.is_empty(),
            "nothing is written when serde has to decide"
        );
        event.time = UNIX_EPOCH - Duration::from_secs(1);
        assert!(!event.write_entry_json(&mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn small_and_large_octets_are_written_in_full() {
        for ip in ["0.0.0.0", "255.255.255.255", "10.0.99.100", "1.22.203.9"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(serialized(Address(Some(ip))), format!("\"{ip}\""));
        }
        assert_eq!(serialized(Address(None)), "null");
    }
}
