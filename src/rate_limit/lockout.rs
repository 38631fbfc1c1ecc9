//! Brute-force lockout: too many failed logins from one address, or for one user, lock them out.

use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::header::{AUTHORIZATION, RETRY_AFTER};
use http::request::Parts;
use http::{HeaderName, HeaderValue};
use tokio::time::Instant;
use tower_layer::Layer;

use crate::decision::LayerKind;
use crate::error::{ConfigError, Rejection, RejectionKind};
use crate::guard::{Check, Denial, Guard, Verdict};
use crate::request::attempt::PendingAttempt;
use crate::request::forwarded::{self, group};
use crate::request::{self, credential};

/// Locks out callers after repeated failed authentication; see [`LockoutLayerBuilder`].
///
/// Put it *outside* the [`AuthLayer`](crate::AuthLayer): it watches the 401 answers the
/// AuthLayer gives and counts those that are evidence of guessing per client address and per
/// attempted user name (the Basic user): a wrong password or API key, a token with a bad
/// signature, malformed, with an algorithm or embedded key this server never accepts, or from a
/// foreign issuer or for another audience. A request without credentials is not a failure, and
/// neither is a token that expired, was revoked, is inactive at introspection, is signed by a key
/// not yet known (during a rotation), or could not be checked because the identity provider is
/// down or busy: none of these is a guess, and counting them would lock out every client behind
/// one address during an outage. A custom [`Authenticator`](crate::auth::Authenticator)'s
/// refusals count only when they use one of the built-in reasons for a wrong credential
/// (`InvalidCredentials` with reason `wrong_password`, `unknown_user` or `unknown_api_key`). After `max_failures` within `window`, that address or
/// user gets 429 with `Retry-After` for the lockout period, which doubles with each lockout up to
/// a cap. Works in memory, or in Redis (feature `redis`) so all replicas share the count.
///
/// With Redis, each replica keeps its own count as well, with the same limits: it is what bounds
/// the guesses in flight at once (the shared count learns of a failure only after its answer),
/// and it keeps locking out guessers while Redis cannot answer. The shared lockout itself never
/// fails closed, whatever the backend's `RedisFailure` policy: refusing every login while Redis
/// is down would turn an outage into a denial of service for everyone.
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use portcullis::rate_limit::LockoutLayer;
///
/// # fn main() -> Result<(), portcullis::ConfigError> {
/// let lockout = LockoutLayer::builder()
///     .max_failures(5)
///     .window(Duration::from_secs(900))
///     .lockout(Duration::from_secs(60))
///     .max_lockout(Duration::from_secs(3600))
///     .build()?;
/// let app: Router = Router::new()
///     .route("/login", get(|| async { "welcome" }))
///     // .layer(auth)
///     .layer(lockout);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct LockoutLayer {
    config: Arc<LockoutConfig>,
    /// Where requests carry credentials: only those are checked and counted.
    credential_headers: Arc<[HeaderName]>,
}

pub(crate) struct LockoutConfig {
    pub(crate) max_failures: u32,
    pub(crate) window: Duration,
    pub(crate) lockout: Duration,
    pub(crate) max_lockout: Duration,
    v6_prefix: u8,
    hasher: std::hash::RandomState,
    entries: moka::sync::Cache<u64, Arc<Mutex<Entry>>>,
    #[cfg(feature = "redis")]
    redis: Option<super::redis::RedisBackend>,
}

#[derive(Debug, Default)]
struct Entry {
    failures: u32,
    window_start: Option<Instant>,
    level: u32,
    locked_until: Option<Instant>,
    last_lockout: Option<Instant>,
    /// Attempts whose answer is not known yet.
    pending: u32,
}

/// Configures a [`LockoutLayer`].
#[must_use]
#[derive(Debug)]
pub struct LockoutLayerBuilder {
    max_failures: u32,
    window: Duration,
    lockout: Duration,
    max_lockout: Duration,
    max_entries: u64,
    v6_prefix: u8,
    credential_headers: Vec<HeaderName>,
    #[cfg(feature = "redis")]
    redis: Option<super::redis::RedisBackend>,
}

