//! A `jti` deny list shared by every replica through Redis, and checked without a round trip.
//!
//! Written here rather than taken from a crate: no maintained crate keeps a bounded local mirror
//! of a Redis set current through notifications and periodic resynchronisation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::ApiKeyDenyList;
use super::deny::{InMemoryDenyList, JtiDenyList};
use crate::error::ConfigError;

/// Revoked tokens by `jti`, and revoked API keys by id, shared by every replica of a service
/// through Redis (feature `redis`).
///
/// Each replica keeps a mirror in memory ([`InMemoryDenyList`], bounded, each entry kept until
/// its token expires): [`is_denied`](JtiDenyList::is_denied) is a local lookup, never a network
/// round trip. [`deny`](Self::deny) on any replica adds the revocation to the mirror at once,
/// stores it in a Redis sorted set (scored by the token's expiry, so Redis drops it when the
/// token could not be used anyway) and announces it on a channel; every replica subscribed to
/// the channel adds it within the time a message takes. A lost message, a replica that was
/// restarting, or a Redis that lost its data are repaired by a full resynchronisation every
/// [`resync_interval`](RedisDenyListBuilder::resync_interval) (default 10 s) and after every
/// reconnection, which compares the number of current revocations in Redis with the mirror's
/// (reading them all only when they differ) and writes back what the mirror holds and Redis
/// lost. A full mirror is logged as an error: revoked tokens beyond `max_entries` are not
/// refused on that replica.
///
/// ```no_run
/// use std::time::{Duration, SystemTime};
/// use portcullis::auth::{JwtAuthenticator, RedisDenyList};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let revoked = RedisDenyList::builder("redis://127.0.0.1:6379/")
///     .prefix("items-api")
///     .build()
///     .await?;
/// // The authenticator checks the mirror; keep a clone to revoke with.
/// # let builder = JwtAuthenticator::builder();
/// let jwt = builder.deny_list(revoked.clone());
/// revoked
///     .deny(Some("https://issuer.example"), "token-id", SystemTime::now() + Duration::from_secs(600))
///     .await?;
/// # let _ = jwt;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisDenyList {
    inner: Arc<Inner>,
}

struct Inner {
    mirror: InMemoryDenyList,
    client: redis::Client,
    connection: ConnectionManager,
    /// The sorted set of revocations: member `[iss, jti]` as JSON, score the expiry (Unix s).
    key: String,
    /// Where new revocations are announced (the same member, then a space and the expiry).
    channel: String,
    resync_interval: Duration,
    /// Full resynchronisations done (for monitoring and tests).
    resyncs: AtomicU64,
}

/// Configures a [`RedisDenyList`].
#[must_use]
pub struct RedisDenyListBuilder {
    url: String,
    prefix: String,
    max_entries: usize,
    resync_interval: Duration,
}

impl RedisDenyList {
    /// A list kept in the Redis at `url` (`redis://host:port/db`).
    pub fn builder(url: impl Into<String>) -> RedisDenyListBuilder {
        RedisDenyListBuilder {
            url: url.into(),
            prefix: "portcullis".to_owned(),
            max_entries: 1_000_000,
            resync_interval: Duration::from_secs(10),
        }
    }

    /// Revokes the token `jti` of `issuer` until `expires_at` (its `exp`): at once on this
    /// replica, and on the others as soon as they hear of it.
    pub async fn deny(
        &self,
        issuer: Option<&str>,
        jti: &str,
        expires_at: SystemTime,
    ) -> Result<(), RevokeError> {
        if !self.inner.mirror.deny(issuer, jti, expires_at) {
            return Err(RevokeError::Full);
        }
        let member = member(issuer, jti);
        let score = unix_seconds(expires_at);
        let mut connection = self.inner.connection.clone();
        let shared = async {
            let _: () = connection.zadd(&self.inner.key, &member, score).await?;
            let _: () = connection
                .publish(&self.inner.channel, format!("{member} {score}"))
                .await?;
            Ok::<_, redis::RedisError>(())
        };
        match tokio::time::timeout(Duration::from_secs(2), shared).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(RevokeError::NotShared(error.to_string())),
            Err(_) => Err(RevokeError::NotShared(
                "Redis did not answer within 2 s".to_owned(),
            )),
        }
    }

    /// Revokes the API key with this id, for good, on every replica (see
    /// [`ApiKeyAuthenticator::deny_list`](super::ApiKeyAuthenticator::deny_list)).
    pub async fn revoke_api_key(&self, id: &str) -> Result<(), RevokeError> {
        self.deny(Some(API_KEYS), id, far_future()).await
    }

    /// Revocations held in this replica's mirror (expired ones until they are pruned).
    pub fn len(&self) -> usize {
        self.inner.mirror.len()
    }

    /// Whether the mirror holds none.
    pub fn is_empty(&self) -> bool {
        self.inner.mirror.is_empty()
    }

    /// Full resynchronisations with Redis so far.
    pub fn resyncs(&self) -> u64 {
        self.inner.resyncs.load(Ordering::Relaxed)
    }
}

