//! Security alerts: patterns across requests that one event alone does not show.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use super::event::{AuditEvent, Outcome};

/// What an alert is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertKind {
    /// Many failed authentications from one client address (credential stuffing, token
    /// guessing).
    AuthFailuresFromIp,
    /// Many failed logins for one user name, from anywhere (password spraying at one account).
    AuthFailuresForUser,
    /// Many 403s for one authenticated subject (probing for what it may reach: enumeration).
    ForbiddenSpike,
    /// A client was locked out by the brute-force lockout.
    Lockout,
}

impl AlertKind {
    /// The name used in records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthFailuresFromIp => "auth_failures_from_ip",
            Self::AuthFailuresForUser => "auth_failures_for_user",
            Self::ForbiddenSpike => "forbidden_spike",
            Self::Lockout => "lockout",
        }
    }
}

/// A pattern worth a human's attention, raised once per key and window.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct SecurityAlert {
    /// What was seen.
    pub alert: AlertKind,
    /// Whom it is about: the client address, the user-name fingerprint, or the principal as a
    /// JSON array `[method, issuer, subject]`.
    pub key: String,
    /// How many matching requests were seen in the window when the alert was raised.
    pub count: u32,
    /// The window, in seconds.
    pub window_secs: u64,
    /// The request that crossed the threshold.
    pub request_id: String,
    /// When it was raised.
    #[serde(serialize_with = "super::event::rfc3339")]
    pub time: SystemTime,
}

/// "`count` matching requests within `window`" (fixed windows, starting at the first match).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Threshold {
    count: u32,
    window: Duration,
}

impl Threshold {
    /// `count` requests within `window`; a count of 0 is taken as 1 and a window under a second
    /// as one second.
    pub fn new(count: u32, window: Duration) -> Self {
        Self {
            count: count.max(1),
            window: window.max(Duration::from_secs(1)),
        }
    }
}

/// Which patterns raise a [`SecurityAlert`], and how much memory tracking them may take.
///
/// Defaults: 10 failed authentications per client address or 5 per user name within a minute,
/// 20 refusals (403) for one subject within a minute, and every lockout. Each rule can be
/// changed or turned off (`None`).
#[derive(Clone, Debug)]
pub struct AlertRules {
    auth_failures_per_ip: Option<Threshold>,
    auth_failures_per_user: Option<Threshold>,
    forbidden_per_subject: Option<Threshold>,
    lockouts: Option<Threshold>,
    max_tracked: usize,
}

impl Default for AlertRules {
    fn default() -> Self {
        let minute = Duration::from_secs(60);
        Self {
            auth_failures_per_ip: Some(Threshold::new(10, minute)),
            auth_failures_per_user: Some(Threshold::new(5, minute)),
            forbidden_per_subject: Some(Threshold::new(20, minute)),
            lockouts: Some(Threshold::new(1, minute)),
            max_tracked: 10_000,
        }
    }
}

impl AlertRules {
    /// No alerts at all.
    pub fn none() -> Self {
        Self {
            auth_failures_per_ip: None,
            auth_failures_per_user: None,
            forbidden_per_subject: None,
            lockouts: None,
            max_tracked: 10_000,
        }
    }

    /// Failed authentications (401, and 400s from the auth layer) from one client address.
    pub fn auth_failures_per_ip(mut self, threshold: Option<Threshold>) -> Self {
        self.auth_failures_per_ip = threshold;
        self
    }

    /// Failed Basic logins for one user name.
    pub fn auth_failures_per_user(mut self, threshold: Option<Threshold>) -> Self {
        self.auth_failures_per_user = threshold;
        self
    }

    /// 403s for one authenticated subject.
    pub fn forbidden_per_subject(mut self, threshold: Option<Threshold>) -> Self {
        self.forbidden_per_subject = threshold;
        self
    }

    /// Requests refused by the brute-force lockout, per client address.
    pub fn lockouts(mut self, threshold: Option<Threshold>) -> Self {
        self.lockouts = threshold;
        self
    }

    /// How many keys each rule tracks at once (default 10 000, at least 16). When a rule's table
    /// is full, expired windows are dropped (at most once a second); if none has expired, new
    /// keys are not tracked until one does. Memory stays bounded whatever clients send, and one
    /// rule flooded with fresh keys (addresses, user names) does not blind the others. IPv6
    /// clients are counted per /64, as the rate limiter does.
    pub fn max_tracked(mut self, max: usize) -> Self {
        self.max_tracked = max.max(16);
        self
    }
}

struct Window {
    start: Instant,
    count: u32,
    raised: bool,
}

/// One rule's windows.
#[derive(Default)]
struct Table {
    windows: HashMap<String, Window>,
    last_sweep: Option<Instant>,
}