impl LockoutLayer {
    /// Starts with 5 failures in 15 minutes, a 1 minute lockout doubling up to 1 hour.
    pub fn builder() -> LockoutLayerBuilder {
        LockoutLayerBuilder {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            lockout: Duration::from_secs(60),
            max_lockout: Duration::from_secs(3600),
            max_entries: 1_000_000,
            v6_prefix: 64,
            credential_headers: vec![AUTHORIZATION, HeaderName::from_static("x-api-key")],
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// Also checks and counts requests that carry a credential in these headers (the
    /// `Portcullis` builder passes the ones its authenticators read).
    pub(crate) fn with_credential_headers(mut self, names: &[HeaderName]) -> Self {
        let mut all = self.credential_headers.to_vec();
        for name in names {
            if !all.contains(name) {
                all.push(name.clone());
            }
        }
        self.credential_headers = all.into();
        self
    }
}

impl LockoutLayerBuilder {
    /// Failures allowed within the window before a lockout.
    pub fn max_failures(mut self, failures: u32) -> Self {
        self.max_failures = failures;
        self
    }

    /// The window failures are counted in.
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// The first lockout; each further one doubles it.
    pub fn lockout(mut self, lockout: Duration) -> Self {
        self.lockout = lockout;
        self
    }

    /// The longest lockout.
    pub fn max_lockout(mut self, max: Duration) -> Self {
        self.max_lockout = max;
        self
    }

    /// Most addresses and users tracked in memory (default 1 000 000).
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.max_entries = entries;
        self
    }

    /// IPv6 clients are counted per prefix of this length (default 64).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.v6_prefix = bits.min(128);
        self
    }

    /// Checks and counts requests carrying this header too, besides `Authorization` and
    /// `X-Api-Key`: the header of an [`ApiKeyAuthenticator`](crate::auth::ApiKeyAuthenticator)
    /// configured with another name. A guess in a header the lockout does not watch is never
    /// counted. `Portcullis::builder()` adds its authenticators' headers itself.
    pub fn credential_header(mut self, name: HeaderName) -> Self {
        if !self.credential_headers.contains(&name) {
            self.credential_headers.push(name);
        }
        self
    }

    /// Keeps the counts in Redis, shared by every replica.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, backend: super::redis::RedisBackend) -> Self {
        self.redis = Some(backend);
        self
    }

    /// Checks the configuration.
    pub fn build(self) -> Result<LockoutLayer, ConfigError> {
        if self.max_failures == 0 || self.window.is_zero() || self.lockout.is_zero() {
            return Err(ConfigError::new(
                "lockout needs non-zero failures, window and lockout",
            ));
        }
        if self.max_lockout < self.lockout {
            return Err(ConfigError::new("max_lockout is shorter than lockout"));
        }
        let idle = self.window.max(self.max_lockout) * 2;
        Ok(LockoutLayer {
            config: Arc::new(LockoutConfig {
                max_failures: self.max_failures,
                window: self.window,
                lockout: self.lockout,
                max_lockout: self.max_lockout,
                v6_prefix: self.v6_prefix,
                hasher: std::hash::RandomState::new(),
                entries: moka::sync::Cache::builder()
                    .max_capacity(self.max_entries)
                    .time_to_idle(idle)
                    .build(),
                #[cfg(feature = "redis")]
                redis: self.redis,
            }),
            credential_headers: self.credential_headers.into(),
        })
    }
}

