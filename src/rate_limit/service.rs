use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::header::RETRY_AFTER;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Response};

use super::layer::{Limit, RateLimitConfig, RateLimitLayer};
use super::{LimitCheck, RateLimitHeaders};
use crate::decision::LayerKind;
use crate::error::Reason;
use crate::error::{Rejection, RejectionKind};
use crate::guard::{self, Check, Denial, Verdict};
use crate::identity::Identity;

/// The service built by [`RateLimitLayer`].
pub type RateLimit<S> = guard::Guard<S, RateLimitLayer>;

/// Response future of [`RateLimit`].
pub type ResponseFuture<S, B> = guard::ResponseFuture<S, RateLimitLayer, B>;

/// A shared-backend check in flight, and which limit it checks.
pub(super) type BoxCheck = Pin<Box<dyn Future<Output = (LimitCheck, Which)> + Send>>;

impl Check for RateLimitLayer {
    const LAYER: LayerKind = LayerKind::RateLimit;
    const SERVICE: &'static str = "RateLimit";
    /// The limit's state, for the answer's headers.
    type Admit = Option<HeaderPlan>;
    type Ready = (LimitCheck, Which);
    type Pending = BoxCheck;

    fn check<B>(&self, parts: &mut Parts, _: &B) -> Verdict<Self::Admit, Self::Pending> {
        let config = &*self.config;
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
        let (limit, which) = match &config.anonymous {
            Some(limit) if parts.extensions.get::<Identity>().is_none() => {
                (limit, Which::Anonymous)
            }
            _ => (&config.authenticated, Which::Authenticated),
        };
        let material = config.key_by.material(parts, config.v6_prefix);
        let fingerprint = config.fingerprint(&material);
        #[cfg(feature = "redis")]
        if let Some(redis) = &config.redis {
            // Spent from this replica's batch, if it holds one: decided like a local check.
            if let Some(outcome) = redis.take_granted(
                &|| material.text(),
                &limit.shared_name,
                limit.quota,
                config.cost,
                fingerprint,
            ) {
                return decide(config, limit, outcome).into();
            }
            let future = redis.check(
                material.text(),
                limit.shared_name.clone(),
                limit.quota,
                config.cost,
                limit.local.clone(),
                fingerprint,
            );
            return Verdict::Defer(Box::pin(async move { (future.await, which) }));
        }
        let outcome = limit.local.check(fingerprint, config.cost);
        decide(config, limit, outcome).into()
    }

    fn resume<B>(
        &self,
        _: &mut Parts,
        _: &B,
        (outcome, which): Self::Ready,
    ) -> Verdict<Self::Admit, Self::Pending> {
        let config = &*self.config;
        decide(config, limit_of(config, which), outcome).into()
    }

    /// A 429 from further in (the lockout, another limit, the handler) keeps its own timing
    /// alone: this limit's headers next to its `Retry-After` would contradict it.
    fn finish<B>(plan: Self::Admit, response: &mut Response<B>) {
        if let Some(plan) = plan
            && response.status() != http::StatusCode::TOO_MANY_REQUESTS
        {
            plan.write(response.headers_mut());
        }
    }
}

/// Which of the two limits applied, so the deferred (Redis) path can find it again.
#[derive(Clone, Copy)]
pub(crate) enum Which {
    Authenticated,
    Anonymous,
}

fn limit_of(config: &RateLimitConfig, which: Which) -> &Limit {
    match (which, &config.anonymous) {
        (Which::Anonymous, Some(limit)) => limit,
        _ => &config.authenticated,
    }
}

/// Lets the request through with its header plan, or refuses it with 429, per `outcome`.
fn decide(
    config: &RateLimitConfig,
    limit: &Limit,
    outcome: LimitCheck,
) -> Result<Option<HeaderPlan>, Denial> {
    let plan = HeaderPlan::new(config, limit, &outcome);
    if outcome.allowed {
        // Only refusals leave a `Decision`: "within quota" on every request would cost an
        // allocation each time and tell the audit log nothing.
        return Ok(plan);
    }
    let retry_after = outcome.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut rejection = Rejection::new(RejectionKind::TooManyRequests)
        .with_reason(Reason::RateLimited)
        .with_detail("Too many requests; retry after the time in Retry-After.")
        .with_header(RETRY_AFTER, HeaderValue::from(retry_after));
    if let Some(plan) = plan {
        let mut headers = HeaderMap::new();
        plan.write(&mut headers);
        for (name, value) in &headers {
            rejection = rejection.with_header(name.clone(), value.clone());
        }
    }
    tracing::debug!(target: "portcullis::rate_limit", limit = %config.name, retry_after, "rate limited");
    Err(Denial::Refuse(rejection))
}

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The limit's state, written into the answer's headers once it exists (no intermediate map).
pub(crate) struct HeaderPlan {
    style: RateLimitHeaders,
    name: Arc<str>,
    policy: HeaderValue,
    limit: u32,
    remaining: u32,
    reset: u64,
}

impl HeaderPlan {
    fn new(config: &RateLimitConfig, limit: &Limit, outcome: &LimitCheck) -> Option<Self> {
        if !outcome.known || config.headers == RateLimitHeaders::None {
            return None;
        }
        Some(Self {
            style: config.headers,
            name: config.name.clone(),
            policy: limit.policy_header.clone(),
            limit: outcome.limit,
            remaining: outcome.remaining,
            reset: outcome.reset.as_secs_f64().ceil() as u64,
        })
    }

    /// Draft headers from stacked limits sit side by side (one list member each); the legacy
    /// trio keeps the most restrictive limit.
    pub(super) fn write(self, target: &mut HeaderMap) {
        match self.style {
            RateLimitHeaders::Draft => {
                target.append(RATELIMIT_POLICY, self.policy);
                // Built in one buffer of the exact length, which becomes the header value
                // without a copy or a second allocation (`Bytes` takes a full `Vec` as it is):
                // this runs on every response.
                let (mut remaining, mut reset) = (itoa::Buffer::new(), itoa::Buffer::new());
                let (remaining, reset) =
                    (remaining.format(self.remaining), reset.format(self.reset));
                let parts: [&[u8]; 6] = [
                    b"\"",
                    self.name.as_bytes(),
                    b"\";r=",
                    remaining.as_bytes(),
                    b";t=",
                    reset.as_bytes(),
                ];
                let value = parts.concat();
                if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
                    target.append(RATELIMIT, value);
                }
            }
            RateLimitHeaders::Legacy => {
                let current = target
                    .get(X_REMAINING)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u32>().ok());
                if current.is_none_or(|current| self.remaining < current) {
                    target.insert(X_LIMIT, HeaderValue::from(self.limit));
                    target.insert(X_REMAINING, HeaderValue::from(self.remaining));
                    target.insert(X_RESET, HeaderValue::from(self.reset));
                }
            }
            RateLimitHeaders::None => {}
        }
    }
}
