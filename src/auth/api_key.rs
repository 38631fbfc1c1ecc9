//! API keys, stored only as SHA-256 hashes.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::header::HeaderName;
use http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Authentication, Authenticator};
use crate::error::Reason;
use crate::error::{ConfigError, Rejection, RejectionKind, Scheme};
use crate::identity::{AuthMethod, Identity};
use crate::request::credential;

/// Keys shorter than this are refused: an unsalted hash is only safe for high-entropy keys.
const MIN_KEY_LEN: usize = 32;
/// Longer presented keys are refused before hashing.
const MAX_KEY_LEN: usize = 512;

/// The SHA-256 hash of an API key: what a [`ApiKeyStore`] keeps instead of the key.
///
/// SHA-256 without salt is the right tool for *generated* keys with 256 bits of entropy (as
/// [`ApiKey::generate`] makes): nobody can brute-force them, and lookups stay a single hash. User
/// chosen passwords belong in [`BasicAuthenticator`](super::BasicAuthenticator) with argon2.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiKeyHash([u8; 32]);

impl ApiKeyHash {
    /// Hashes a key.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Reads a hash from 64 hex digits (as stored in your configuration).
    pub fn from_hex(hex: &str) -> Result<Self, ConfigError> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return Err(ConfigError::new("an API key hash is 64 hex digits"));
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => out[i] = (hi * 16 + lo) as u8,
                _ => return Err(ConfigError::new("an API key hash is 64 hex digits")),
            }
        }
        Ok(Self(out))
    }

    /// The hash as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn bucket(&self) -> u64 {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(prefix)
    }
}

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyHash({}…)", &self.to_hex()[..8])
    }
}

/// A newly generated API key, to hand to a client once. Only its [`hash`](ApiKey::hash) should be
/// kept. `Debug` does not print it.
pub struct ApiKey(String);

impl ApiKey {
    /// A random key of 256 bits: `prefix_` followed by 43 base64url characters. The prefix (e.g.
    /// `pcl_live`) makes leaked keys easy to recognise by secret scanners.
    pub fn generate(prefix: &str) -> Result<Self, ConfigError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|_| ConfigError::new("the system random number generator failed"))?;
        Ok(Self(format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(bytes))))
    }

    /// The key itself, to show to its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash to store.
    pub fn hash(&self) -> ApiKeyHash {
        ApiKeyHash::of(&self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// What an API key grants: its id (shown in logs and audit events, never the key), the subject it
/// acts as, and its scopes and roles.
#[derive(Clone, Debug)]
#[must_use]
pub struct ApiKeyGrant {
    id: String,
    subject: String,
    scopes: Vec<String>,
    roles: Vec<String>,
}

impl ApiKeyGrant {
    /// A grant for key `id` acting as `subject`, with no scopes or roles yet.
    pub fn new(id: impl Into<String>, subject: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            subject: subject.into(),
            scopes: Vec::new(),
            roles: Vec::new(),
        }
    }

    /// Sets the scopes.
    pub fn scopes<I: IntoIterator<Item = T>, T: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the roles.
    pub fn roles<I: IntoIterator<Item = T>, T: Into<String>>(mut self, roles: I) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    fn into_identity(self) -> Identity {
        Identity::builder(self.subject, AuthMethod::ApiKey)
            .api_key_id(self.id)
            .scopes(self.scopes)
            .roles(self.roles)
            .build()
    }
}

/// Where API key hashes live. Implement it over your database (with an in-memory cache in front:
/// it is called on every request and must not block).
pub trait ApiKeyStore: Send + Sync + 'static {
    /// The identity of the key with this hash, if it exists and is not revoked. Compare hashes in
    /// constant time.
    fn find(&self, hash: &ApiKeyHash) -> Option<Identity>;
}

/// An [`ApiKeyStore`] in memory. Clones share the same keys, so you can keep one to revoke keys
/// at run time.
///
/// ```
/// use portcullis::auth::{ApiKey, ApiKeyGrant, ApiKeyHash, ApiKeyStore, InMemoryKeyStore};
///
/// # fn main() -> Result<(), portcullis::ConfigError> {
/// let store = InMemoryKeyStore::new();
/// let key = ApiKey::generate("pcl")?;
/// store.insert_hash(key.hash(), ApiKeyGrant::new("ci-1", "ci").scopes(["read:items"]));
///
/// let identity = store.find(&ApiKeyHash::of(key.expose())).unwrap();
/// assert_eq!(identity.api_key_id(), Some("ci-1"));
///
/// assert!(store.revoke("ci-1"));
/// assert!(store.find(&key.hash()).is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Default)]
pub struct InMemoryKeyStore {
    // Keyed by the first 8 bytes of the hash; the full hash is then compared in constant time, so
    // the lookup time tells an attacker nothing about how close a guess was.
    entries: Arc<RwLock<Buckets>>,
}

type Buckets = HashMap<u64, Vec<(ApiKeyHash, Identity)>>;

