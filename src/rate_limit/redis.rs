//! The Redis backend: the same GCRA decision, made atomically on the server, shared by replicas.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};
use sha2::{Digest, Sha256};

use super::LimitCheck;
use super::Quota;
use super::local::LocalLimiter;
use super::lockout::LockoutConfig;
use crate::error::ConfigError;

/// GCRA in one round trip, taking up to `want` requests' worth (at least `cost`): the first
/// value is what was granted (0: refused). With `want == cost` this is the plain GCRA decision.
/// Times are microseconds from the Redis server's own clock, so replicas with skewed clocks
/// still agree. The key expires when its bucket would be full again, so Redis memory holds only
/// active keys.
const GCRA: &str = r"
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tau = emission * burst
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local available = math.floor((tau - (tat - now)) / emission)
if available < cost then
  return {0, 0, tat + emission * cost - tau - now, tat - now}
end
local take = math.min(want, available)
local new_tat = tat + emission * take
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {take, available - take, 0, new_tat - now}
";

/// Counts one failed authentication; locks out at the threshold. Returns the lockout in ms (0 if
/// none started). KEYS: failures, lock, level (one hash slot by the `{...}` tag).
const RECORD_FAILURE: &str = r"
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if failures < tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
local level = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
local lock = tonumber(ARGV[3]) * (2 ^ (level - 1))
if lock > tonumber(ARGV[4]) then lock = tonumber(ARGV[4]) end
redis.call('SET', KEYS[2], 1, 'PX', math.floor(lock))
return math.floor(lock)
";

/// What to do when Redis cannot answer in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedisFailure {
    /// Let the request through (availability first).
    FailOpen,
    /// Refuse it with 429 and `Retry-After: 1` (protection first; never a 5xx).
    FailClosed,
    /// Decide with this replica's own in-memory limiter until Redis is back (the default): each
    /// replica then enforces the quota alone, which bounds the total by replicas × quota.
    #[default]
    FallbackToLocal,
}

/// A Redis connection for [`RateLimitLayer`](super::RateLimitLayer) and
/// [`LockoutLayer`](super::LockoutLayer) (feature `redis`).
///
/// One server ([`connect`](Self::connect)) or a Redis Cluster
/// ([`connect_cluster`](Self::connect_cluster)). The connection is made lazily and re-made after
/// failures (redis-rs `ConnectionManager`, or its cluster client); the
/// Lua scripts are sent by SHA (`EVALSHA`) and loaded again when the server answers `NOSCRIPT`
/// (after a restart or `SCRIPT FLUSH`). Every call has a deadline (default 50 ms); past it the
/// [`RedisFailure`] policy decides. An outage is logged once when it starts (a warning naming
/// the policy) and once when Redis answers again, not once per request; a flapping Redis logs
/// at most one outage every ten seconds.
///
/// ```no_run
/// use portcullis::rate_limit::{KeyBy, Quota, RateLimitLayer, RedisBackend, RedisFailure};
///
/// # async fn run() -> Result<(), portcullis::ConfigError> {
/// let redis = RedisBackend::connect("redis://127.0.0.1:6379/")
///     .await?
///     .prefix("items-api")
///     .on_failure(RedisFailure::FallbackToLocal);
/// let limit = RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_second(10))
///     .redis(redis)
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    connection: Connection,
    gcra: Arc<Script>,
    record_failure: Arc<Script>,
    prefix: Arc<str>,
    timeout: Duration,
    on_failure: RedisFailure,
    /// Redis is failing now.
    failing: Arc<AtomicBool>,
    /// When (Unix seconds) an outage was last logged, and whether the current one was: a
    /// flapping Redis logs at most one outage (and its end) every ten seconds.
    outage_logged_at: Arc<AtomicU64>,
    outage_logged: Arc<AtomicBool>,
    /// Requests' worth taken from Redis at once (1: every request asks Redis).
    batch: u32,
    /// What this replica holds of each client's quota, when `batch > 1`.
    grants: Arc<Grants>,
}

/// This replica's grants, by client fingerprint and limit name.
type Grants = moka::sync::Cache<(u64, Arc<str>), Arc<Mutex<Grant>>>;

