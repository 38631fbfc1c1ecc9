//! Signed JWT bearer tokens (RFC 7519, RFC 7515, RFC 9068 profile checks).

mod builder;
mod key;
mod strict;
mod verify;

use verify::{check_new_key, install};

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::request::Parts;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use builder::JwtAuthenticatorBuilder;
pub use key::JwtKey;

use super::{Authentication, Authenticator, JtiDenyList};
use crate::error::Reason;
use crate::error::{ConfigError, Rejection, RejectionKind, Scheme};
use crate::identity::{
    AuthMethod, ClaimMapping, Identity, YEAR_9999_END, lookup_claim, system_time,
};
use crate::request::credential;

/// Header parameters that would make us trust a key the token brings along. Never honoured.
const EMBEDDED_KEY_HEADERS: [&str; 4] = ["jwk", "jku", "x5u", "x5c"];

/// Verifies JWT bearer tokens from the `Authorization: Bearer` header.
///
/// What is checked, in this order (cheap checks first, the signature before any claim is trusted):
///
/// 1. size (default at most 8 KiB), three segments of canonical unpadded base64url;
/// 2. the header: a JSON object without duplicate members; `alg` must be one this server
///    configured for the key named by `kid` (never `none`, in any casing); `jwk`, `jku`, `x5u`
///    and `x5c` are refused outright (keys are never fetched from or trusted in a token); any
///    `crit` is refused (no extension is supported), and so is a `cty` of `JWT` (a nested
///    token, which is never verified); `typ` is checked when configured;
/// 3. the signature, with [`jsonwebtoken`];
/// 4. the claims: a JSON object without duplicate members, registered claims of the right JSON
///    type; `exp` required (by default), `nbf` and `iat` not in the future, all with a leeway
///    (default 60 s), and all dates between 1970 and the end of the year 9999; `iss` equal to
///    the configured issuer; `aud` containing a configured audience; `sub` present; scopes and
///    roles readable with the [`ClaimMapping`].
///
/// A verified token is remembered in a bounded cache keyed by the SHA-256 of the whole token, so
/// the next request with it skips parsing and signature verification; `exp` is still checked on
/// every hit (`nbf` and `iat` were checked when the token was first seen), the entry lives no
/// longer than the token, and removing a key drops the entries it verified. The cache is bounded
/// by a memory budget. Cloning is cheap and clones share keys and cache.
#[derive(Clone)]
pub struct JwtAuthenticator {
    inner: Arc<Inner>,
}

struct Inner {
    keys: RwLock<Vec<JwtKey>>,
    /// `None`: any issuer.
    issuers: Option<AcceptedIssuers>,
    audiences: Option<Vec<String>>,
    claim_rules: Vec<ClaimRule>,
    clients: Option<Vec<String>>,
    client_required: bool,
    leeway: u64,
    require_exp: bool,
    typ: Option<Vec<String>>,
    max_token_bytes: usize,
    mapping: ClaimMapping,
    cache: Option<moka::sync::Cache<[u8; 32], Verified>>,
    clock: Clock,
    deny: Option<Arc<dyn JtiDenyList>>,
}

type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The `iss` values an authenticator accepts. An issuer that stands for one tenant of a
/// multi-tenant provider carries that tenant: the token's tenant claim must then name the same
/// tenant, so that one tenant's token never passes under another tenant's issuer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AcceptedIssuers {
    pub(crate) issuers: std::collections::HashMap<String, Option<String>>,
    /// The claim holding the tenant (Entra's `tid`), for issuers that carry one.
    pub(crate) tenant_claim: &'static str,
}

impl AcceptedIssuers {
    pub(crate) fn one(issuer: String) -> Self {
        Self {
            issuers: [(issuer, None)].into_iter().collect(),
            tenant_claim: "",
        }
    }

    #[cfg_attr(not(feature = "oidc"), allow(dead_code))]
    pub(crate) fn contains(&self, iss: &str) -> bool {
        self.issuers.contains_key(iss)
    }
}