/// Why [`RedisDenyList::deny`] did not fully succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeError {
    /// The mirror is full of unexpired revocations: nothing was revoked (raise
    /// [`max_entries`](RedisDenyListBuilder::max_entries)).
    Full,
    /// Revoked on this replica only, for now: Redis did not take it (the reason is given). The
    /// next resynchronisation after Redis answers again writes it back and so shares it.
    NotShared(String),
}

impl fmt::Display for RevokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("the revocation list is full of unexpired entries"),
            Self::NotShared(why) => write!(f, "revoked on this replica only, for now: {why}"),
        }
    }
}

impl std::error::Error for RevokeError {}

impl JtiDenyList for RedisDenyList {
    fn is_denied(&self, issuer: Option<&str>, jti: &str) -> bool {
        self.inner.mirror.is_denied(issuer, jti)
    }
}

impl ApiKeyDenyList for RedisDenyList {
    fn is_revoked(&self, id: &str) -> bool {
        self.inner.mirror.is_denied(Some(API_KEYS), id)
    }
}

/// The issuer under which revoked API key ids are kept: no token names it (a token that did
/// would only get itself refused).
const API_KEYS: &str = "\u{0}portcullis:api-key";

/// API key revocations do not expire: the year 9999, within what a Redis score holds exactly.
fn far_future() -> SystemTime {
    from_unix(253_402_300_799)
}

impl fmt::Debug for RedisDenyList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDenyList")
            .field("key", &self.inner.key)
            .field("entries", &self.len())
            .finish_non_exhaustive()
    }
}

impl RedisDenyListBuilder {
    /// Prefix of the Redis keys (default `portcullis`), to share one Redis between services.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// Most unexpired revocations held (default 1 000 000); past it, revoking fails rather than
    /// forgetting one.
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries;
        self
    }

    /// How often the mirror is compared with Redis in full (default 10 s; at least 100 ms).
    pub fn resync_interval(mut self, interval: Duration) -> Self {
        self.resync_interval = interval.max(Duration::from_millis(100));
        self
    }

    /// Connects, loads every current revocation and starts keeping the mirror current. Fails
    /// when Redis cannot be reached now: a replica must not start without the revocations.
    pub async fn build(self) -> Result<RedisDenyList, ConfigError> {
        let client = redis::Client::open(self.url.as_str())
            .map_err(|_| ConfigError::new("not a valid Redis URL"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(5)));
        let connection = tokio::time::timeout(
            Duration::from_secs(3),
            client.get_connection_manager_with_config(config),
        )
        .await
        .map_err(|_| ConfigError::new("Redis did not answer within 3 s"))?
        .map_err(|error| ConfigError::new(format!("cannot connect to Redis: {error}")))?;
        let inner = Arc::new(Inner {
            mirror: InMemoryDenyList::new(self.max_entries),
            client,
            connection,
            key: format!("{}:revoked-jti", self.prefix),
            channel: format!("{}:revoked-jti:announced", self.prefix),
            resync_interval: self.resync_interval,
            resyncs: AtomicU64::new(0),
        });
        inner
            .resync()
            .await
            .map_err(|error| ConfigError::new(format!("cannot load the revocations: {error}")))?;
        tokio::spawn(keep_current(Arc::downgrade(&inner)));
        Ok(RedisDenyList { inner })
    }
}

impl fmt::Debug for RedisDenyListBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDenyListBuilder")
            .field("prefix", &self.prefix)
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

/// Entries read from Redis per call of a resynchronisation.
const PAGE: isize = 10_000;

