//! The JWKS cache of one issuer: fetches the key set, keeps the issuer's [`JwtAuthenticator`] in
//! sync with it (new kids added, vanished or changed ones removed), refreshes in the background,
//! and refetches at most once per cool-down when a token names an unknown kid.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde_json::Value;
use url::Url;

use super::http::{FetchError, HttpClient, max_age};
use crate::auth::{JwtAuthenticator, JwtKey};

/// Most keys a set may hold; a larger one is a failed fetch.
const MAX_KEYS: usize = 100;

/// A refresh in flight, shared by everyone waiting for it. `Some(max_age)` on success.
pub(crate) type Refresh = Shared<BoxFuture<'static, KeySetFetch>>;

#[derive(Clone, Copy, Debug)]
pub(crate) enum KeySetFetch {
    Fresh(Option<Duration>),
    Failed,
}

#[derive(Clone, Debug)]
pub(crate) struct RefreshPolicy {
    pub(crate) cooldown: Duration,
    pub(crate) min_interval: Duration,
    pub(crate) max_interval: Duration,
    pub(crate) default_interval: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            cooldown: Duration::from_secs(30),
            min_interval: Duration::from_secs(60),
            max_interval: Duration::from_secs(24 * 3600),
            default_interval: Duration::from_secs(3600),
        }
    }
}

pub(crate) struct Jwks {
    issuer: String,
    uri: Url,
    http: HttpClient,
    jwt: JwtAuthenticator,
    algorithms: Vec<Algorithm>,
    policy: RefreshPolicy,
    state: Mutex<State>,
    fetches: AtomicU64,
    /// Fetches finished (successful or not): a caller that saw an unknown kid before a fetch
    /// finished retries with its keys instead of fetching again.
    completed: AtomicU64,
}

#[derive(Default)]
struct State {
    last_attempt: Option<Instant>,
    inflight: Option<Refresh>,
    /// kid -> the JWK's JSON, to notice a kid whose key material changed.
    known: HashMap<String, String>,
    stale: bool,
}