/// Part of one client's shared quota, granted to this replica by Redis and spent here.
#[derive(Debug)]
struct Grant {
    /// Requests' worth left.
    left: u32,
    /// After this the rest lapses: a grant lives as long as the quota takes to regenerate it
    /// (at least [`MIN_GRANT_LIFE`]), so a replica's headers and holdings stay fresh.
    expires: Instant,
    /// What Redis had left for everyone else at the last grant.
    shared_remaining: u32,
    /// When the bucket in Redis was to be full again, as of the last grant.
    reset_at: Instant,
    /// A request for a batch is in flight (from a request or in the background): at most one
    /// per client, so a replica never holds more than the rest of one batch and a new one.
    fetching: bool,
    /// No request for a batch before this (set after one failed or was refused).
    quiet_until: Instant,
}

impl Grant {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            left: 0,
            expires: now,
            shared_remaining: 0,
            reset_at: now,
            fetching: false,
            quiet_until: now,
        }
    }

    /// What is left now: nothing once lapsed.
    fn live(&mut self, now: Instant) -> u32 {
        if self.expires <= now {
            self.left = 0;
        }
        self.left
    }

    /// Adds `taken` (after a lapse, in place of what was left), which then lapses when the quota
    /// would have regenerated it.
    fn add(&mut self, quota: Quota, taken: u32, shared_remaining: i64, reset_us: i64) {
        let now = Instant::now();
        self.left = self.live(now).saturating_add(taken);
        self.expires = now
            + quota
                .emission_interval()
                .saturating_mul(self.left.max(1))
                .max(MIN_GRANT_LIFE);
        self.shared_remaining = u32::try_from(shared_remaining.max(0)).unwrap_or(u32::MAX);
        self.reset_at = now + Duration::from_micros(reset_us.max(0).unsigned_abs());
    }

    /// The `RateLimit` numbers as this replica sees them: what Redis had left at the last
    /// grant plus what is held here, never more than the burst.
    fn outcome(&self, quota: Quota, now: Instant) -> LimitCheck {
        LimitCheck {
            allowed: true,
            known: true,
            limit: quota.burst_size(),
            remaining: self
                .shared_remaining
                .saturating_add(self.left)
                .min(quota.burst_size()),
            reset: self.reset_at.saturating_duration_since(now),
            retry_after: Duration::ZERO,
        }
    }
}

/// A request's claim on its client's grant while it asks Redis. Unless the request spent what
/// it reserved, dropping the claim gives the reserved part back and ends the fetch: after a
/// refusal, a Redis failure, or the request being dropped while Redis answers (the client went
/// away, a timeout further out), so that the client keeps getting batches.
struct Pending {
    /// Taken once the reserved part is spent.
    grant: Option<Arc<Mutex<Grant>>>,
    reserved: u32,
    fetch: bool,
    /// Redis did not answer in time.
    failed: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(grant) = self.grant.take() {
            let mut held = grant.lock().unwrap_or_else(PoisonError::into_inner);
            if self.fetch {
                held.fetching = false;
            }
            if self.failed {
                held.quiet_until = Instant::now() + QUIET_AFTER_FAILURE;
            }
            held.left = held.live(Instant::now()).saturating_add(self.reserved);
        }
    }
}

/// A grant lives at least this long, however fast the quota regenerates: what a replica may
/// hold is bounded by the batch anyway, and this keeps grants of fast quotas useful.
const MIN_GRANT_LIFE: Duration = Duration::from_secs(1);

/// A client's grant is forgotten after this long without a request (what it held is then lost
/// to the client, never given to anyone else); grants of quotas slower than this seldom last.
const GRANT_IDLE: Duration = Duration::from_secs(600);

/// After a request for a batch failed (or Redis refused one in the background), the next one
/// waits this long.
const QUIET_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The most clients whose grants one replica keeps. Past about this many, clients are checked
/// one request at a time: a grant the cache would not keep would waste the batch it took.
const MAX_GRANTS: u64 = 100_000;

