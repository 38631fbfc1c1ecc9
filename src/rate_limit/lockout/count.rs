//! The local count: entries per address and user, attempts in flight, lockouts.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::LockoutConfig;
use crate::request;
use crate::request::attempt::PendingAttempt;

#[derive(Debug, Default)]
pub(super) struct Entry {
    failures: u32,
    window_start: Option<Instant>,
    level: u32,
    locked_until: Option<Instant>,
    last_lockout: Option<Instant>,
    /// Attempts whose answer is not known yet.
    pending: u32,
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
    pub(super) fn local_reserve(&self, keys: &[u64]) -> Result<Entries, Duration> {
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
    pub(super) fn local_lockout(&self, keys: &[u64]) -> Option<Duration> {
        let mut entries = Entries::default();
        for (slot, key) in entries.iter_mut().zip(keys) {
            *slot = self.entries.get(key).map(|entry| (*key, entry));
        }
        locked_for(&entries, Instant::now())
    }

    fn entry(&self, key: u64) -> Arc<Mutex<Entry>> {
        // By reference: `get_with` boxes the key in an `Arc` on every call, even a hit.
        self.entries
            .get_with_by_ref(&key, || Arc::new(Mutex::new(Entry::default())))
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
pub(super) struct Attempt {
    pub(super) config: Arc<LockoutConfig>,
    pub(super) entries: Entries,
    pub(super) done: bool,
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
    pub(super) config: Arc<LockoutConfig>,
    /// The attempt of a lockout layer outside this one (a global lockout around one on a login
    /// route), which the request's extensions no longer show: accepting a credential releases
    /// both.
    outer: Option<PendingAttempt>,
}

impl LockoutAttempt {
    pub(super) fn new(attempt: Attempt, outer: Option<PendingAttempt>) -> Self {
        Self {
            config: attempt.config.clone(),
            attempt: Mutex::new(Some(attempt)),
            outer,
        }
    }

    /// Ends the attempt; false when it was already ended (accepted at authentication).
    pub(super) fn settle(&self, failed: bool) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::LockoutLayer;
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
