//! Revoked JWTs by `jti`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
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
    entries: Mutex<HashMap<(Option<String>, String), SystemTime>>,
    max_entries: usize,
}

impl InMemoryDenyList {
    /// A list holding at most `max_entries` unexpired revocations.
    pub fn new(max_entries: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_entries,
        }
    }

    /// Revokes the token `jti` of `issuer` until `expires_at` (the token's `exp`). Returns
    /// `false`, adding nothing, when the list is full of unexpired entries: refuse the operation
    /// upstream (or remove the signing key) rather than silently forget a revocation.
    #[must_use]
    pub fn deny(&self, issuer: Option<&str>, jti: &str, expires_at: SystemTime) -> bool {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (issuer.map(str::to_owned), jti.to_owned());
        if !entries.contains_key(&key) && entries.len() >= self.max_entries {
            let now = SystemTime::now();
            entries.retain(|_, until| *until > now);
            if entries.len() >= self.max_entries {
                return false;
            }
        }
        entries.insert(key, expires_at);
        true
    }

    /// Number of entries held (expired ones included until they are pruned).
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the list holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl JtiDenyList for InMemoryDenyList {
    fn is_denied(&self, issuer: Option<&str>, jti: &str) -> bool {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&(issuer.map(str::to_owned), jti.to_owned()))
            .is_some_and(|until| *until > SystemTime::now())
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