impl Jwks {
    pub(crate) fn new(
        issuer: String,
        uri: Url,
        http: HttpClient,
        jwt: JwtAuthenticator,
        algorithms: Vec<Algorithm>,
        policy: RefreshPolicy,
    ) -> Self {
        Self {
            issuer,
            uri,
            http,
            jwt,
            algorithms,
            policy,
            state: Mutex::new(State::default()),
            fetches: AtomicU64::new(0),
            completed: AtomicU64::new(0),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    pub(crate) fn is_stale(&self) -> bool {
        self.state().stale
    }

    /// A generation to read before verifying, for [`refresh_since`](Self::refresh_since).
    pub(crate) fn generation(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// For a token whose kid was unknown at `generation`: a fetch finished since then (retry at
    /// once), the one in flight, a new one, or `None` when the cool-down forbids it.
    pub(crate) fn refresh_since(self: &Arc<Self>, generation: u64) -> Option<Refresh> {
        self.start_refresh(true, Some(generation))
    }

    /// Joins the refresh in flight, or starts one unless the cool-down forbids it (`None`).
    /// Single-flight: however many callers ask at once, one fetch happens.
    pub(crate) fn refresh(self: &Arc<Self>, respect_cooldown: bool) -> Option<Refresh> {
        self.start_refresh(respect_cooldown, None)
    }

    fn start_refresh(
        self: &Arc<Self>,
        respect_cooldown: bool,
        seen_generation: Option<u64>,
    ) -> Option<Refresh> {
        let mut state = self.state();
        // Checked under the lock a finishing fetch takes to count itself, so a fetch that ends
        // between the caller's miss and this call is seen (retry at once) instead of followed
        // by a second one.
        if seen_generation.is_some_and(|seen| seen != self.generation()) {
            return Some(
                futures_util::future::ready(KeySetFetch::Fresh(None))
                    .boxed()
                    .shared(),
            );
        }
        if let Some(inflight) = &state.inflight {
            return Some(inflight.clone());
        }
        let now = Instant::now();
        if respect_cooldown
            && state
                .last_attempt
                .is_some_and(|at| now.duration_since(at) < self.policy.cooldown)
        {
            return None;
        }
        state.last_attempt = Some(now);
        let this = Arc::clone(self);
        let work = async move {
            // Clears the in-flight marker however the fetch ends: finished, panicked, or
            // cancelled with its runtime. Otherwise every later refresh would join a dead one.
            let _finished = FetchFinished(Arc::clone(&this));
            this.fetch_and_apply().await
        };
        // On its own task when there is a runtime, so a cancelled request cannot stall the fetch
        // for the others waiting on it.
        let refresh = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let task = runtime.spawn(work);
                async move { task.await.unwrap_or(KeySetFetch::Failed) }
                    .boxed()
                    .shared()
            }
            Err(_) => work.boxed().shared(),
        };
        state.inflight = Some(refresh.clone());
        Some(refresh)
    }

    async fn fetch_and_apply(&self) -> KeySetFetch {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch().await {
            Ok((keys, max_age)) => {
                let count = keys.len();
                self.apply(keys);
                let mut state = self.state();
                if state.stale {
                    tracing::info!(issuer = %self.issuer, "JWKS fetched again; keys are fresh");
                }
                state.stale = false;
                drop(state);
                tracing::debug!(issuer = %self.issuer, keys = count, "JWKS refreshed");
                KeySetFetch::Fresh(max_age)
            }
            Err(error) => {
                self.state().stale = true;
                tracing::warn!(
                    issuer = %self.issuer,
                    jwks_uri = %self.uri,
                    %error,
                    "JWKS fetch failed; serving the last good keys (stale-if-error)"
                );
                KeySetFetch::Failed
            }
        }
    }

    async fn fetch(&self) -> Result<(Vec<Usable>, Option<Duration>), FetchError> {
        let fetched = self.http.get(&self.uri).await?;
        let set: Value = serde_json::from_slice(&fetched.body)
            .map_err(|_| FetchError::Url("the JWKS is not JSON"))?;
        let Some(Value::Array(raw)) = set.get("keys") else {
            return Err(FetchError::Url("the JWKS has no `keys` array"));
        };
        // Real sets hold a handful of keys. Thousands (which fit in the size limit) would cost
        // work quadratic in their number to apply and a warning each: a failed fetch instead,
        // so the last good keys stay.
        if raw.len() > MAX_KEYS {
            return Err(FetchError::Url("the JWKS holds more than 100 keys"));
        }
        let keys: Vec<Usable> = raw.iter().filter_map(|jwk| self.usable(jwk)).collect();
        // A set with no usable key is far more likely a broken deployment (an empty file from a
        // CDN, a lagging replica) than a provider revoking every key at once: keep the last good
        // keys rather than refuse every token.
        if keys.is_empty() {
            return Err(FetchError::Url("the JWKS holds no usable key"));
        }
        Ok((keys, max_age(&fetched.headers)))
    }

    /// One JWK, if it is a signing key we may use; otherwise skipped with a warning.
    fn usable(&self, raw: &Value) -> Option<Usable> {
        let skip = |why: &str| {
            let kid = raw.get("kid").and_then(Value::as_str).unwrap_or("");
            tracing::warn!(issuer = %self.issuer, kid, why, "JWKS key skipped");
        };
        let mut jwk: Jwk = match serde_json::from_value(raw.clone()) {
            Ok(jwk) => jwk,
            Err(_) => {
                skip("not a JWK this crate understands");
                return None;
            }
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            skip("no kid");
            return None;
        };
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            skip("a symmetric key in a public key set");
            return None;
        }
        if jwk.common.key_algorithm.is_none() {
            match self.algorithm_for(&jwk.algorithm) {
                Some(alg) => {
                    jwk.common.key_algorithm = KeyAlgorithm::from_str(&format!("{alg:?}")).ok()
                }
                None => {
                    skip("no alg, and no configured algorithm fits its key type");
                    return None;
                }
            }
        }
        let key = match JwtKey::from_jwk(&jwk) {
            Ok(key) => key,
            Err(error) => {
                skip(&error.to_string());
                return None;
            }
        };
        if !self.algorithms.contains(&key.algorithm()) {
            skip("its alg is not one this issuer accepts");
            return None;
        }
        Some(Usable {
            kid,
            json: raw.to_string(),
            key,
        })
    }

