//! Revoked JWTs by `jti`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use smallvec::SmallVec;
use std::time::{Duration, Instant, SystemTime};

/// How long a revocation outlives its token: longer than the leeway any verifier allows.
pub(crate) const MARGIN: Duration = Duration::from_secs(300);

/// Answers whether a token id has been revoked. Consulted on every request, verified-token cache
/// hits included, so it must be fast (an in-memory lookup, a local Redis set, ...).
pub trait JtiDenyList: Send + Sync + 'static {
    /// Whether the token with this `jti` from this `iss` is revoked.
    fn is_denied(&self, issuer: Option<&str>, jti: &str) -> bool;
}

/// A shared list: keep one clone to revoke tokens at run time, give the other to the builder.
impl<T: JtiDenyList + ?Sized> JtiDenyList for Arc<T> {
    fn is_denied(&self, issuer: Option<&str>, jti: &str) -> bool {
        (**self).is_denied(issuer, jti)
    }
}

/// An in-memory [`JtiDenyList`] with bounded memory: each entry is kept until the token's own
/// `exp` and five minutes more (after which the token is refused anyway, leeway included), and
/// at most `max_entries` live entries are kept.
pub struct InMemoryDenyList {
    // By `jti`, then issuer: a lookup borrows the request's strings instead of allocating, and
    // readers (every request) do not block each other.
    entries: RwLock<Revocations>,
    max_entries: usize,
}

/// Issuers and expiry of the revoked tokens, by `jti`, with their number kept as they change
/// (counting them per revocation made N revocations cost N² under the lock every request reads
/// through).
/// The issuers (and expiries) that revoked one `jti`.
type Issuers = SmallVec<[(Option<Arc<str>>, SystemTime); 1]>;

#[derive(Default)]
struct Revocations {
    // One issuer per `jti` is the rule, kept inline; issuer names are shared, not copied per
    // entry (a million revocations of one provider's tokens hold its name once).
    by_jti: HashMap<Box<str>, Issuers>,
    issuers: HashSet<Arc<str>>,
    count: usize,
    /// When expired entries were last pruned: a full list is swept at most once a second.
    pruned: Option<Instant>,
}

impl InMemoryDenyList {
    /// A list holding at most `max_entries` unexpired revocations.
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: RwLock::new(Revocations::default()),
            max_entries,
        }
    }

    /// Revokes the token `jti` of `issuer` until `expires_at` (the token's `exp`) and five
    /// minutes more, past the leeway a verifier allows an expired token. Returns
    /// `false`, adding nothing, when the list is full of unexpired entries: refuse the operation
    /// upstream (or remove the signing key) rather than silently forget a revocation. A full list
    /// is swept for expired entries at most once a second, so revoking stays O(1) however full.
    #[must_use]
    pub fn deny(&self, issuer: Option<&str>, jti: &str, expires_at: SystemTime) -> bool {
        let expires_at = expires_at.checked_add(MARGIN).unwrap_or(expires_at);
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let entries = &mut *entries;
        let known = entries
            .by_jti
            .get(jti)
            .is_some_and(|issuers| issuers.iter().any(|(iss, _)| iss.as_deref() == issuer));
        if !known && entries.count >= self.max_entries {
            if entries
                .pruned
                .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
            {
                return false;
            }
            entries.pruned = Some(Instant::now());
            let now = SystemTime::now();
            entries.by_jti.retain(|_, issuers| {
                issuers.retain(|(_, until)| *until > now);
                !issuers.is_empty()
            });
            entries.count = entries.by_jti.values().map(|issuers| issuers.len()).sum();
            // Names no entry uses any more.
            entries.issuers.retain(|name| Arc::strong_count(name) > 1);
            if entries.count >= self.max_entries {
                return false;
            }
        }
        let issuer: Option<Arc<str>> = issuer.map(|name| match entries.issuers.get(name) {
            Some(shared) => shared.clone(),
            None => {
                let shared: Arc<str> = name.into();
                entries.issuers.insert(shared.clone());
                shared
            }
        });
        let issuers = entries.by_jti.entry(jti.into()).or_default();
        let before = issuers.len();
        issuers.retain(|(iss, _)| *iss != issuer);
        issuers.push((issuer, expires_at));
        entries.count = entries.count + issuers.len() - before;
        true
    }

    /// Number of entries held (expired ones included until they are pruned).
    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .count
    }

    /// Whether the list holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The unexpired revocations: issuer, `jti`, expiry.
    #[cfg(feature = "redis")]
    pub(crate) fn unexpired(&self) -> Vec<(Option<String>, String, SystemTime)> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now();
        entries
            .by_jti
            .iter()
            .flat_map(|(jti, issuers)| {
                issuers
                    .iter()
                    .filter(move |(_, until)| *until > now)
                    .map(move |(issuer, until)| {
                        (
                            issuer.as_deref().map(str::to_owned),
                            jti.to_string(),
                            *until,
                        )
                    })
            })
            .collect()
    }
}

impl JtiDenyList for InMemoryDenyList {
    fn is_denied(&self, issuer: Option<&str>, jti: &str) -> bool {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.by_jti.get(jti).is_some_and(|issuers| {
            issuers
                .iter()
                .any(|(iss, until)| iss.as_deref() == issuer && *until > SystemTime::now())
        })
    }
}

impl fmt::Debug for InMemoryDenyList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryDenyList")
            .field("entries", &self.len())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_count_follows_additions_replacements_and_sweeps() {
        let list = InMemoryDenyList::new(3);
        let later = SystemTime::now() + Duration::from_secs(60);
        let past = SystemTime::now() - Duration::from_secs(600);
        assert!(list.deny(Some("i"), "a", past));
        assert!(list.deny(Some("j"), "a", later));
        assert!(list.deny(Some("j"), "a", later)); // the same revocation again: replaced
        assert_eq!(list.len(), 2);
        assert!(list.deny(None, "b", later));
        assert_eq!(list.len(), 3);
        let issuer_names = || list.entries.read().unwrap().issuers.len();
        assert_eq!(issuer_names(), 2, "each issuer name held once");
        // Full: the sweep drops the expired entry and makes room, and the name only it used.
        assert!(list.deny(None, "c", later));
        assert_eq!(list.len(), 3);
        assert_eq!(issuer_names(), 1);
        assert!(!list.is_denied(Some("i"), "a"));
        assert!(list.is_denied(Some("j"), "a") && list.is_denied(None, "b"));
        // Full of live entries: refused, and not swept again within the second.
        assert!(!list.deny(None, "d", later));
        assert!(!list.deny(None, "e", later));
        assert_eq!(list.len(), 3);
        // Revoking one already held again still works when full.
        assert!(list.deny(None, "c", later));
        assert_eq!(list.len(), 3);
    }
}
