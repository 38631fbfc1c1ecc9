use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::response::{IntoResponse, Response};
use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use tower_service::Service;

use super::future::ResponseFuture;
use super::layer::{Limit, RateLimitConfig};
use super::{Outcome, RateLimitHeaders};
use crate::decision::Decision;
use crate::error::{Rejection, RejectionKind};
use crate::identity::Identity;

/// The service built by [`RateLimitLayer`](super::RateLimitLayer).
#[derive(Clone)]
pub struct RateLimit<S> {
    pub(super) inner: S,
    pub(super) config: Arc<RateLimitConfig>,
}

impl<S: fmt::Debug> fmt::Debug for RateLimit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("name", &self.config.name)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response> + Clone,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let config = &self.config;
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
        let (limit, which) = match &config.anonymous {
            Some(limit) if request.extensions().get::<Identity>().is_none() => {
                (limit, Which::Anonymous)
            }
            _ => (&config.authenticated, Which::Authenticated),
        };
        let material = config.key_by.material(&request, config.v6_prefix);
        #[cfg(feature = "redis")]
        if let Some(redis) = &config.redis {
            let future = redis.check(
                material.text(),
                limit.shared_name.clone(),
                limit.quota,
                config.cost,
                limit.local.clone(),
                config.fingerprint(&material),
            );
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture::checking(
                Box::pin(future),
                request,
                inner,
                config.clone(),
                which,
            );
        }
        let outcome = limit
            .local
            .check(config.fingerprint(&material), config.cost);
        decide(&mut self.inner, config, limit, outcome, request)
    }
}

/// Which of the two limits applied, so the deferred (Redis) path can find it again.
#[derive(Clone, Copy)]
pub(super) enum Which {
    Authenticated,
    Anonymous,
}

pub(super) fn limit_of(config: &RateLimitConfig, which: Which) -> &Limit {
    match (which, &config.anonymous) {
        (Which::Anonymous, Some(limit)) => limit,
        _ => &config.authenticated,
    }
}

/// Calls the inner service or answers 429, per `outcome`.
pub(super) fn decide<S, B>(
    inner: &mut S,
    config: &RateLimitConfig,
    limit: &Limit,
    outcome: Outcome,
    request: Request<B>,
) -> ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response>,
{
    let plan = HeaderPlan::new(config, limit, &outcome);
    if outcome.allowed {
        // Only refusals leave a `Decision`: "within quota" on every request would cost an
        // allocation each time and tell the audit log nothing.
        return ResponseFuture::called(inner.call(request), plan);
    }
    let retry_after = outcome.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut rejection = Rejection::new(RejectionKind::TooManyRequests)
        .with_reason("rate_limited")
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
    let mut response = rejection.into_response();
    response
        .extensions_mut()
        .insert(Decision::denied("rate_limit", "rate_limited"));
    ResponseFuture::rejected(response)
}

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The limit's state, written into the answer's headers once it exists (no intermediate map).
pub(super) struct HeaderPlan {
    style: RateLimitHeaders,
    name: Arc<str>,
    policy: HeaderValue,
    limit: u32,
    remaining: u32,
    reset: u64,
}

impl HeaderPlan {
    fn new(config: &RateLimitConfig, limit: &Limit, outcome: &Outcome) -> Option<Self> {
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
                // Built in one buffer that becomes the header value without a copy: this runs
                // on every response.
                let mut value = Vec::with_capacity(self.name.len() + 32);
                value.push(b'"');
                value.extend_from_slice(self.name.as_bytes());
                value.extend_from_slice(b"\";r=");
                value.extend_from_slice(itoa::Buffer::new().format(self.remaining).as_bytes());
                value.extend_from_slice(b";t=");
                value.extend_from_slice(itoa::Buffer::new().format(self.reset).as_bytes());
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