/// Counts matching events per key in fixed windows; runs on the audit thread.
pub(crate) struct Detector {
    rules: AlertRules,
    tables: [Table; 4],
}

impl Detector {
    pub(crate) fn new(rules: AlertRules) -> Self {
        Self {
            rules,
            tables: Default::default(),
        }
    }

    /// The alerts `event` raises, seen at `now`.
    pub(crate) fn observe(&mut self, event: &AuditEvent, now: Instant) -> Vec<SecurityAlert> {
        let mut alerts = Vec::new();
        // A credential was presented and refused (not a request that simply carried none).
        let auth_failure = event.layer.as_deref() == Some("auth")
            && matches!(event.outcome, Outcome::Unauthenticated | Outcome::Invalid)
            && event.reason.as_deref() != Some(crate::error::Reason::MissingCredentials.as_str());
        // Per address, only what the lockout counts as guessing: an expired token or an
        // identity provider that is down must not raise alerts for every office behind one
        // address. (Per user name, every refused Basic attempt counts: no provider is involved.)
        let guess = auth_failure
            && event
                .reason
                .as_deref()
                .is_some_and(crate::error::is_guessing_name);
        let locked = event.layer.as_deref() == Some("lockout");
        // Formatted only for the events a rule counts: most requests raise nothing.
        let client = || event.client_ip.map(group);
        let checks = [
            (
                AlertKind::AuthFailuresFromIp,
                self.rules.auth_failures_per_ip,
                guess.then(client).flatten(),
            ),
            (
                AlertKind::AuthFailuresForUser,
                self.rules.auth_failures_per_user,
                auth_failure.then(|| event.attempted_user.clone()).flatten(),
            ),
            (
                AlertKind::ForbiddenSpike,
                self.rules.forbidden_per_subject,
                // The whole principal: `alice` of two issuers, or a Basic user and a token
                // subject of the same name, are different callers.
                (event.outcome == Outcome::Forbidden)
                    .then(|| {
                        event
                            .principal
                            .as_ref()
                            .map(|p| serde_json::json!([p.method, p.issuer, p.subject]).to_string())
                    })
                    .flatten(),
            ),
            (
                AlertKind::Lockout,
                self.rules.lockouts,
                locked.then(client).flatten(),
            ),
        ];
        for (i, (kind, threshold, key)) in checks.into_iter().enumerate() {
            if let (Some(threshold), Some(key)) = (threshold, key)
                && let Some(count) = self.count(i, key.clone(), threshold, now)
            {
                alerts.push(SecurityAlert {
                    alert: kind,
                    key,
                    count,
                    window_secs: threshold.window.as_secs(),
                    request_id: event.request_id.clone(),
                    time: SystemTime::now(),
                });
            }
        }
        alerts
    }

    /// Counts one more for `key` in rule `rule`; the count when this crosses the threshold for
    /// the first time in the window.
    fn count(
        &mut self,
        rule: usize,
        key: String,
        threshold: Threshold,
        now: Instant,
    ) -> Option<u32> {
        let max = self.rules.max_tracked;
        let table = &mut self.tables[rule];
        if !table.windows.contains_key(&key) && table.windows.len() >= max {
            let swept_lately = table
                .last_sweep
                .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1));
            if !swept_lately {
                table.last_sweep = Some(now);
                table
                    .windows
                    .retain(|_, w| now.duration_since(w.start) < threshold.window);
            }
            if table.windows.len() >= max {
                return None;
            }
        }
        let window = table.windows.entry(key).or_insert(Window {
            start: now,
            count: 0,
            raised: false,
        });
        if now.duration_since(window.start) >= threshold.window {
            *window = Window {
                start: now,
                count: 0,
                raised: false,
            };
        }
        window.count = window.count.saturating_add(1);
        if window.count >= threshold.count && !window.raised {
            window.raised = true;
            return Some(window.count);
        }
        None
    }
}

/// An IPv4 address as is, an IPv6 address as its /64 (one subscriber's usual allocation), the
/// grouping the rate limiter uses.
fn group(ip: std::net::IpAddr) -> String {
    match crate::request::forwarded::group(ip, 64) {
        ip @ std::net::IpAddr::V4(_) => ip.to_string(),
        ip @ std::net::IpAddr::V6(_) => format!("{ip}/64"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_per_64() {
        assert_eq!(group("2001:db8::1".parse().unwrap()), "2001:db8::/64");
        assert_eq!(group("2001:db8::ffff:1".parse().unwrap()), "2001:db8::/64");
        assert_eq!(group("192.0.2.7".parse().unwrap()), "192.0.2.7");
    }
}