/// A claim that must hold one of some values ([`JwtAuthenticatorBuilder::require_claim`]), or,
/// with no list, be present (and not `null`).
#[derive(Clone, Debug)]
pub(crate) struct ClaimRule {
    pub(crate) path: String,
    pub(crate) values: Option<Vec<Value>>,
}

impl ClaimRule {
    /// The claim at `path` must equal one of `values`.
    pub(crate) fn one_of<I: IntoIterator<Item = T>, T: Into<Value>>(
        path: impl Into<String>,
        values: I,
    ) -> Self {
        Self {
            path: path.into(),
            values: Some(values.into_iter().map(Into::into).collect()),
        }
    }

    pub(crate) fn holds(&self, claims: &Map<String, Value>) -> bool {
        match (lookup_claim(claims, &self.path), &self.values) {
            (None | Some(Value::Null), _) => false,
            (Some(_), None) => true,
            (Some(value), Some(values)) => values.contains(value),
        }
    }
}

/// What the cache keeps of a verified token.
#[derive(Clone)]
struct Verified {
    identity: Identity,
    exp: Option<u64>,
    /// The verifying key's installed flag (see `JwtKey::live`).
    live: Arc<AtomicBool>,
    /// Estimated bytes held by the entry (the parsed claims take about three times the token).
    weight: u32,
}

impl JwtAuthenticator {
    /// Starts the configuration.
    pub fn builder() -> JwtAuthenticatorBuilder {
        JwtAuthenticatorBuilder {
            keys: Vec::new(),
            issuers: None,
            any_issuer: false,
            claim_rules: Vec::new(),
            clients: None,
            client_required: false,
            audiences: None,
            any_audience: false,
            leeway: Duration::from_secs(60),
            require_exp: true,
            typ: None,
            max_token_bytes: 8 * 1024,
            mapping: ClaimMapping::default(),
            cache_max_bytes: 32 * 1024 * 1024,
            clock: None,
            deny: None,
            allow_no_keys: false,
        }
    }

    /// Verifies one token (without the `Bearer ` prefix) and returns the caller's identity.
    ///
    /// This is what the [`AuthLayer`](crate::AuthLayer) calls; use it directly where a token
    /// arrives another way, e.g. in the first message of a WebSocket.
    pub fn verify(&self, token: &str) -> Result<Identity, Rejection> {
        let digest = (self.inner.cache.is_some() && token.len() <= self.inner.max_token_bytes)
            .then(|| token_digest(token));
        self.verify_with_digest(token, digest.as_ref())
    }

    /// [`verify`](Self::verify) with the token's [`token_digest`] computed by the caller.
    pub(crate) fn verify_with_digest(
        &self,
        token: &str,
        digest: Option<&[u8; 32]>,
    ) -> Result<Identity, Rejection> {
        let identity = self.verify_signed(token, digest)?;
        self.check_revoked(identity)
    }

    /// The verified-token cache's answer for the token with this digest, if it holds it: the
    /// identity (expiry and revocation checked again) or the refusal. `None`: not cached here.
    #[cfg_attr(not(feature = "oidc"), allow(dead_code))]
    pub(crate) fn cached(&self, digest: &[u8; 32]) -> Option<Result<Identity, Rejection>> {
        let hit = self.cache_hit(digest)?;
        Some(hit.and_then(|identity| self.check_revoked(identity)))
    }

    /// Revocation is checked on every use, cache hits included.
    fn check_revoked(&self, identity: Identity) -> Result<Identity, Rejection> {
        if let Some(deny) = &self.inner.deny
            && let Some(serde_json::Value::String(jti)) = identity.claim("jti")
            && deny.is_denied(identity.issuer(), jti)
        {
            return Err(invalid(Reason::Revoked, "The access token was revoked."));
        }
        Ok(identity)
    }

    fn cache_hit(&self, digest: &[u8; 32]) -> Option<Result<Identity, Rejection>> {
        let inner = &*self.inner;
        let cache = inner.cache.as_ref()?;
        let hit = cache.get(digest)?;
        if !hit.live.load(Ordering::Acquire) {
            cache.invalidate(digest);
            return None;
        }
        if let Some(exp) = hit.exp
            && inner.now().saturating_sub(inner.leeway) >= exp
        {
            cache.invalidate(digest);
            return Some(Err(invalid(Reason::Expired, "The access token expired.")));
        }
        Some(Ok(hit.identity))
    }