impl RedisBackend {
    /// Prepares a connection to `url` (`redis://host:port/db`, `rediss://` for TLS). Nothing is
    /// sent yet: a Redis that is down at start-up is handled like one that goes down later.
    pub async fn connect(url: &str) -> Result<Self, ConfigError> {
        let client =
            redis::Client::open(url).map_err(|_| ConfigError::new("not a valid Redis URL"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(250)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|_| ConfigError::new("cannot set up the Redis connection"))?;
        Ok(Self::with(Connection::Single(connection)).await)
    }

    /// Prepares a connection to a Redis Cluster from some of its nodes (`redis://host:port`).
    /// Every key of one client shares a hash slot (the `{...}` tag), so each script runs on one
    /// node; the cluster client follows slot moves and reconnects by itself.
    pub async fn connect_cluster<I: IntoIterator<Item = T>, T: AsRef<str>>(
        nodes: I,
    ) -> Result<Self, ConfigError> {
        let nodes: Vec<String> = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        if nodes.is_empty() {
            return Err(ConfigError::new(
                "a Redis Cluster needs at least one node URL",
            ));
        }
        let client = ClusterClient::builder(nodes)
            .connection_timeout(Duration::from_millis(250))
            .response_timeout(Duration::from_secs(1))
            .retries(1)
            .build()
            .map_err(|_| ConfigError::new("not valid Redis Cluster node URLs"))?;
        let connection = client.get_pending_async_connection_with_config(ClusterConfig::default());
        Ok(Self::with(Connection::Cluster(connection)).await)
    }

    async fn with(connection: Connection) -> Self {
        let backend = Self {
            connection,
            gcra: Arc::new(Script::new(GCRA)),
            record_failure: Arc::new(Script::new(RECORD_FAILURE)),
            prefix: "portcullis".into(),
            timeout: Duration::from_millis(50),
            on_failure: RedisFailure::default(),
            failing: Arc::new(AtomicBool::new(false)),
            outage_logged_at: Arc::new(AtomicU64::new(0)),
            outage_logged: Arc::new(AtomicBool::new(false)),
            batch: 1,
            grants: Arc::new(
                moka::sync::Cache::builder()
                    .max_capacity(MAX_GRANTS)
                    .time_to_idle(GRANT_IDLE)
                    .build(),
            ),
        };
        backend.warm_up().await;
        backend
    }

    /// Connects and loads the scripts now, so the first requests do not pay for it; a Redis
    /// that is down is only reported.
    async fn warm_up(&self) {
        let mut connection = self.connection.clone();
        let gcra = self.gcra.clone();
        let record = self.record_failure.clone();
        let load = async move {
            gcra.load_async(&mut connection).await?;
            record.load_async(&mut connection).await
        };
        match tokio::time::timeout(Duration::from_millis(500), load).await {
            Ok(Ok(_)) => self.answered(),
            Ok(Err(error)) => self.warn("connection", &error),
            Err(elapsed) => self.warn("connection", &elapsed),
        }
    }

    /// Prefix of every key (default `portcullis`), to share a Redis between services.
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Deadline of one call (default 50 ms). The connection's own response timeout (1 s) is a
    /// backstop for calls without a deadline, so a longer setting is cut at 1 s.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Takes up to `requests` requests' worth of a client's quota from Redis at once (default 1:
    /// every request asks Redis) and admits from it here, asking for the next batch in the
    /// background once half is spent: most requests then make no round trip.
    ///
    /// The replicas still share one quota (a replica admits only what Redis granted it), with
    /// two costs, both bounded by the batch: a replica may hold up to one and a half batches
    /// of a client's quota unspent while another replica refuses that client (one batch is
    /// asked for at a time per client), and a burst may exceed the quota by what each replica
    /// held from an earlier grant (an unspent grant lapses once the quota would have
    /// regenerated what it holds, counted from its last top-up, after one second at least, and
    /// is forgotten after ten minutes without a request). The `RateLimit` headers count what Redis had
    /// left at the replica's last grant plus its unspent part, at most the burst. A batch
    /// larger than a quota's burst takes at most the burst; with a request cost of a batch or
    /// more, or while a replica already holds grants for 100 000 clients, requests are checked
    /// one at a time.
    #[must_use]
    pub fn batch(mut self, requests: u32) -> Self {
        self.batch = requests.max(1);
        self
    }

    /// What to do when Redis does not answer in time (default [`RedisFailure::FallbackToLocal`]).
    #[must_use]
    pub fn on_failure(mut self, policy: RedisFailure) -> Self {
        self.on_failure = policy;
        self
    }

    /// `prefix:{id}:kind`: the `{id}` hash tag keeps all keys of one client in one cluster slot,
    /// and the id is a digest, so client-chosen text never reaches Redis key syntax.
    fn key(&self, material: &str, kind: &str) -> String {
        let digest = Sha256::digest(material.as_bytes());
        let id: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:{{{id}}}:{kind}", self.prefix)
    }

    /// Sends `PING` and waits at most `within` for the answer: a start-up check, so that a
    /// service can refuse to start (or say so) when its Redis cannot be reached. The layers
    /// never need it: they apply the [`RedisFailure`] policy while Redis is down.
    pub async fn ping(&self, within: Duration) -> Result<(), ConfigError> {
        let mut connection = self.connection.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        match tokio::time::timeout(within, ping).await {
            Ok(Ok(_)) => {
                self.answered();
                Ok(())
            }
            Ok(Err(error)) => Err(ConfigError::new(format!("Redis does not answer: {error}"))),
            Err(_) => Err(ConfigError::new(format!(
                "Redis does not answer within {within:?}"
            ))),
        }
    }

    /// Logs the start of an outage, once (the recovery is logged by [`answered`](Self::answered)).
    fn warn(&self, what: &str, error: &dyn fmt::Display) {
        if self.failing.swap(true, Ordering::Relaxed) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.outage_logged_at.load(Ordering::Relaxed);
        let logged = now.saturating_sub(last) >= 10
            && self
                .outage_logged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        self.outage_logged.store(logged, Ordering::Relaxed);
        if logged {
            tracing::warn!(
                target: "portcullis::rate_limit",
                policy = ?self.on_failure,
                error = %error,
                "Redis {what} failed; the failure policy applies until it is back"
            );
        }
    }

    /// Redis answered: logs the end of an outage, once.
    fn answered(&self) {
        if self.failing.load(Ordering::Relaxed)
            && self.failing.swap(false, Ordering::Relaxed)
            && self.outage_logged.swap(false, Ordering::Relaxed)
        {
            tracing::info!(target: "portcullis::rate_limit", "Redis answers again");
        }
    }

    /// Spends from this replica's grant for the client, without a round trip, when it holds
    /// enough (and asks for the next batch in the background once half is spent). `None`: ask
    /// Redis with [`check`](Self::check).
    pub(super) fn take_granted(
        &self,
        material: &dyn Fn() -> String,
        name: &Arc<str>,
        quota: Quota,
        cost: NonZeroU32,
        local_key: u64,
    ) -> Option<LimitCheck> {
        if self.batch <= 1 {
            return None;
        }
        let grant = self.grants.get(&(local_key, name.clone()))?;
        let now = Instant::now();
        let (outcome, refill) = {
            let mut held = grant.lock().unwrap_or_else(PoisonError::into_inner);
            if held.live(now) < cost.get() {
                return None;
            }
            held.left -= cost.get();
            // Without a runtime (a test calling the service by hand) there is no background.
            let refill = !held.fetching
                && held.left < self.batch / 2
                && held.quiet_until <= now
                && tokio::runtime::Handle::try_current().is_ok();
            held.fetching |= refill;
            (held.outcome(quota, now), refill)
        };
        if refill {
            let backend = self.clone();
            let key = self.key(&material(), &format!("rl:{name}"));
            tokio::spawn(async move {
                let answer = backend.ask(&key, quota, 1, backend.batch).await;
                let mut held = grant.lock().unwrap_or_else(PoisonError::into_inner);
                held.fetching = false;
                match answer {
                    Ok((taken, shared_remaining, _, reset_us)) => {
                        backend.answered();
                        match u32::try_from(taken) {
                            Ok(taken @ 1..) => {
                                held.add(quota, taken, shared_remaining, reset_us);
                            }
                            // The client is at its limit: no more asking in the background
                            // for a while, the request path asks when the grant is spent.
                            _ => held.quiet_until = Instant::now() + QUIET_AFTER_FAILURE,
                        }
                    }
                    Err(error) => {
                        held.quiet_until = Instant::now() + QUIET_AFTER_FAILURE;
                        drop(held);
                        backend.warn("rate limit batch", &*error);
                    }
                }
            });
        }
        Some(outcome)
    }

    /// One script call: `(granted, remaining, retry_us, reset_us)`.
    async fn ask(
        &self,
        key: &str,
        quota: Quota,
        cost: u32,
        want: u32,
    ) -> Result<(i64, i64, i64, i64), Box<dyn fmt::Display + Send>> {
        let emission = quota.emission_interval().as_micros().max(1) as u64;
        let mut connection = self.connection.clone();
        let mut invocation = self.gcra.key(key);
        invocation
            .arg(emission)
            .arg(quota.burst_size())
            .arg(cost)
            .arg(want.max(cost));
        let call = invocation.invoke_async::<(i64, i64, i64, i64)>(&mut connection);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(Box::new(error)),
            Err(elapsed) => Err(Box::new(elapsed)),
        }
    }