impl LockoutConfig {
    /// The lockout after the `level`-th one: doubling, capped.
    pub(crate) fn lockout_for(&self, level: u32) -> Duration {
        let factor = 1u32
            .checked_shl(level.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.lockout.saturating_mul(factor).min(self.max_lockout)
    }

    /// Reserves one attempt on every key, or says how long to wait: the lockout left, or one
    /// second while as many attempts are in flight as failures are still allowed. Counting
    /// attempts in flight closes the race where a burst of concurrent guesses all pass the check
    /// before the first failure is recorded.
    ///
    /// Returns the entries reserved, which the attempt keeps so that releasing it needs no
    /// second lookup.
    fn local_reserve(&self, keys: &[u64]) -> Result<Entries, Duration> {
        let now = Instant::now();
        let mut entries = Entries::default();
        for (slot, key) in entries.iter_mut().zip(keys) {
            *slot = Some((*key, self.entry(*key)));
        }
        // With two keys, a lockout on either first, before reserving on the other: a locked-out
        // user tried from a shared address must not hold one of that address's attempts, even
        // briefly. (With one key the loop below sees it.)
        if entries[1].is_some()
            && let Some(wait) = locked_for(&entries, now)
        {
            return Err(wait);
        }
        // Checked and reserved under each entry's lock, so concurrent attempts on other threads
        // cannot all pass the check before any of them counts.
        for (reserved, (_, entry)) in entries.iter().flatten().enumerate() {
            let refused = {
                let mut entry = entry.lock().unwrap_or_else(PoisonError::into_inner);
                let failures = if self.window_expired(&entry, now) {
                    0
                } else {
                    entry.failures
                };
                if let Some(until) = entry.locked_until.filter(|until| *until > now) {
                    Some(until - now)
                } else if failures.saturating_add(entry.pending) >= self.max_failures {
                    Some(Duration::from_secs(1))
                } else {
                    entry.pending += 1;
                    None
                }
            };
            if let Some(wait) = refused {
                // Give back what the keys before this one reserved.
                for (_, earlier) in entries.iter().flatten().take(reserved) {
                    let mut earlier = earlier.lock().unwrap_or_else(PoisonError::into_inner);
                    earlier.pending = earlier.pending.saturating_sub(1);
                }
                return Err(wait);
            }
        }
        Ok(entries)
    }

    /// The lockout left on any of `keys`, without reserving anything.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    fn local_lockout(&self, keys: &[u64]) -> Option<Duration> {
        let mut entries = Entries::default();
        for (slot, key) in entries.iter_mut().zip(keys) {
            *slot = self.entries.get(key).map(|entry| (*key, entry));
        }
        locked_for(&entries, Instant::now())
    }

    fn entry(&self, key: u64) -> Arc<Mutex<Entry>> {
        self.entries
            .get_with(key, || Arc::new(Mutex::new(Entry::default())))
    }

    fn window_expired(&self, entry: &Entry, now: Instant) -> bool {
        entry
            .window_start
            .is_none_or(|start| now - start >= self.window)
    }

    /// Ends a reserved attempt, counting it when it failed.
    fn local_release(&self, entries: &Entries, failed: bool) {
        for (key, reserved) in entries.iter().flatten() {
            {
                let mut reserved = reserved.lock().unwrap_or_else(PoisonError::into_inner);
                reserved.pending = reserved.pending.saturating_sub(1);
            }
            if !failed {
                continue;
            }
            // A failure is counted in the entry the cache holds now: the one reserved may have
            // been evicted (and re-created by another request) while this one was in flight.
            let live = self.entry(*key);
            let mut entry = live.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if self.window_expired(&entry, now) {
                entry.failures = 0;
                entry.window_start = Some(now);
            }
            entry.failures += 1;
            if entry.failures >= self.max_failures {
                // Lockouts grow only while they keep coming: after a long quiet spell, start over.
                let quiet = entry
                    .last_lockout
                    .is_some_and(|at| now - at >= self.max_lockout.saturating_mul(4));
                if quiet {
                    entry.level = 0;
                }
                entry.level = entry.level.saturating_add(1);
                entry.locked_until = Some(now + self.lockout_for(entry.level));
                entry.last_lockout = Some(now);
                entry.failures = 0;
                entry.window_start = None;
                tracing::warn!(
                    target: "portcullis::rate_limit",
                    level = entry.level,
                    "locked out after repeated failed authentication"
                );
            }
        }
    }
}

/// The longest lockout left on any of `entries` at `now`.
fn locked_for(entries: &Entries, now: Instant) -> Option<Duration> {
    entries
        .iter()
        .flatten()
        .filter_map(|(_, entry)| {
            let entry = entry.lock().unwrap_or_else(PoisonError::into_inner);
            entry
                .locked_until
                .filter(|until| *until > now)
                .map(|until| until - now)
        })
        .max()
}

