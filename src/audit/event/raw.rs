//! What the audit layer collects while a request runs, and how it becomes an event.

use super::*;

/// What the request path hands to the audit thread. Free text is copied, cut to a bounded
/// length, so a queued event never holds on to a request's header buffer (or a password); the
/// rest are reference-counted clones. Scrubbing and formatting happen on the audit thread.
///
/// Events live in boxes the audit thread hands back once it has used them (see
/// [`EventPool`](crate::audit::pipeline::EventPool)): the text buffers keep their capacity, so the
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
        if let Some(user) = crate::request::credential::basic_user_name(headers, extensions) {
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

/// [`cut`], in place.
fn truncated(mut text: String, max: usize) -> String {
    let len = cut(&text, max).len();
    text.truncate(len);
    text
}

/// `text` cut to at most `max` bytes, on a character boundary.
pub(super) fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