    /// One GCRA decision for `material` under the limit `name`. With [`batch`](Self::batch),
    /// what this replica still holds for the client pays for part of the request, and the
    /// request takes a batch for the replica unless one is already on its way.
    pub(super) fn check(
        &self,
        material: String,
        name: Arc<str>,
        quota: Quota,
        cost: NonZeroU32,
        local: Arc<dyn LocalLimiter>,
        local_key: u64,
    ) -> impl Future<Output = LimitCheck> + Send + 'static {
        let backend = self.clone();
        async move {
            let key = backend.key(&material, &format!("rl:{name}"));
            let requested = cost;
            let cost = cost.get();
            // Batches only while the cache can keep the grants they fill.
            let grant =
                (backend.batch > cost && backend.grants.entry_count() < MAX_GRANTS).then(|| {
                    backend
                        .grants
                        .get_with((local_key, name), || Arc::new(Mutex::new(Grant::new())))
                });
            let mut pending = Pending {
                grant,
                reserved: 0,
                fetch: false,
                failed: false,
            };
            if let Some(grant) = &pending.grant {
                let mut held = grant.lock().unwrap_or_else(PoisonError::into_inner);
                let now = Instant::now();
                let reserved = held.live(now).min(cost);
                held.left -= reserved;
                if reserved == cost {
                    // Topped up since `take_granted` looked: nothing to ask, nothing to return.
                    let outcome = held.outcome(quota, now);
                    drop(held);
                    pending.grant = None;
                    return outcome;
                }
                pending.reserved = reserved;
                // After a failure, requests ask for themselves only for a while: a batch lost to
                // a timeout (the script may still have run) must not repeat on every request.
                pending.fetch = !held.fetching && held.quiet_until <= now;
                held.fetching |= pending.fetch;
            }
            let need = cost - pending.reserved;
            let want = if pending.fetch {
                backend.batch.max(need)
            } else {
                need
            };
            let answer = backend.ask(&key, quota, need, want).await;
            // However it ends, the fetch is over and what was reserved but not spent goes back
            // (by `Pending`'s drop, also when the request is dropped while Redis answers).
            let mut settle = |granted: Option<(u32, i64, i64)>| {
                let grant = pending.grant.as_ref()?;
                let mut held = grant.lock().unwrap_or_else(PoisonError::into_inner);
                let (leftover, remaining, reset_us) = granted?;
                if pending.fetch {
                    held.fetching = false;
                }
                held.add(quota, leftover, remaining, reset_us);
                let shown = held.outcome(quota, Instant::now()).remaining;
                drop(held);
                pending.grant = None;
                Some(shown)
            };
            match answer {
                Ok((granted, remaining, retry_us, reset_us)) => {
                    backend.answered();
                    let granted = u32::try_from(granted.max(0)).unwrap_or(u32::MAX);
                    let allowed = granted >= need;
                    let shown = settle(allowed.then(|| (granted - need, remaining, reset_us)));
                    LimitCheck {
                        allowed,
                        known: true,
                        limit: quota.burst_size(),
                        remaining: shown
                            .unwrap_or_else(|| u32::try_from(remaining.max(0)).unwrap_or(u32::MAX)),
                        reset: Duration::from_micros(reset_us.max(0).unsigned_abs()),
                        retry_after: Duration::from_micros(retry_us.max(0).unsigned_abs()),
                    }
                }
                Err(error) => {
                    pending.failed = true;
                    drop(pending);
                    backend.failed(&*error, &local, local_key, requested)
                }
            }
        }
    }

    fn failed(
        &self,
        error: &dyn fmt::Display,
        local: &Arc<dyn LocalLimiter>,
        local_key: u64,
        cost: NonZeroU32,
    ) -> LimitCheck {
        self.warn("rate limit check", error);
        let unknown = |allowed| LimitCheck {
            allowed,
            known: false,
            limit: 0,
            remaining: 0,
            reset: Duration::ZERO,
            retry_after: Duration::from_secs(1),
        };
        match self.on_failure {
            RedisFailure::FailOpen => unknown(true),
            RedisFailure::FailClosed => unknown(false),
            RedisFailure::FallbackToLocal => local.check(local_key, cost),
        }
    }

    /// The longest remaining lockout among `subjects`, if any. A failing Redis locks nobody out
    /// here (refusing every login would deny service to everyone); each replica's own count
    /// still locks out the guessers it sees (`LockoutService::call`).
    pub(super) async fn lockout_remaining(&self, subjects: &[String]) -> Option<Duration> {
        // One command per key: the keys of an address and of a user name live in different hash
        // slots, which a Redis Cluster cannot serve in one pipeline.
        let connection = self.connection.clone();
        let keys: Vec<String> = subjects.iter().map(|s| self.key(s, "lock")).collect();
        let call = async move {
            let mut ttls = Vec::with_capacity(keys.len());
            for key in keys {
                let mut connection = connection.clone();
                ttls.push(
                    redis::cmd("PTTL")
                        .arg(key)
                        .query_async::<i64>(&mut connection)
                        .await?,
                );
            }
            Ok::<_, redis::RedisError>(ttls)
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(ttls)) => {
                self.answered();
                ttls.into_iter()
                    .filter(|ttl| *ttl > 0)
                    .max()
                    .map(|ms| Duration::from_millis(ms.unsigned_abs()))
            }
            Ok(Err(error)) => {
                self.warn("lockout check", &error);
                None
            }
            Err(elapsed) => {
                self.warn("lockout check", &elapsed);
                None
            }
        }
    }

    /// Counts one failed authentication for each subject.
    pub(super) async fn record_failure(&self, subjects: &[String], config: &LockoutConfig) {
        for subject in subjects {
            let mut connection = self.connection.clone();
            let mut invocation = self.record_failure.key(self.key(subject, "fail"));
            invocation
                .key(self.key(subject, "lock"))
                .key(self.key(subject, "level"))
                .arg(config.window.as_millis().max(1) as u64)
                .arg(config.max_failures)
                .arg(config.lockout.as_millis().max(1) as u64)
                .arg(config.max_lockout.as_millis().max(1) as u64)
                .arg(
                    (config.max_lockout.as_millis() as u64)
                        .saturating_mul(4)
                        .max(1),
                );
            let call = invocation.invoke_async::<i64>(&mut connection);
            // Off the request path, so a slow Redis may take longer here without delaying
            // anyone; losing a count would weaken the lockout.
            match tokio::time::timeout(self.timeout.max(Duration::from_secs(1)), call).await {
                Ok(Ok(lock_ms)) if lock_ms > 0 => {
                    self.answered();
                    tracing::warn!(
                        target: "portcullis::rate_limit",
                        lockout_ms = lock_ms,
                        "locked out after repeated failed authentication"
                    );
                }
                Ok(Ok(_)) => self.answered(),
                Ok(Err(error)) => self.warn("failure count", &error),
                Err(elapsed) => self.warn("failure count", &elapsed),
            }
        }
    }
}

/// A single server or a cluster, behind one interface so every call site stays the same.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("on_failure", &self.on_failure)
            .finish_non_exhaustive()
    }
}
