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

mod json;
mod raw;
#[cfg(test)]
mod tests;

pub(crate) use json::rfc3339;
use json::{ip_text, is_zero};
pub(crate) use raw::{Ended, RawEvent};

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
