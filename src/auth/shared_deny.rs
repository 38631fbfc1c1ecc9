//! A `jti` deny list shared by every replica through Redis, and checked without a round trip.
//!
//! Written here rather than taken from a crate: no maintained crate keeps a bounded local mirror
//! of a Redis set current through notifications and periodic resynchronisation.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::ApiKeyDenyList;
use super::deny::{InMemoryDenyList, JtiDenyList, MARGIN};
use crate::error::ConfigError;

/// Revoked tokens by `jti`, and revoked API keys by id, shared by every replica of a service
/// through Redis (feature `redis`).
///
/// Each replica keeps a mirror in memory ([`InMemoryDenyList`], bounded, each entry kept until
/// its token expires, plus five minutes of leeway): [`is_denied`](JtiDenyList::is_denied) is a
/// local lookup, never a network round trip. [`deny`](Self::deny) on any replica adds the
/// revocation to the mirror at once and, in one Redis script, stores it in a sorted set
/// (scored by the token's expiry, so Redis drops it when the token could not be used anyway),
/// counts it (a version number) and announces it with that version; every replica subscribed
/// to the announcements adds it within the time a message takes.
///
/// Every [`resync_interval`](RedisDenyListBuilder::resync_interval) (default 10 s) and after
/// every reconnection a replica compares the version in Redis with the last one it has: equal,
/// it is in step (one `GET`); a version it skipped (a lost announcement, a replica that was
/// away) makes it read every current revocation; a version lower than its own (Redis restarted
/// without its data) makes it write back every revocation it knows first. Revocations Redis did
/// not take ([`RevokeError::NotShared`]) are retried at every resynchronisation. A full mirror
/// is logged as an error: revocations beyond `max_entries` are not refused on that replica.
/// Redis itself is trusted: whoever can write to it can add or remove revocations.
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
    /// Counts the revocations ever added: every replica knows from it whether it missed one.
    version_key: String,
    /// Where new revocations are announced: `<version> <score> <member>`.
    channel: String,
    resync_interval: Duration,
    /// Revocations Redis did not take yet: (member, score).
    pending: Mutex<Vec<(String, u64)>>,
    add: Script,
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

    /// Revokes the token `jti` of `issuer` until `expires_at` (its `exp`; the revocation is kept
    /// five minutes longer, past any leeway a verifier allows): at once on this replica, and on
    /// the others as soon as they hear of it.
    pub async fn deny(
        &self,
        issuer: Option<&str>,
        jti: &str,
        expires_at: SystemTime,
    ) -> Result<(), RevokeError> {
        if !self.inner.mirror.deny(issuer, jti, expires_at) {
            return Err(RevokeError::Full);
        }
        let entry = (member(issuer, jti), score(expires_at));
        match self.inner.share(&entry).await {
            Ok(()) => Ok(()),
            Err(why) => {
                // Retried by every resynchronisation until Redis takes it.
                self.inner
                    .pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(entry);
                Err(RevokeError::NotShared(why))
            }
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
    /// Revoked on this replica only, for now: Redis did not take it (the reason is given). Every
    /// resynchronisation tries again until Redis takes it, and so shares it.
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

/// API key revocations do not expire: the year 9999 (less the margin every revocation gets).
fn far_future() -> SystemTime {
    from_unix(MAX_SCORE - MARGIN.as_secs())
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
            version_key: format!("{}:revoked-jti:version", self.prefix),
            channel: format!("{}:revoked-jti:announced", self.prefix),
            resync_interval: self.resync_interval,
            pending: Mutex::new(Vec::new()),
            add: Script::new(ADD),
            resyncs: AtomicU64::new(0),
        });
        let mut sync = Sync::default();
        inner
            .resync(&mut sync)
            .await
            .map_err(|error| ConfigError::new(format!("cannot load the revocations: {error}")))?;
        tokio::spawn(keep_current(Arc::downgrade(&inner), sync));
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

/// Entries asked for per call of a resynchronisation (a hint to `ZSCAN`), and written back per
/// round trip.
const PAGE: usize = 10_000;
/// Longest member read from Redis or an announcement; longer ones are not revocations this list
/// wrote.
const MAX_MEMBER: usize = 4096;
/// The largest score kept (the year 9999): Redis scores are doubles, exact up to 2^53.
const MAX_SCORE: u64 = 253_402_300_799;

/// Adds a revocation, counts it and announces it, in one step, so that the announcements carry
/// consecutive versions in the order the set changed.
const ADD: &str = r"
local version = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PUBLISH', ARGV[3], version .. ' ' .. ARGV[2] .. ' ' .. ARGV[1])
return version
";

/// What the keeping task knows of Redis.
#[derive(Default)]
struct Sync {
    /// Every revocation up to this version is in the mirror.
    version: u64,
    /// An announcement was missed (its version skipped): read everything at the next chance.
    behind: bool,
}

impl Inner {
    /// Stores, counts and announces one revocation.
    async fn share(&self, (member, score): &(String, u64)) -> Result<(), String> {
        let mut connection = self.connection.clone();
        let mut invocation = self.add.key(&self.key);
        invocation
            .key(&self.version_key)
            .arg(member)
            .arg(*score)
            .arg(&self.channel);
        let shared = invocation.invoke_async::<u64>(&mut connection);
        match tokio::time::timeout(Duration::from_secs(2), shared).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("Redis did not answer within 2 s".to_owned()),
        }
    }

    /// Brings the mirror and Redis in step: retries what Redis did not take, writes back what
    /// it lost (a restart without persistence shows as a version lower than the mirror's), and
    /// reads every current revocation when an announcement was missed. In step, it costs one
    /// `GET` (and the pruning of expired entries).
    async fn resync(&self, sync: &mut Sync) -> Result<(), redis::RedisError> {
        let pending =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        for (index, entry) in pending.iter().enumerate() {
            if self.share(entry).await.is_err() {
                self.pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(pending[index..].iter().cloned());
                break;
            }
        }
        let mut connection = self.connection.clone();
        let now = unix_seconds(SystemTime::now());
        let _: () = connection
            .zrembyscore(&self.key, "-inf", now.saturating_sub(1))
            .await?;
        let version: Option<u64> = connection.get(&self.version_key).await?;
        let version = version.unwrap_or(0);
        if version < sync.version {
            // Redis lost what it held: write back every revocation this replica knows.
            let held = self.mirror.unexpired();
            for chunk in held.chunks(PAGE) {
                let mut pipe = redis::pipe();
                for (issuer, jti, until) in chunk {
                    // The mirror's expiry already has its margin.
                    pipe.zadd(
                        &self.key,
                        member(issuer.as_deref(), jti),
                        unix_seconds(*until),
                    )
                    .ignore();
                }
                let _: () = pipe.query_async(&mut connection).await?;
            }
            tracing::warn!(
                target: "portcullis::auth",
                revocations = held.len(),
                "Redis lost the revocations; written back"
            );
            sync.behind = true;
        }
        if version == sync.version && !sync.behind && self.resyncs.load(Ordering::Relaxed) > 0 {
            self.resyncs.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        // Everything up to `version` is in the set now: read it all.
        let version: Option<u64> = connection.get(&self.version_key).await?;
        let version = version.unwrap_or(0);
        // ZSCAN, not pages by offset: an entry present for the whole scan is always seen,
        // whatever is added or removed meanwhile (at worst some are seen twice).
        let mut cursor = 0u64;
        let mut refused = 0usize;
        loop {
            let (next, page): (u64, Vec<(String, f64)>) = redis::cmd("ZSCAN")
                .arg(&self.key)
                .arg(cursor)
                .arg("COUNT")
                .arg(PAGE)
                .query_async(&mut connection)
                .await?;
            for (member, score) in &page {
                if *score < now as f64 {
                    continue;
                }
                if let Some((issuer, jti, until)) = read_entry(member, *score)
                    && !self.mirror.deny(issuer.as_deref(), &jti, until)
                {
                    refused += 1;
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if refused > 0 {
            tracing::error!(
                target: "portcullis::auth",
                refused,
                "the revocation mirror is full: these revoked tokens are not refused here; \
                 raise max_entries"
            );
        }
        sync.version = version;
        sync.behind = false;
        self.resyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// One announcement: `<version> <score> <member>`.
    fn apply(&self, message: &str, sync: &mut Sync) {
        let mut parts = message.splitn(3, ' ');
        let (Some(Ok(version)), Some(Ok(score)), Some(member)) = (
            parts.next().map(str::parse::<u64>),
            parts.next().map(str::parse::<f64>),
            parts.next(),
        ) else {
            return;
        };
        if version <= sync.version {
            return; // read already
        }
        if version > sync.version + 1 {
            sync.behind = true;
        }
        sync.version = version;
        let Some((issuer, jti, until)) = read_entry(member, score) else {
            return;
        };
        if !self.mirror.deny(issuer.as_deref(), &jti, until) {
            tracing::error!(
                target: "portcullis::auth",
                "the revocation mirror is full: a revoked token is not refused here; raise \
                 max_entries"
            );
        }
    }
}

/// A revocation as Redis holds it, back as the mirror's (without the margin the score carries,
/// which the mirror adds itself); `None` for what this list did not write.
fn read_entry(member: &str, score: f64) -> Option<(Option<String>, String, SystemTime)> {
    if member.len() > MAX_MEMBER || !score.is_finite() || score < 0.0 {
        return None;
    }
    let (issuer, jti) = parse_member(member)?;
    // Saturating float-to-integer conversion, then bounded.
    let seconds = (score as u64).min(MAX_SCORE);
    let until = from_unix(seconds).checked_sub(MARGIN).unwrap_or(UNIX_EPOCH);
    Some((issuer, jti, until))
}

/// The score of a revocation: its expiry with the margin, in Unix seconds, bounded.
fn score(expires_at: SystemTime) -> u64 {
    unix_seconds(expires_at.checked_add(MARGIN).unwrap_or(expires_at)).min(MAX_SCORE)
}

/// Listens for announcements and resynchronises periodically and after every reconnection,
/// until the list is dropped.
async fn keep_current(list: Weak<Inner>, mut sync: Sync) {
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
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Whatever was announced while not subscribed.
        match list.upgrade() {
            Some(inner) => {
                sync.behind = true;
                let _ = inner.resync(&mut sync).await;
            }
            None => return,
        }
        let mut messages = pubsub.on_message();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { break };
                    let Some(inner) = list.upgrade() else { return };
                    if let Ok(text) = message.get_payload::<String>() {
                        inner.apply(&text, &mut sync);
                    }
                }
                _ = ticker.tick() => {
                    let Some(inner) = list.upgrade() else { return };
                    if let Err(error) = inner.resync(&mut sync).await {
                        tracing::debug!(
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
    UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds.min(MAX_SCORE)))
        .unwrap_or(UNIX_EPOCH)
}
