use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;

use governor::clock::FakeRelativeClock;
use http::HeaderValue;
use tower_layer::Layer;

use super::local::{LocalLimiter, new_limiter};
use super::{KeyBy, Quota, RateLimit, RateLimitHeaders};
use crate::error::ConfigError;

/// Limits how often each key may call; see the [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct RateLimitLayer {
    pub(super) config: Arc<RateLimitConfig>,
}

pub(super) struct Limit {
    pub(super) quota: Quota,
    pub(super) local: Arc<dyn LocalLimiter>,
    /// `"name";q=..;w=..` for `RateLimit-Policy`.
    pub(super) policy_header: HeaderValue,
    /// The limit's identity in a shared backend: name, which quota, and the quota itself, so
    /// two limits never share a counter by accident.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) shared_name: Arc<str>,
}

pub(super) struct RateLimitConfig {
    pub(super) name: Arc<str>,
    pub(super) key_by: KeyBy,
    pub(super) authenticated: Limit,
    pub(super) anonymous: Option<Limit>,
    pub(super) cost: std::num::NonZeroU32,
    pub(super) headers: RateLimitHeaders,
    pub(super) v6_prefix: u8,
    pub(super) hasher: std::hash::RandomState,
    #[cfg(feature = "redis")]
    pub(super) redis: Option<super::redis::RedisBackend>,
}

impl RateLimitConfig {
    pub(super) fn fingerprint(&self, material: &super::key::Material<'_>) -> u64 {
        self.hasher.hash_one(material)
    }
}

impl RateLimitLayer {
    /// A limit of `quota` per [`KeyBy`] key. Refine it with the builder, then [`build`].
    ///
    /// [`build`]: RateLimitLayerBuilder::build
    pub fn builder(key_by: KeyBy, quota: Quota) -> RateLimitLayerBuilder {
        RateLimitLayerBuilder {
            name: None,
            key_by,
            quota,
            anonymous: None,
            cost: 1,
            headers: RateLimitHeaders::Draft,
            v6_prefix: 64,
            max_keys: 1_000_000,
            clock: None,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }

    /// How many keys the in-memory backend tracks now (for monitoring and tests).
    pub fn tracked_keys(&self) -> usize {
        let config = &self.config;
        config.authenticated.local.keys() + config.anonymous.as_ref().map_or(0, |l| l.local.keys())
    }

    /// Drops keys whose budget is full again (indistinguishable from new ones). Runs by itself
    /// when the map grows past its cap; call it from a timer to return memory sooner.
    pub fn prune(&self) {
        self.config.authenticated.local.prune();
        if let Some(anonymous) = &self.config.anonymous {
            anonymous.local.prune();
        }
    }
}

/// Configures a [`RateLimitLayer`].
#[must_use]
pub struct RateLimitLayerBuilder {
    name: Option<String>,
    key_by: KeyBy,
    quota: Quota,
    anonymous: Option<Quota>,
    cost: u32,
    headers: RateLimitHeaders,
    v6_prefix: u8,
    max_keys: usize,
    clock: Option<FakeRelativeClock>,
    #[cfg(feature = "redis")]
    redis: Option<super::redis::RedisBackend>,
}

impl RateLimitLayerBuilder {
    /// The policy name clients see in the `RateLimit` headers; letters, digits, `-`, `_`. By
    /// default it says what the limit counts by: `per-ip`, `per-subject`, `per-api-key`,
    /// `per-header`, `per-route`, `per-route-subject`, `per-route-ip` or `global`. Name each of
    /// two limits of the same kind, so clients can tell them apart.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A different quota for anonymous requests (no [`Identity`](crate::Identity)), counted by
    /// client address.
    pub fn anonymous(mut self, quota: Quota) -> Self {
        self.anonymous = Some(quota);
        self
    }

    /// How many units each request costs (default 1): an expensive route can cost more.
    pub fn cost(mut self, units: u32) -> Self {
        self.cost = units;
        self
    }

    /// Which headers describe the limit (default: the IETF draft's `RateLimit-Policy` and
    /// `RateLimit`).
    pub fn headers(mut self, headers: RateLimitHeaders) -> Self {
        self.headers = headers;
        self
    }

    /// IPv6 clients are counted per prefix of this length (default 64).
    pub fn ipv6_prefix(mut self, bits: u8) -> Self {
        self.v6_prefix = bits.min(128);
        self
    }

    /// Most keys tracked in memory (default 1 000 000). Past it, keys whose budget is full again
    /// are pruned (at most once a second); while all are active, new keys share 1 024 overflow
    /// budgets until room frees up. The map may overshoot the cap by one check interval (4 096
    /// keys) plus the overflow budgets.
    pub fn max_keys(mut self, keys: usize) -> Self {
        self.max_keys = keys;
        self
    }

    /// Drives the in-memory limiter with a clock you control, for tests (feature `test-util`).
    #[cfg(feature = "test-util")]
    pub fn clock(mut self, clock: FakeRelativeClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Keeps the counters in Redis, shared by every replica.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, backend: super::redis::RedisBackend) -> Self {
        self.redis = Some(backend);
        self
    }

    /// Checks the configuration and builds the layer.
    pub fn build(mut self) -> Result<RateLimitLayer, ConfigError> {
        let name = self
            .name
            .take()
            .unwrap_or_else(|| self.key_by.default_name().to_owned());
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ConfigError::new(
                "a rate limit name is 1-64 letters, digits, '-' or '_'",
            ));
        }
        let cost = std::num::NonZeroU32::new(self.cost)
            .ok_or_else(|| ConfigError::new("a request must cost at least one unit"))?;
        let limit = |quota: Quota, which: &str| -> Result<Limit, ConfigError> {
            quota.check()?;
            if self.cost > quota.burst_size() {
                return Err(ConfigError::new(
                    "a request costs more than the burst: it could never pass",
                ));
            }
            let policy = format!(
                "\"{}\";q={};w={}",
                name,
                quota.burst_size(),
                quota.window_secs()
            );
            let shared_name = format!(
                "{}:{which}:{}:{}",
                name,
                quota.emission_interval().as_micros(),
                quota.burst_size()
            );
            Ok(Limit {
                shared_name: shared_name.into(),
                quota,
                local: new_limiter(&quota, self.max_keys, self.clock.clone())?,
                policy_header: HeaderValue::from_str(&policy)
                    .map_err(|_| ConfigError::new("unusable rate limit name"))?,
            })
        };
        let authenticated = limit(self.quota, "all")?;
        let anonymous = self
            .anonymous
            .map(|quota| limit(quota, "anonymous"))
            .transpose()?;
        Ok(RateLimitLayer {
            config: Arc::new(RateLimitConfig {
                name: name.into(),
                key_by: self.key_by,
                authenticated,
                anonymous,
                cost,
                headers: self.headers,
                v6_prefix: self.v6_prefix,
                hasher: std::hash::RandomState::new(),
                #[cfg(feature = "redis")]
                redis: self.redis,
            }),
        })
    }
}

impl fmt::Debug for RateLimitLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("name", &self.name)
            .field("key_by", &self.key_by)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("name", &self.config.name)
            .field("key_by", &self.config.key_by)
            .field("quota", &self.config.authenticated.quota)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// Whether this limit counts by who the caller is (or by a value the caller chooses), so it
    /// belongs after authentication.
    pub(crate) fn counts_by_identity(&self) -> bool {
        matches!(
            self.config.key_by,
            KeyBy::Subject | KeyBy::ApiKeyId | KeyBy::RouteAndSubject | KeyBy::Header(_)
        )
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        crate::guard::Guard::new(inner, self.clone())
    }
}
