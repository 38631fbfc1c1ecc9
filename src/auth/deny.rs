//! Revoked JWTs by `jti`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{PoisonError, RwLock};
use std::time::SystemTime;

/// Answers whether a token id has been revoked. Consulted on every request, verified-token cache
/// hits included, so it must be fast (an in-memory lookup, a local Redis set, ...).
pub trait JtiDenyList: Send + Sync + 'static {
    /// Whether the token with this `jti` from this `iss` is revoked.
    fn is_denied(&self, issuer: Option<&str>, jti: &str) -> bool;
}

/// An in-memory [`JtiDenyList`] with bounded memory: each entry is kept until the token's own
/// `exp` (after which the token is refused anyway), and at most `max_entries` live entries are
/// kept.
pub struct InMemoryDenyList {
    // By `jti`, then issuer: a lookup borrows the request's strings instead of allocating, and
    // readers (every request) do not block each other.
    entries: RwLock<Revocations>,
    max_entries: usize,
}

impl InMemoryDenyList {
    /// A list holding at most `max_entries` unexpired revocations.
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            max_entries,
        }
    }

    /// Revokes the token `jti` of `issuer` until `expires_at` (the token's `exp`). Returns
    /// `false`, adding nothing, when the list is full of unexpired entries: refuse the operation
    /// upstream (or remove the signing key) rather than silently forget a revocation.
    #[must_use]
    pub fn deny(&self, issuer: Option<&str>, jti: &str, expires_at: SystemTime) -> bool {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let known = entries
            .get(jti)
            .is_some_and(|issuers| issuers.iter().any(|(iss, _)| iss.as_deref() == issuer));
        if !known && count(&entries) >= self.max_entries {
            let now = SystemTime::now();
            entries.retain(|_, issuers| {
                issuers.retain(|(_, until)| *until > now);
                !issuers.is_empty()
            });
            if count(&entries) >= self.max_entries {
                return false;
            }
        }
        let issuers = entries.entry(jti.to_owned()).or_default();
        issuers.retain(|(iss, _)| iss.as_deref() != issuer);
        issuers.push((issuer.map(str::to_owned), expires_at));
        true
    }

    /// Number of entries held (expired ones included until they are pruned).
    pub fn len(&self) -> usize {
        count(&self.entries.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether the list holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl JtiDenyList for InMemoryDenyList {
    fn is_denied(&self, issuer: Option<&str>, jti: &str) -> bool {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries.get(jti).is_some_and(|issuers| {
            issuers
                .iter()
                .any(|(iss, until)| iss.as_deref() == issuer && *until > SystemTime::now())
        })
    }
}

/// Issuers and expiry of the revoked tokens, by `jti`.
type Revocations = HashMap<String, Vec<(Option<String>, SystemTime)>>;

fn count(entries: &Revocations) -> usize {
    entries.values().map(Vec::len).sum()
}

impl fmt::Debug for InMemoryDenyList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryDenyList")
            .field("entries", &self.len())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}
