//! The check: which requests are counted, the refusal while locked out, settling each attempt
//! with its answer.

use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::request::Parts;
use http::{HeaderName, HeaderValue};

use super::count::{Attempt, LockoutAttempt};
use super::{LockoutConfig, LockoutLayer};
use crate::decision::LayerKind;
use crate::error::Reason;
use crate::error::{Rejection, RejectionKind};
use crate::guard::{Check, Denial, Verdict};
use crate::request::attempt::PendingAttempt;
use crate::request::credential;
use crate::request::forwarded::{self, group};

/// What a request is counted as: its address and, for Basic, the user it tries to be.
pub(crate) struct Subjects {
    keys: [u64; 2],
    len: usize,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    texts: Vec<String>,
}

/// `user`: the Basic user name the request tries, if any.
fn subjects(config: &LockoutConfig, request: &Parts, user: Option<&str>) -> Subjects {
    let ip = group(forwarded::of(&request.extensions), config.v6_prefix);
    // Keys hash the values themselves; the text forms are only built for a shared backend.
    let mut keys = [config.hasher.hash_one(("ip", ip)), 0];
    let mut len = 1;
    if let Some(user) = &user {
        keys[1] = config.hasher.hash_one(("user", user));
        len = 2;
    }
    #[cfg(feature = "redis")]
    let texts = if config.redis.is_some() {
        // The same encoding as rate-limit keys: the user name is length-prefixed.
        let mut texts = vec![crate::rate_limit::key::Material::Ip(ip).text()];
        texts.extend(user.map(|user| {
            let mut text = String::from("user:");
            crate::rate_limit::key::part(&mut text, user);
            text
        }));
        texts
    } else {
        Vec::new()
    };
    #[cfg(not(feature = "redis"))]
    let texts = Vec::new();
    Subjects { keys, len, texts }
}

/// Whether a response is a failed guess worth counting: the one rule for the local count and
/// the shared (Redis) one. Only a 401 whose rejection is evidence of guessing counts (see
/// `Reason::is_guess`): a stale token, an identity provider that is down, a key
/// rotation in progress or a revoked token are not guesses, and no credential is no attempt.
fn is_failure<B>(response: &http::Response<B>) -> bool {
    response.status() == http::StatusCode::UNAUTHORIZED
        && response
            .extensions()
            .get::<Rejection>()
            .is_some_and(Rejection::is_guess)
}

/// Only requests that try to authenticate are checked and counted: a locked-out address can
/// still reach public routes.
fn carries_credentials(request: &Parts, names: &[HeaderName]) -> bool {
    let headers = &request.headers;
    names.iter().any(|name| headers.contains_key(name))
}

fn locked_out(retry_after: Duration) -> Denial {
    let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
    Denial::Refuse(
        Rejection::new(RejectionKind::TooManyRequests)
            .with_reason(Reason::LockedOut)
            .with_detail("Too many failed attempts; retry after the time in Retry-After.")
            .with_header(RETRY_AFTER, HeaderValue::from(seconds)),
    )
}

/// A counted attempt, settled when its answer is known.
pub(crate) struct Counted {
    attempt: Arc<LockoutAttempt>,
    /// With a shared backend: where a failure is recorded too, and as what.
    #[cfg(feature = "redis")]
    shared: Option<(crate::rate_limit::redis::RedisBackend, Vec<String>)>,
}