impl Inner {
    /// Drops expired revocations from Redis, adds every current one to the mirror, and writes
    /// back what the mirror holds and Redis lost (a restart without persistence).
    async fn resync(&self) -> Result<(), redis::RedisError> {
        let mut connection = self.connection.clone();
        let now = unix_seconds(SystemTime::now());
        let _: () = connection
            .zrembyscore(&self.key, "-inf", now.saturating_sub(1))
            .await?;
        let in_redis: usize = connection.zcount(&self.key, now, "+inf").await?;
        if in_redis == self.mirror.unexpired_count() && self.resyncs.load(Ordering::Relaxed) > 0 {
            // As many as the mirror holds: in step (compared by number, not read in full).
            self.resyncs.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let mut offset = 0;
        let mut seen = 0usize;
        let mut refused = 0usize;
        loop {
            let page: Vec<(String, u64)> = redis::cmd("ZRANGE")
                .arg(&self.key)
                .arg(now)
                .arg("+inf")
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(offset)
                .arg(PAGE)
                .arg("WITHSCORES")
                .query_async(&mut connection)
                .await?;
            for (member, expiry) in &page {
                if let Some((issuer, jti)) = parse_member(member)
                    && !self
                        .mirror
                        .deny(issuer.as_deref(), &jti, from_unix(*expiry))
                {
                    refused += 1;
                }
            }
            seen += page.len();
            if page.len() < PAGE as usize {
                break;
            }
            offset += PAGE;
        }
        if refused > 0 {
            tracing::error!(
                target: "portcullis::auth",
                refused,
                "the revocation mirror is full: these revoked tokens are not refused here; \
                 raise max_entries"
            );
        }
        let held = self.mirror.unexpired();
        if held.len() > seen {
            // Redis lost revocations this replica still knows: write them back.
            for (issuer, jti, expiry) in held {
                let _: () = connection
                    .zadd(
                        &self.key,
                        member(issuer.as_deref(), &jti),
                        unix_seconds(expiry),
                    )
                    .await?;
            }
        }
        self.resyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn apply(&self, message: &str) {
        let Some((member, expiry)) = message.rsplit_once(' ') else {
            return;
        };
        let (Some((issuer, jti)), Ok(expiry)) = (parse_member(member), expiry.parse::<u64>())
        else {
            return;
        };
        if !self.mirror.deny(issuer.as_deref(), &jti, from_unix(expiry)) {
            tracing::error!(
                target: "portcullis::auth",
                "the revocation mirror is full: a revoked token is not refused here; raise \
                 max_entries"
            );
        }
    }
}

/// Listens for announcements and resynchronises periodically and after every reconnection,
/// until the list is dropped.
async fn keep_current(list: Weak<Inner>) {
    loop {
        let Some(inner) = list.upgrade() else { return };
        let (client, channel, interval) = (
            inner.client.clone(),
            inner.channel.clone(),
            inner.resync_interval,
        );
        drop(inner);
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let mut pubsub = match tokio::time::timeout(Duration::from_secs(3), subscribed).await {
            Ok(Ok(pubsub)) => pubsub,
            _ => {
                tracing::warn!(
                    target: "portcullis::auth",
                    "cannot subscribe to revocations in Redis; retrying"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Whatever was announced while not subscribed.
        match list.upgrade() {
            Some(inner) => {
                let _ = inner.resync().await;
            }
            None => return,
        }
        let mut messages = pubsub.on_message();
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { break };
                    let Some(inner) = list.upgrade() else { return };
                    if let Ok(text) = message.get_payload::<String>() {
                        inner.apply(&text);
                    }
                }
                _ = ticker.tick() => {
                    let Some(inner) = list.upgrade() else { return };
                    if let Err(error) = inner.resync().await {
                        tracing::warn!(
                            target: "portcullis::auth",
                            %error,
                            "cannot resynchronise revocations with Redis"
                        );
                    }
                }
            }
        }
        // The subscription ended: Redis went away. Subscribe again, then resynchronise.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `[iss, jti]` as JSON: unambiguous whatever the strings hold.
fn member(issuer: Option<&str>, jti: &str) -> String {
    serde_json::to_string(&(issuer, jti)).unwrap_or_default()
}

fn parse_member(member: &str) -> Option<(Option<String>, String)> {
    serde_json::from_str(member).ok()
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn from_unix(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}