    fn verify_signed(&self, token: &str, digest: Option<&[u8; 32]>) -> Result<Identity, Rejection> {
        let inner = &*self.inner;
        if token.len() > inner.max_token_bytes {
            return Err(invalid(Reason::TooLarge, "The access token is too large."));
        }
        let (Some(cache), Some(digest)) = (&inner.cache, digest) else {
            return inner
                .verify_uncached(token)
                .map(|verified| verified.identity);
        };
        if let Some(hit) = self.cache_hit(digest) {
            return hit;
        }
        let verified = inner.verify_uncached(token)?;
        let identity = verified.identity.clone();
        cache.insert(*digest, verified);
        Ok(identity)
    }

    /// Adds a verification key at run time (e.g. ahead of a planned rotation).
    pub fn add_key(&self, key: JwtKey) -> Result<(), ConfigError> {
        let mut keys = self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        check_new_key(&keys, &key)?;
        keys.push(install(key));
        Ok(())
    }

    /// Removes the key with this id; tokens it signed stop being accepted at once, including those
    /// already in the verified-token cache. Returns whether a key was removed.
    pub fn remove_key(&self, kid: &str) -> bool {
        let mut keys = self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = keys.len();
        keys.retain(|key| {
            let keep = key.kid.as_deref() != Some(kid);
            if !keep {
                // Its cached tokens see this on their next hit; others stay cached.
                key.live.store(false, Ordering::Release);
            }
            keep
        });
        keys.len() != before
    }

    /// The ids of the configured keys (keys without an id are left out).
    #[cfg_attr(not(feature = "oidc"), allow(dead_code))]
    pub(crate) fn kids(&self) -> Vec<String> {
        let keys = self
            .inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        keys.iter().filter_map(|key| key.kid.clone()).collect()
    }

    /// Whether verified tokens are cached (so a digest is worth computing).
    #[cfg_attr(not(feature = "oidc"), allow(dead_code))]
    pub(crate) fn caches(&self) -> bool {
        self.inner.cache.is_some()
    }

    /// Forgets a verified token, so that its next use is verified again from scratch.
    ///
    /// This is cache hygiene, not revocation: a verification of the same token already in flight
    /// may put it back, and an ECDSA token has other valid spellings. Revoke tokens where they are
    /// checked (by `jti`, or by removing the key).
    pub fn forget(&self, token: &str) {
        if let Some(cache) = &self.inner.cache {
            cache.invalidate(&token_digest(token));
        }
    }
}

impl Authenticator for JwtAuthenticator {
    fn scheme(&self) -> Scheme {
        Scheme::Bearer
    }

    fn authenticate(&self, request: &Parts) -> Authentication {
        match credential::credentials(&request.headers, "Bearer") {
            None => Authentication::NotPresent,
            Some(token) => match self.verify(token) {
                Ok(identity) => Authentication::Authenticated(identity),
                Err(rejection) => Authentication::Rejected(rejection),
            },
        }
    }
}

impl fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self
            .inner
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("JwtAuthenticator")
            .field("keys", &*keys)
            .field("issuers", &self.inner.issuers)
            .field("audiences", &self.inner.audiences)
            .field("leeway", &self.inner.leeway)
            .field("cache", &self.inner.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// The key of the verified-token cache: the SHA-256 of the whole token.
pub(crate) fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn invalid(reason: Reason, detail: &'static str) -> Rejection {
    Rejection::new(RejectionKind::InvalidToken)
        .with_reason(reason)
        .with_detail(detail)
        .with_challenge(Scheme::Bearer)
}

fn malformed() -> Rejection {
    invalid(Reason::Malformed, "The access token is malformed.")
}

fn claim_type() -> Rejection {
    invalid(
        Reason::ClaimType,
        "A claim of the access token has the wrong type.",
    )
}