    fn algorithm_for(&self, params: &AlgorithmParameters) -> Option<Algorithm> {
        self.algorithms.iter().copied().find(|alg| match params {
            AlgorithmParameters::EllipticCurve(ec) => {
                (ec.curve == EllipticCurve::P256 && *alg == Algorithm::ES256)
                    || (ec.curve == EllipticCurve::P384 && *alg == Algorithm::ES384)
            }
            AlgorithmParameters::RSA(_) => alg.family() == AlgorithmFamily::Rsa,
            AlgorithmParameters::OctetKeyPair(okp) => {
                okp.curve == EllipticCurve::Ed25519 && *alg == Algorithm::EdDSA
            }
            _ => false,
        })
    }

    /// Brings the authenticator's keys in line with the fetched set.
    fn apply(&self, keys: Vec<Usable>) {
        let mut state = self.state();
        for kid in self.jwt.kids() {
            let keep = keys
                .iter()
                .any(|k| k.kid == kid && state.known.get(&kid) == Some(&k.json));
            if !keep {
                // Drops the tokens it verified from the cache as well.
                self.jwt.remove_key(&kid);
                state.known.remove(&kid);
                tracing::info!(issuer = %self.issuer, kid, "JWKS key removed");
            }
        }
        for usable in keys {
            if state.known.contains_key(&usable.kid) {
                continue;
            }
            match self.jwt.add_key(usable.key) {
                Ok(()) => {
                    tracing::info!(issuer = %self.issuer, kid = %usable.kid, "JWKS key added");
                    state.known.insert(usable.kid, usable.json);
                }
                Err(error) => {
                    tracing::warn!(issuer = %self.issuer, kid = %usable.kid, %error, "JWKS key skipped");
                }
            }
        }
        if state.known.is_empty() {
            tracing::warn!(issuer = %self.issuer, "the JWKS holds no usable key: every token fails");
        }
    }

    /// How long to wait before the next background refresh.
    fn next_interval(&self, outcome: KeySetFetch) -> Duration {
        let policy = &self.policy;
        match outcome {
            KeySetFetch::Fresh(max_age) => max_age
                .unwrap_or(policy.default_interval)
                .clamp(policy.min_interval, policy.max_interval),
            KeySetFetch::Failed => policy.min_interval,
        }
    }

    /// Refreshes in the background for as long as the issuer lives.
    pub(crate) fn spawn_background(self: &Arc<Self>, first: KeySetFetch) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(issuer = %self.issuer, "no tokio runtime: JWKS background refresh is off");
            return;
        };
        let weak: Weak<Self> = Arc::downgrade(self);
        let mut wait = self.next_interval(first);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(wait).await;
                let Some(this) = weak.upgrade() else { return };
                let outcome = match this.refresh(false) {
                    Some(refresh) => refresh.await,
                    None => KeySetFetch::Failed,
                };
                wait = this.next_interval(outcome);
            }
        });
    }

    pub(crate) fn jwt(&self) -> &JwtAuthenticator {
        &self.jwt
    }
}

struct Usable {
    kid: String,
    json: String,
    key: JwtKey,
}

/// Marks the end of a fetch when dropped.
struct FetchFinished(Arc<Jwks>);

impl Drop for FetchFinished {
    fn drop(&mut self) {
        let mut state = self.0.state();
        self.0.completed.fetch_add(1, Ordering::AcqRel);
        state.inflight = None;
    }
}