/// An attempt in flight: released (and counted if it failed) when the answer is known, or just
/// released if the request is dropped.
struct Attempt {
    config: Arc<LockoutConfig>,
    entries: Entries,
    done: bool,
}

impl Attempt {
    fn finish(mut self, failed: bool) {
        self.done = true;
        self.config.local_release(&self.entries, failed);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.done {
            self.config.local_release(&self.entries, false);
        }
    }
}

/// An attempt the authentication layer settles as soon as it accepts the credential, so a slow
/// handler does not hold one of the address's attempts: otherwise `max_failures` concurrent
/// authenticated requests from one address (a browser, a NAT) would lock it out without any
/// failure. A request whose credential is refused keeps its attempt until its answer is known.
pub(crate) struct LockoutAttempt {
    attempt: Mutex<Option<Attempt>>,
    /// Whose attempt it is: the same layer stacked twice must not count a request twice.
    config: Arc<LockoutConfig>,
    /// The attempt of a lockout layer outside this one (a global lockout around one on a login
    /// route), which the request's extensions no longer show: accepting a credential releases
    /// both.
    outer: Option<PendingAttempt>,
}

impl LockoutAttempt {
    fn new(attempt: Attempt, outer: Option<PendingAttempt>) -> Self {
        Self {
            config: attempt.config.clone(),
            attempt: Mutex::new(Some(attempt)),
            outer,
        }
    }

    /// Ends the attempt; false when it was already ended (accepted at authentication).
    fn settle(&self, failed: bool) -> bool {
        let attempt = self
            .attempt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match attempt {
            Some(attempt) => {
                attempt.finish(failed);
                true
            }
            None => false,
        }
    }
}

