//! Brute-force lockout: too many failed logins from one address, or for one user, lock them out.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderName;
use http::header::AUTHORIZATION;
use tower_layer::Layer;

use crate::error::ConfigError;
use crate::guard::Guard;

mod check;
mod count;

use count::Entry;

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
    #[cfg(feature = "auth")]
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

impl fmt::Debug for LockoutConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockoutConfig").finish_non_exhaustive()
    }
}