impl InMemoryKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores the hash of `key` (the key itself is not kept). Keys shorter than 32 characters are
    /// refused as too guessable.
    pub fn insert(&self, key: &str, grant: ApiKeyGrant) -> Result<(), ConfigError> {
        if key.len() < MIN_KEY_LEN || key.len() > MAX_KEY_LEN {
            return Err(ConfigError::new(
                "an API key must be 32 to 512 characters of high-entropy text",
            ));
        }
        self.insert_hash(ApiKeyHash::of(key), grant);
        Ok(())
    }

    /// Stores a key by its hash, replacing any entry with the same hash.
    pub fn insert_hash(&self, hash: ApiKeyHash, grant: ApiKeyGrant) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let bucket = entries.entry(hash.bucket()).or_default();
        bucket.retain(|(existing, _)| *existing != hash);
        bucket.push((hash, grant.into_identity()));
    }

    /// Revokes every key with this id. Returns whether one was found.
    pub fn revoke(&self, id: &str) -> bool {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let mut found = false;
        entries.retain(|_, bucket| {
            bucket.retain(|(_, identity)| {
                let matches = identity.api_key_id() == Some(id);
                found |= matches;
                !matches
            });
            !bucket.is_empty()
        });
        found
    }
}

impl ApiKeyStore for InMemoryKeyStore {
    fn find(&self, hash: &ApiKeyHash) -> Option<Identity> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(&hash.bucket())?
            .iter()
            .find(|(stored, _)| bool::from(stored.0.ct_eq(&hash.0)))
            .map(|(_, identity)| identity.clone())
    }
}

impl fmt::Debug for InMemoryKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("InMemoryKeyStore")
            .field("keys", &entries.values().map(Vec::len).sum::<usize>())
            .finish()
    }
}

/// Answers whether an API key has been revoked, by its id. Consulted on every request with a key
/// the store knows, so it must be fast (an in-memory lookup, such as the mirror of a
/// `RedisDenyList` that every replica shares).
pub trait ApiKeyDenyList: Send + Sync + 'static {
    /// Whether the key with this id is revoked.
    fn is_revoked(&self, id: &str) -> bool;
}

/// A shared list: keep one clone to revoke keys at run time, give the other to the
/// authenticator.
impl<T: ApiKeyDenyList + ?Sized> ApiKeyDenyList for Arc<T> {
    fn is_revoked(&self, id: &str) -> bool {
        (**self).is_revoked(id)
    }
}

/// Authenticates API keys from a header (default `X-Api-Key`) or `Authorization: ApiKey <key>`.
///
/// A request carrying the key header twice, or the key header next to an `Authorization` header
/// (of any scheme), is refused with 400: one credential per request.
#[derive(Clone)]
pub struct ApiKeyAuthenticator {
    store: Arc<dyn ApiKeyStore>,
    header: HeaderName,
    deny: Option<Arc<dyn ApiKeyDenyList>>,
}

impl ApiKeyAuthenticator {
    /// Looks keys up in `store`.
    pub fn new(store: impl ApiKeyStore) -> Self {
        Self {
            store: Arc::new(store),
            header: HeaderName::from_static("x-api-key"),
            deny: None,
        }
    }

    /// Refuses keys this list says are revoked, besides those the store no longer holds: for
    /// revocations that every replica must see (the store is often each replica's own copy).
    #[must_use]
    pub fn deny_list(mut self, list: impl ApiKeyDenyList) -> Self {
        self.deny = Some(Arc::new(list));
        self
    }

    /// Reads keys from this header instead of `X-Api-Key`.
    #[must_use]
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    fn presented_key<'a>(&self, parts: &'a Parts) -> Result<Option<&'a str>, Rejection> {
        let from_authorization = credential::credentials(&parts.headers, "ApiKey");
        let mut values = parts.headers.get_all(&self.header).iter();
        let from_header = match (values.next(), values.next()) {
            (None, _) => None,
            (Some(_), Some(_)) => {
                return Err(credential::invalid_request(
                    Reason::DuplicateApiKey,
                    "Send exactly one API key.",
                ));
            }
            (Some(value), None) => Some(value.to_str().map_err(|_| rejected())?.trim()),
        };
        // The layer refuses a key header next to an `Authorization` header before we get here
        // (see `credential_header`), so at most one of the two is set.
        Ok(from_authorization.or(from_header))
    }
}

fn rejected() -> Rejection {
    Rejection::new(RejectionKind::InvalidCredentials)
        .with_reason(Reason::UnknownApiKey)
        .with_detail("The API key was not accepted.")
        .with_challenge(Scheme::ApiKey)
}

impl Authenticator for ApiKeyAuthenticator {
    fn scheme(&self) -> Scheme {
        Scheme::ApiKey
    }

    fn credential_header(&self) -> Option<&HeaderName> {
        Some(&self.header)
    }

    fn authenticate(&self, request: &Parts) -> Authentication {
        let key = match self.presented_key(request) {
            Ok(Some(key)) => key,
            Ok(None) => return Authentication::NotPresent,
            Err(rejection) => return Authentication::Rejected(rejection),
        };
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Authentication::Rejected(rejected());
        }
        match self.store.find(&ApiKeyHash::of(key)) {
            Some(identity)
                if self.deny.as_ref().is_some_and(|deny| {
                    identity.api_key_id().is_some_and(|id| deny.is_revoked(id))
                }) =>
            {
                // Its holder learns it was revoked; the lockout does not count it as a guess.
                Authentication::Rejected(
                    Rejection::new(RejectionKind::InvalidCredentials)
                        .with_reason(Reason::Revoked)
                        .with_detail("The API key has been revoked.")
                        .with_challenge(Scheme::ApiKey),
                )
            }
            Some(identity) => Authentication::Authenticated(identity),
            None => Authentication::Rejected(rejected()),
        }
    }
}

impl fmt::Debug for ApiKeyAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}