/// What the shared backend said, with what the request step needs to go on.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct SharedLookup {
    wait: Option<Duration>,
    subjects: Subjects,
    outer: Option<PendingAttempt>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Check for LockoutLayer {
    const LAYER: LayerKind = LayerKind::Lockout;
    const SERVICE: &'static str = "Lockout";
    /// `None` for a request that is not counted.
    type Admit = Option<Counted>;
    type Ready = SharedLookup;
    type Pending = BoxFuture<SharedLookup>;

    fn check<B>(&self, parts: &mut Parts, _: &B) -> Verdict<Self::Admit, Self::Pending> {
        // Not counted: a request without credentials, and one whose attempt the same layer
        // applied further out (on a route and around the router) already holds.
        let outer = carries_credentials(parts, &self.credential_headers)
            .then(|| parts.extensions.get::<PendingAttempt>().cloned());
        let outer = match outer {
            Some(outer)
                if !outer
                    .as_ref()
                    .and_then(PendingAttempt::downcast::<LockoutAttempt>)
                    .is_some_and(|outer| Arc::ptr_eq(&outer.config, &self.config)) =>
            {
                outer
            }
            _ => return Verdict::Allow(None),
        };
        // Decoded here once for the authenticator inside, unless the audit layer did already.
        let basic = credential::keep_basic(&parts.headers, &mut parts.extensions).flatten();
        let config = &self.config;
        let subjects = subjects(config, parts, basic.as_ref().map(|b| b.user.as_str()));
        // This replica's own count runs with or without Redis: it bounds the guesses in flight
        // (which a shared count recorded after each answer cannot), and it keeps the lockout
        // working while Redis is down.
        #[cfg(feature = "redis")]
        if let Some(redis) = config.redis.clone() {
            // Locked out here already: answered without asking Redis.
            if let Some(wait) = config.local_lockout(&subjects.keys[..subjects.len]) {
                return Verdict::Deny(locked_out(wait));
            }
            // The local reservation comes after the shared check, so the round trip does not
            // count as an attempt in flight (at the 50 ms deadline of a Redis outage, a busy
            // address would otherwise be refused without any failure).
            return Verdict::Defer(Box::pin(async move {
                let wait = redis.lockout_remaining(&subjects.texts).await;
                SharedLookup {
                    wait,
                    subjects,
                    outer,
                }
            }));
        }
        match reserve(config, &subjects, parts, outer) {
            Ok(attempt) => Verdict::Allow(Some(Counted {
                attempt,
                #[cfg(feature = "redis")]
                shared: None,
            })),
            Err(wait) => Verdict::Deny(locked_out(wait)),
        }
    }

    fn resume<B>(
        &self,
        parts: &mut Parts,
        _: &B,
        lookup: SharedLookup,
    ) -> Verdict<Self::Admit, Self::Pending> {
        if let Some(wait) = lookup.wait {
            return Verdict::Deny(locked_out(wait));
        }
        match reserve(&self.config, &lookup.subjects, parts, lookup.outer) {
            Ok(attempt) => Verdict::Allow(Some(Counted {
                attempt,
                #[cfg(feature = "redis")]
                shared: self
                    .config
                    .redis
                    .clone()
                    .map(|redis| (redis, lookup.subjects.texts)),
            })),
            Err(wait) => Verdict::Deny(locked_out(wait)),
        }
    }

    fn finish<B>(counted: Self::Admit, response: &mut http::Response<B>) {
        let Some(counted) = counted else { return };
        let failed = is_failure(response);
        // An attempt accepted at authentication is no failure, whatever the handler answers
        // later.
        #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
        let settled = counted.attempt.settle(failed);
        #[cfg(feature = "redis")]
        if settled
            && failed
            && let Some((redis, texts)) = counted.shared
        {
            let config = counted.attempt.config.clone();
            // Counting must not delay the answer.
            tokio::spawn(async move {
                redis.record_failure(&texts, &config).await;
            });
        }
    }
}

/// Reserves the request's attempt on this replica and leaves it in the request for the
/// authentication layer to settle (chained to `outer`, another lockout layer's), or says how
/// long the caller must wait.
fn reserve(
    config: &Arc<LockoutConfig>,
    subjects: &Subjects,
    request: &mut Parts,
    outer: Option<PendingAttempt>,
) -> Result<Arc<LockoutAttempt>, Duration> {
    let entries = config.local_reserve(&subjects.keys[..subjects.len])?;
    let attempt = Arc::new(LockoutAttempt::new(
        Attempt {
            config: config.clone(),
            entries,
            done: false,
        },
        outer,
    ));
    request
        .extensions
        .insert(PendingAttempt::new(attempt.clone()));
    Ok(attempt)
}