impl request::attempt::Attempt for LockoutAttempt {
    /// Releases the attempt, and any outer one, as no failure.
    fn accepted(&self) {
        let _ = self.settle(false);
        if let Some(outer) = &self.outer {
            outer.accepted();
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The keys and entries of an attempt's subjects (its address, and its Basic user if any).
type Entries = [Option<(u64, Arc<Mutex<Entry>>)>; 2];

/// What a request is counted as: its address and, for Basic, the user it tries to be.
pub(crate) struct Subjects {
    keys: [u64; 2],
    len: usize,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    texts: Vec<String>,
}

fn subjects(config: &LockoutConfig, request: &Parts) -> Subjects {
    let ip = group(forwarded::of(&request.extensions), config.v6_prefix);
    let user = credential::basic_user_name(&request.headers);
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
        let mut texts = vec![super::key::Material::Ip(ip).text()];
        texts.extend(user.map(|user| {
            let mut text = String::from("user:");
            super::key::part(&mut text, &user);
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
/// `GUESSING_REASONS` in `crate::error`): a stale token, an identity provider that is down, a key
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
            .with_reason("locked_out")
            .with_detail("Too many failed attempts; retry after the time in Retry-After.")
            .with_header(RETRY_AFTER, HeaderValue::from(seconds)),
    )
}

impl fmt::Debug for LockoutLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockoutLayer")
            .field("max_failures", &self.config.max_failures)
            .field("window", &self.config.window)
            .field("lockout", &self.config.lockout)
            .field("max_lockout", &self.config.max_lockout)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for LockoutLayer {
    type Service = Lockout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard::new(inner, self.clone())
    }
}

/// The service built by [`LockoutLayer`].
pub type Lockout<S> = Guard<S, LockoutLayer>;

/// The former name of [`Lockout`].
#[deprecated(since = "0.2.0", note = "renamed to `Lockout`")]
pub type LockoutService<S> = Lockout<S>;

/// Response future of [`Lockout`].
pub type LockoutFuture<S, B> = crate::guard::ResponseFuture<S, LockoutLayer, B>;

/// A counted attempt, settled when its answer is known.
pub(crate) struct Counted {
    attempt: Arc<LockoutAttempt>,
    /// With a shared backend: where a failure is recorded too, and as what.
    #[cfg(feature = "redis")]
    shared: Option<(super::redis::RedisBackend, Vec<String>)>,
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
        let config = &self.config;
        let subjects = subjects(config, parts);
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

impl fmt::Debug for LockoutConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockoutConfig").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// Reserve for one of `SUBJECTS`.
        Reserve { subjects: usize },
        /// End the n-th attempt still open (modulo their number), failed or not.
        Finish { nth: usize, failed: bool },
        /// Drop the n-th attempt still open, unanswered.
        Abandon { nth: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..SUBJECTS.len()).prop_map(|subjects| Op::Reserve { subjects }),
            (any::<usize>(), any::<bool>()).prop_map(|(nth, failed)| Op::Finish { nth, failed }),
            any::<usize>().prop_map(|nth| Op::Abandon { nth }),
        ]
    }

    /// An address alone, that address with a user, another address with the same user: the user
    /// can then fill up before the first address does, so a reservation is refused on its second
    /// key after the first one was reserved (and must be rolled back).
    const SUBJECTS: [&[u64]; 3] = [&[1], &[1, 2], &[3, 2]];

    /// What one key should hold: failures in the window, attempts open, locked out or not.
    #[derive(Clone, Copy, Debug, Default, PartialEq)]
    struct Model {
        failures: u32,
        pending: u32,
        locked: bool,
    }

    fn state(config: &LockoutConfig, key: u64) -> Model {
        let entry = config.entry(key);
        let entry = entry.lock().unwrap();
        Model {
            failures: entry.failures,
            pending: entry.pending,
            locked: entry.locked_until.is_some(),
        }
    }

    proptest! {
        /// Reservations, failures and lockouts on an address and a user follow the model, a
        /// refused reservation leaves nothing reserved (its rollback included), and once every
        /// attempt has ended, nothing is left in flight.
        #[test]
        fn reservations_follow_the_model_and_all_end(
            max_failures in 1u32..4,
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let layer = LockoutLayer::builder()
                .max_failures(max_failures)
                .window(Duration::from_secs(3600))
                .lockout(Duration::from_secs(3600))
                .max_lockout(Duration::from_secs(3600))
                .build()
                .unwrap();
            let config = layer.config.clone();
            let mut model = [Model::default(); 3];
            let mut open: Vec<(LockoutAttempt, &[u64])> = Vec::new();
            for op in ops {
                match op {
                    Op::Reserve { subjects } => {
                        let keys = SUBJECTS[subjects];
                        let refused = keys.iter().any(|key| {
                            let m = model[(*key - 1) as usize];
                            m.locked || m.failures + m.pending >= max_failures
                        });
                        match config.local_reserve(keys) {
                            Ok(entries) => {
                                prop_assert!(!refused, "reserved past the model: {model:?}");
                                for key in keys {
                                    model[(*key - 1) as usize].pending += 1;
                                }
                                let attempt = Attempt { config: config.clone(), entries, done: false };
                                open.push((LockoutAttempt::new(attempt, None), keys));
                            }
                            Err(_) => prop_assert!(refused, "refused against the model: {model:?}"),
                        }
                    }
                    Op::Finish { nth, failed } if !open.is_empty() => {
                        let (attempt, keys) = open.remove(nth % open.len());
                        prop_assert!(attempt.settle(failed));
                        prop_assert!(!attempt.settle(failed), "settled twice");
                        for key in keys {
                            let m = &mut model[(*key - 1) as usize];
                            m.pending -= 1;
                            if failed {
                                m.failures += 1;
                                if m.failures >= max_failures {
                                    m.failures = 0;
                                    m.locked = true;
                                }
                            }
                        }
                    }
                    Op::Abandon { nth } if !open.is_empty() => {
                        let (attempt, keys) = open.remove(nth % open.len());
                        drop(attempt);
                        for key in keys {
                            model[(*key - 1) as usize].pending -= 1;
                        }
                    }
                    _ => {}
                }
                for key in 1..=3u64 {
                    prop_assert_eq!(state(&config, key), model[(key - 1) as usize], "key {}", key);
                }
            }
            open.clear();
            for key in 1..=3u64 {
                prop_assert_eq!(state(&config, key).pending, 0);
            }
        }
    }
}
