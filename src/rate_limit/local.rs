//! The in-memory backend: governor's GCRA over a bounded, pruned key map.

use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use governor::RateLimiter;
use governor::clock::{Clock, DefaultClock, FakeRelativeClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, StateStore};

use super::{LimitCheck, Quota};
use crate::error::ConfigError;

/// Keys are already keyed SipHash fingerprints chosen by no client, so hashing them again would
/// only cost time.
#[derive(Default, Clone)]
pub(crate) struct Fingerprint(u64);

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type Map = DashMap<u64, InMemoryState, BuildHasherDefault<Fingerprint>>;

/// A handle on the key map shared with the rate limiter, so we can count and look up keys.
#[derive(Clone)]
struct SharedMap(Arc<Map>);

impl StateStore for SharedMap {
    type Key = u64;

    fn measure_and_replace<T, F, E>(&self, key: &u64, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<u64> for SharedMap {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// New keys share one of these budgets once the map is full of keys that are all still active;
/// spreading them over many buckets keeps one flooder from exhausting every newcomer's budget.
const OVERFLOW_BUCKETS: u64 = 1024;
const OVERFLOW_BASE: u64 = 0x6f76_6572_666c_6f77 & !(OVERFLOW_BUCKETS - 1);
/// How often (in checks) the size of the map is looked at.
const MAINTENANCE_EVERY: u64 = 4096;

/// A clock-erased in-memory limiter.
pub(crate) trait LocalLimiter: Send + Sync {
    fn check(&self, key: u64, cost: NonZeroU32) -> LimitCheck;
    fn prune(&self);
    fn keys(&self) -> usize;
}

pub(crate) fn new_limiter(
    quota: &Quota,
    max_keys: usize,
    clock: Option<FakeRelativeClock>,
) -> Result<Arc<dyn LocalLimiter>, ConfigError> {
    let governor_quota = quota.to_governor()?;
    Ok(match clock {
        Some(clock) => Arc::new(Governed::new(governor_quota, *quota, max_keys, clock)),
        None => Arc::new(Governed::new(
            governor_quota,
            *quota,
            max_keys,
            DefaultClock::default(),
        )),
    })
}

struct Governed<C: Clock + Clone + Send + Sync + 'static> {
    limiter: RateLimiter<u64, SharedMap, C, StateInformationMiddleware>,
    map: SharedMap,
    clock: C,
    quota: Quota,
    max_keys: usize,
    checks: AtomicU64,
    full: AtomicBool,
    /// When maintenance last ran (seconds since start): at most once a second, because pruning
    /// walks the whole map on a request thread.
    last_maintenance: AtomicU64,
    started: std::time::Instant,
}

impl<C: Clock + Clone + Send + Sync + 'static> Governed<C> {
    fn new(governor_quota: governor::Quota, quota: Quota, max_keys: usize, clock: C) -> Self {
        let map = SharedMap(Arc::new(Map::default()));
        let limiter = RateLimiter::<u64, SharedMap, C, StateInformationMiddleware>::new(
            governor_quota,
            map.clone(),
            clock.clone(),
        );
        Self {
            limiter,
            map,
            clock,
            quota,
            max_keys: max_keys.max(1),
            checks: AtomicU64::new(0),
            full: AtomicBool::new(false),
            last_maintenance: AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }

    /// Prunes when the map is over its cap; if every key is still active, new keys share the
    /// overflow key until pruning frees room.
    fn maintain(&self, prune_anyway: bool) {
        if self.map.0.len() <= self.max_keys && !prune_anyway {
            self.full.store(false, Ordering::Relaxed);
            return;
        }
        let now = self.started.elapsed().as_secs() + 1;
        let last = self.last_maintenance.load(Ordering::Relaxed);
        let may_prune = prune_anyway
            || (last != now
                && self
                    .last_maintenance
                    .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok());
        if !may_prune {
            // Pruned this second already (or another thread is at it): keep new keys out of the
            // map until the next prune, so a flood cannot outgrow the cap in between.
            self.full.store(true, Ordering::Relaxed);
            return;
        }
        self.limiter.retain_recent();
        let full = self.map.0.len() > self.max_keys;
        if full && !self.full.load(Ordering::Relaxed) {
            tracing::warn!(
                target: "portcullis::rate_limit",
                keys = self.map.0.len(),
                max_keys = self.max_keys,
                "rate limit key map is full of active keys; new keys share one budget"
            );
        }
        self.full.store(full, Ordering::Relaxed);
    }
}

impl<C: Clock + Clone + Send + Sync + 'static> LocalLimiter for Governed<C>
where
    C::Instant: Send + Sync,
{
    fn check(&self, key: u64, cost: NonZeroU32) -> LimitCheck {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(MAINTENANCE_EVERY)
        {
            self.maintain(false);
        }
        let key = if self.full.load(Ordering::Relaxed) && !self.map.0.contains_key(&key) {
            OVERFLOW_BASE | (key % OVERFLOW_BUCKETS)
        } else {
            key
        };
        let burst = self.quota.burst_size();
        let emission = self.quota.emission_interval();
        // The single-cell check is governor's fast path; batches need the slower one.
        let checked = if cost.get() == 1 {
            Ok(self.limiter.check_key(&key))
        } else {
            self.limiter.check_key_n(&key, cost)
        };
        match checked {
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity();
                LimitCheck {
                    allowed: true,
                    known: true,
                    limit: burst,
                    remaining,
                    reset: emission * burst.saturating_sub(remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(self.clock.now());
                LimitCheck {
                    allowed: false,
                    known: true,
                    limit: burst,
                    remaining: 0,
                    reset: emission * burst,
                    retry_after: wait,
                }
            }
            // The cost is larger than the burst: it can never pass (configuration is checked, so
            // this is only reachable with a quota changed behind our back); refuse.
            Err(_) => LimitCheck {
                allowed: false,
                known: true,
                limit: burst,
                remaining: 0,
                reset: emission * burst,
                retry_after: emission * burst,
            },
        }
    }

    fn prune(&self) {
        self.maintain(true);
    }

    fn keys(&self) -> usize {
        self.map.0.len()
    }
}
