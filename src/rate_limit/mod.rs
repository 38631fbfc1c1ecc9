//! Rate limits: how often each caller may call. Covers OWASP API4 (unrestricted resource
//! consumption) and, with [`LockoutLayer`], credential stuffing and brute force (API2).
//!
//! A [`RateLimitLayer`] counts requests per [`KeyBy`] key against a [`Quota`] (rate + burst, GCRA
//! from `governor`). Stack several: a per-IP burst limit before authentication and a per-subject
//! sustained limit after it; put one on a single route with `route_layer` and a higher
//! [`cost`](RateLimitLayerBuilder::cost) for an expensive endpoint. Anonymous callers can get
//! their own quota.
//!
//! A refused request gets 429 problem+json with `Retry-After`. Every answer carries the limit's
//! state in the IETF httpapi draft's `RateLimit-Policy: "name";q=100;w=60` and
//! `RateLimit: "name";r=42;t=17` headers, or in the legacy `X-RateLimit-Limit`/`-Remaining`/
//! `-Reset` trio ([`RateLimitHeaders`]). The name is the limit's
//! [`name`](RateLimitLayerBuilder::name), by default what it counts by (`per-ip`, ...).
//!
//! The two times answer different questions: `Retry-After` is when the next request fits, `t`
//! when the whole burst is back. GCRA refills one unit per emission interval, so a refusal of a
//! limit of 2 per second with a burst of 3 says `Retry-After: 1` next to `t=2`. A 429 carries
//! only the refusing layer's timing: the lockout's or another limit's 429 gets no headers from
//! this limit.
//!
//! Memory is bounded: the in-memory key map is pruned of keys whose budget is full again and
//! capped ([`max_keys`](RateLimitLayerBuilder::max_keys)); past the cap, new keys share one
//! budget until room frees up. With the `redis` feature, [`RedisBackend`] keeps the counters in
//! Redis so that every replica enforces one shared quota.
//!
//! Clients are counted by [`ClientIp`](crate::ClientIp): put a
//! [`ClientIpLayer`](crate::ClientIpLayer) outside when you run behind proxies.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use portcullis::rate_limit::{KeyBy, Quota, RateLimitLayer};
//!
//! # fn main() -> Result<(), portcullis::ConfigError> {
//! let per_ip = RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_second(20).burst(40))
//!     .name("per-ip")
//!     .build()?;
//! let per_subject = RateLimitLayer::builder(KeyBy::Subject, Quota::per_minute(600).burst(50))
//!     .name("per-user")
//!     .anonymous(Quota::per_minute(60))
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/items", get(|| async { "[]" }))
//!     .layer(per_subject) // inside the AuthLayer: sees the subject
//!     // .layer(auth)
//!     .layer(per_ip); // outside: counts every request, signed in or not
//! # Ok(())
//! # }
//! ```

mod key;
mod layer;
mod local;
mod lockout;
mod quota;
#[cfg(feature = "redis")]
mod redis;
mod service;

use std::time::Duration;

pub use key::KeyBy;
pub use layer::{RateLimitLayer, RateLimitLayerBuilder};
#[allow(deprecated)]
pub use lockout::LockoutService;
pub use lockout::{Lockout, LockoutFuture, LockoutLayer, LockoutLayerBuilder};
pub use quota::Quota;
#[cfg(feature = "redis")]
pub use redis::{RedisBackend, RedisFailure};
pub use service::{RateLimit, ResponseFuture};

/// Which headers describe the limit on every answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RateLimitHeaders {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    #[default]
    Draft,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (seconds).
    Legacy,
    /// No headers (429 still carries `Retry-After`).
    None,
}

/// One decision of a backend.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LimitCheck {
    pub(crate) allowed: bool,
    /// Whether the numbers below are known (not when a failed shared backend was skipped).
    pub(crate) known: bool,
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    /// Until the budget is full again.
    pub(crate) reset: Duration,
    /// Until a refused request could pass.
    pub(crate) retry_after: Duration,
}
