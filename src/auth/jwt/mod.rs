//! Signed JWT bearer tokens (RFC 7519, RFC 7515, RFC 9068 profile checks).

mod key;
mod strict;

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

pub use key::JwtKey;

use super::{Authentication, Authenticator, JtiDenyList};
use crate::error::Reason;
use crate::error::{ConfigError, Rejection, RejectionKind, Scheme};
use crate::identity::{AuthMethod, ClaimMapping, Identity, YEAR_9999_END, system_time};
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
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
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
            issuer: None,
            any_issuer: false,
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
        let identity = self.verify_signed(token)?;
        // Revocation is checked on every use, cache hits included.
        if let Some(deny) = &self.inner.deny
            && let Some(serde_json::Value::String(jti)) = identity.claim("jti")
            && deny.is_denied(identity.issuer(), jti)
        {
            return Err(invalid(Reason::Revoked, "The access token was revoked."));
        }
        Ok(identity)
    }

    fn verify_signed(&self, token: &str) -> Result<Identity, Rejection> {
        let inner = &*self.inner;
        if token.len() > inner.max_token_bytes {
            return Err(invalid(Reason::TooLarge, "The access token is too large."));
        }
        let Some(cache) = &inner.cache else {
            return inner
                .verify_uncached(token)
                .map(|verified| verified.identity);
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = cache.get(&digest) {
            if hit.live.load(Ordering::Acquire) {
                let now = inner.now();
                if let Some(exp) = hit.exp
                    && now.saturating_sub(inner.leeway) >= exp
                {
                    cache.invalidate(&digest);
                    return Err(invalid(Reason::Expired, "The access token expired."));
                }
                return Ok(hit.identity);
            }
            cache.invalidate(&digest);
        }
        let verified = inner.verify_uncached(token)?;
        let identity = verified.identity.clone();
        cache.insert(digest, verified);
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

    /// Forgets a verified token, so that its next use is verified again from scratch.
    ///
    /// This is cache hygiene, not revocation: a verification of the same token already in flight
    /// may put it back, and an ECDSA token has other valid spellings. Revoke tokens where they are
    /// checked (by `jti`, or by removing the key).
    pub fn forget(&self, token: &str) {
        if let Some(cache) = &self.inner.cache {
            let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            cache.invalidate(&digest);
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
            .field("issuer", &self.inner.issuer)
            .field("audiences", &self.inner.audiences)
            .field("leeway", &self.inner.leeway)
            .field("cache", &self.inner.cache.is_some())
            .finish_non_exhaustive()
    }
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

impl Inner {
    fn now(&self) -> u64 {
        unix_seconds((self.clock)())
    }

    fn verify_uncached(&self, token: &str) -> Result<Verified, Rejection> {
        let mut segments = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(malformed());
        };
        if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
            return Err(malformed());
        }
        let header = decode_object(header_b64)?;
        let algorithm = self.check_header(&header)?;
        // The entry we produce holds the key's flag: if the key is removed while we verify,
        // the entry is never served from the cache.
        let live = {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            let key = select_key(&keys, &header)?;
            if key.algorithm != algorithm {
                return Err(invalid(
                    Reason::AlgNotAllowed,
                    "The token's signing algorithm is not accepted for its key.",
                ));
            }
            let message = &token[..header_b64.len() + 1 + payload_b64.len()];
            let valid = jsonwebtoken::crypto::verify(
                signature_b64,
                message.as_bytes(),
                &key.key,
                algorithm,
            )
            .unwrap_or(false);
            if !valid {
                return Err(invalid(
                    Reason::BadSignature,
                    "The access token signature is invalid.",
                ));
            }
            key.live.clone()
        };
        // Only a correctly signed payload is parsed.
        let claims = decode_object(payload_b64)?;
        self.check_claims(claims, live, token.len())
    }

    fn check_header(&self, header: &Map<String, Value>) -> Result<Algorithm, Rejection> {
        let Some(Value::String(alg)) = header.get("alg") else {
            return Err(malformed());
        };
        if alg.eq_ignore_ascii_case("none") {
            return Err(invalid(
                Reason::AlgNone,
                "Unsigned tokens are not accepted.",
            ));
        }
        let algorithm = Algorithm::from_str(alg).map_err(|_| {
            invalid(
                Reason::AlgNotAllowed,
                "The token's signing algorithm is not accepted.",
            )
        })?;
        if EMBEDDED_KEY_HEADERS
            .iter()
            .any(|name| header.contains_key(*name))
        {
            return Err(invalid(
                Reason::EmbeddedKey,
                "Keys embedded in or linked from the token header are not trusted.",
            ));
        }
        if header.contains_key("crit") {
            return Err(invalid(
                Reason::UnsupportedCrit,
                "The token requires an extension this server does not support.",
            ));
        }
        // RFC 7519 §5.2 and §7.2 step 8: `cty: JWT` announces a nested token, whose own header
        // and signature this server never checks: its payload must not be read as claims.
        match header.get("cty") {
            None => {}
            Some(Value::String(cty)) if normalize_typ(cty) == "jwt" => {
                return Err(invalid(
                    Reason::NestedJwt,
                    "Nested tokens are not accepted.",
                ));
            }
            Some(Value::String(_)) => {}
            Some(_) => return Err(malformed()),
        }
        let typ = match header.get("typ") {
            None => None,
            Some(Value::String(typ)) => Some(typ.as_str()),
            Some(_) => return Err(malformed()),
        };
        if !matches!(header.get("kid"), None | Some(Value::String(_))) {
            return Err(malformed());
        }
        if let Some(accepted) = &self.typ {
            let ok = typ.is_some_and(|typ| accepted.iter().any(|a| *a == normalize_typ(typ)));
            if !ok {
                return Err(invalid(
                    Reason::TypMismatch,
                    "The token type is not accepted.",
                ));
            }
        }
        Ok(algorithm)
    }

    fn check_claims(
        &self,
        claims: Map<String, Value>,
        live: Arc<AtomicBool>,
        token_len: usize,
    ) -> Result<Verified, Rejection> {
        let now = self.now();
        let leeway = self.leeway;
        let exp = numeric_date(claims.get("exp"))?;
        let nbf = numeric_date(claims.get("nbf"))?;
        let iat = numeric_date(claims.get("iat"))?;
        let issuer = optional_string(claims.get("iss"))?;
        let subject = optional_string(claims.get("sub"))?;
        optional_string(claims.get("jti"))?;
        let audiences = audiences(claims.get("aud"))?;
        // RFC 9449 §7.1 / RFC 8705: a sender-constrained token (DPoP or mTLS, marked by `cnf`)
        // presented as a plain bearer token, without its proof, must be refused.
        if claims.contains_key("cnf") {
            return Err(invalid(
                Reason::SenderConstrained,
                "A sender-constrained token cannot be used as a bearer token.",
            ));
        }

        match exp {
            Some(exp) if now.saturating_sub(leeway) >= exp => {
                return Err(invalid(Reason::Expired, "The access token expired."));
            }
            None if self.require_exp => {
                return Err(invalid(
                    Reason::MissingExp,
                    "The access token has no expiry.",
                ));
            }
            _ => {}
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(invalid(
                Reason::NotYetValid,
                "The access token is not valid yet.",
            ));
        }
        if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(invalid(
                Reason::IssuedInFuture,
                "The access token was issued in the future.",
            ));
        }
        if let Some(expected) = &self.issuer
            && issuer != Some(expected.as_str())
        {
            return Err(invalid(
                Reason::BadIssuer,
                "The access token was issued by an untrusted issuer.",
            ));
        }
        if let Some(expected) = &self.audiences
            && !audiences
                .iter()
                .any(|aud| expected.iter().any(|e| e == aud))
        {
            return Err(invalid(
                Reason::BadAudience,
                "The access token is not meant for this API.",
            ));
        }
        let subject = match subject {
            Some(subject) if !subject.is_empty() => subject.to_owned(),
            _ => {
                return Err(invalid(
                    Reason::MissingSub,
                    "The access token has no subject.",
                ));
            }
        };
        let (scopes, roles) = self.mapping.apply(&claims).map_err(|()| claim_type())?;
        let mut builder = Identity::builder(subject, AuthMethod::Jwt)
            .scopes(scopes)
            .roles(roles);
        if let Some(issuer) = issuer {
            builder = builder.issuer(issuer);
        }
        if let Some(exp) = exp {
            builder = builder.expires_at(system_time(exp));
        }
        Ok(Verified {
            identity: builder.claims(claims).build(),
            exp,
            live,
            weight: u32::try_from(token_len.saturating_mul(3).saturating_add(256))
                .unwrap_or(u32::MAX),
        })
    }
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, Rejection> {
    // `URL_SAFE_NO_PAD` refuses padding and non-zero trailing bits, so every token has exactly one
    // accepted spelling.
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| malformed())?;
    strict::parse_object(&bytes).ok_or_else(|| {
        invalid(
            Reason::MalformedJson,
            "The access token is not made of JSON objects with unique member names.",
        )
    })
}

fn select_key<'a>(
    keys: &'a [JwtKey],
    header: &Map<String, Value>,
) -> Result<&'a JwtKey, Rejection> {
    match header.get("kid") {
        Some(Value::String(kid)) => keys
            .iter()
            .find(|key| key.kid.as_deref() == Some(kid.as_str()))
            .ok_or_else(|| {
                invalid(
                    Reason::UnknownKid,
                    "The token was signed with an unknown key.",
                )
            }),
        _ => match keys {
            [only] => Ok(only),
            _ => Err(invalid(
                Reason::KidRequired,
                "The token must name its signing key (kid).",
            )),
        },
    }
}

/// A key as installed in an authenticator: with its own flag, never shared with clones of the
/// `JwtKey` the caller keeps.
fn install(mut key: JwtKey) -> JwtKey {
    key.live = Arc::new(AtomicBool::new(true));
    key
}

fn check_new_key(keys: &[JwtKey], key: &JwtKey) -> Result<(), ConfigError> {
    if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) {
        return Err(ConfigError::new("two keys have the same kid"));
    }
    if !keys.is_empty() && (key.kid.is_none() || keys.iter().any(|k| k.kid.is_none())) {
        return Err(ConfigError::new(
            "every key needs a kid when more than one key is configured",
        ));
    }
    Ok(())
}

/// RFC 7515 §4.1.9: media types compare case-insensitively and `application/` may be left out.
fn normalize_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds; fractions are truncated. A date before
/// 1970 or after the year 9999 (`1e300`, an integer beyond 64 bits) is no date any issuer
/// writes: refused as malformed rather than read as "far in the future", which would make a
/// token live forever.
fn numeric_date(value: Option<&Value>) -> Result<Option<u64>, Rejection> {
    let seconds = match value {
        None => return Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(seconds), _) => Some(seconds),
            // `f` is finite (JSON has no NaN or infinity), and within range before the cast.
            (None, Some(f)) if (0.0..=YEAR_9999_END as f64).contains(&f) => Some(f as u64),
            _ => None,
        },
        Some(_) => return Err(claim_type()),
    };
    match seconds {
        Some(seconds) if seconds <= YEAR_9999_END => Ok(Some(seconds)),
        _ => Err(invalid(
            Reason::DateOutOfRange,
            "A date claim of the access token is out of range.",
        )),
    }
}

fn optional_string(value: Option<&Value>) -> Result<Option<&str>, Rejection> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(claim_type()),
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
fn audiences(value: Option<&Value>) -> Result<Vec<&str>, Rejection> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(aud)) => Ok(vec![aud.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(claim_type))
            .collect(),
        Some(_) => Err(claim_type()),
    }
}

/// Configures a [`JwtAuthenticator`].
#[must_use]
pub struct JwtAuthenticatorBuilder {
    keys: Vec<JwtKey>,
    issuer: Option<String>,
    any_issuer: bool,
    audiences: Option<Vec<String>>,
    any_audience: bool,
    leeway: Duration,
    require_exp: bool,
    typ: Option<Vec<String>>,
    max_token_bytes: usize,
    mapping: ClaimMapping,
    cache_max_bytes: u64,
    clock: Option<Clock>,
    deny: Option<Arc<dyn JtiDenyList>>,
    /// Set by the OIDC issuer, whose keys arrive (and may all vanish) at run time.
    allow_no_keys: bool,
}

impl JwtAuthenticatorBuilder {
    /// Adds a verification key. With more than one key, every key needs a `kid`.
    pub fn key(mut self, key: JwtKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Requires `iss` to equal `issuer` exactly. Required unless [`any_issuer`](Self::any_issuer)
    /// is set: where one key signs for several issuers (multi-tenant providers), the issuer is
    /// what tells tenants apart.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Accepts any issuer (and none). Only for keys that belong to a single issuer.
    pub fn any_issuer(mut self) -> Self {
        self.any_issuer = true;
        self
    }

    /// Requires `aud` to contain one of these audiences. Required unless
    /// [`any_audience`](Self::any_audience) is set: a token minted for another service must not
    /// be accepted here.
    pub fn audience<I: IntoIterator<Item = T>, T: Into<String>>(mut self, audiences: I) -> Self {
        self.audiences = Some(audiences.into_iter().map(Into::into).collect());
        self
    }

    /// Accepts any audience. Only for keys that sign tokens for this service alone.
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Clock skew tolerated for `exp`, `nbf` and `iat` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Accepts tokens without `exp` (by default they are refused).
    pub fn allow_missing_exp(mut self) -> Self {
        self.require_exp = false;
        self
    }

    /// Requires the header `typ` to be one of these, e.g. `["at+jwt"]` for RFC 9068 access tokens
    /// (compared case-insensitively, with or without `application/`).
    pub fn typ<I: IntoIterator<Item = T>, T: AsRef<str>>(mut self, accepted: I) -> Self {
        self.typ = Some(
            accepted
                .into_iter()
                .map(|t| normalize_typ(t.as_ref()))
                .collect(),
        );
        self
    }

    /// Largest accepted token in bytes (default 8 KiB).
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }

    /// Where scopes and roles are read from.
    pub fn claim_mapping(mut self, mapping: ClaimMapping) -> Self {
        self.mapping = mapping;
        self
    }

    /// Memory budget of the verified-token cache in bytes (default 32 MiB, roughly 20 000
    /// typical tokens); 0 turns the cache off. Entries are weighed by token size, so large tokens
    /// cannot make the cache outgrow its budget.
    pub fn cache_max_bytes(mut self, bytes: u64) -> Self {
        self.cache_max_bytes = bytes;
        self
    }

    /// Revoked tokens, by `jti`: consulted on every request, verified-token cache hits included.
    /// Pass an `Arc` of the list and keep a clone of it to revoke tokens at run time.
    pub fn deny_list(mut self, list: impl JtiDenyList) -> Self {
        self.deny = Some(Arc::new(list));
        self
    }

    /// The clock used for `exp`, `nbf` and `iat` (default: the system clock). For tests.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Lets [`build`](Self::build) succeed without keys: the JWKS cache adds them at run time.
    #[cfg_attr(not(feature = "oidc"), allow(dead_code))]
    pub(crate) fn allow_no_keys(mut self) -> Self {
        self.allow_no_keys = true;
        self
    }

    /// Checks the configuration and builds the authenticator.
    pub fn build(self) -> Result<JwtAuthenticator, ConfigError> {
        if self.keys.is_empty() && !self.allow_no_keys {
            return Err(ConfigError::new(
                "a JwtAuthenticator needs at least one key",
            ));
        }
        let mut keys = Vec::with_capacity(self.keys.len());
        for key in self.keys {
            check_new_key(&keys, &key)?;
            keys.push(install(key));
        }
        match (&self.audiences, self.any_audience) {
            (None, false) => {
                return Err(ConfigError::new(
                    "set the accepted audience(s), or call any_audience() explicitly",
                ));
            }
            (Some(_), true) => {
                return Err(ConfigError::new(
                    "audience() and any_audience() exclude each other",
                ));
            }
            (Some(list), false) if list.is_empty() => {
                return Err(ConfigError::new("the audience list is empty"));
            }
            _ => {}
        }
        match (&self.issuer, self.any_issuer) {
            (None, false) => {
                return Err(ConfigError::new(
                    "set the accepted issuer, or call any_issuer() explicitly",
                ));
            }
            (Some(_), true) => {
                return Err(ConfigError::new(
                    "issuer() and any_issuer() exclude each other",
                ));
            }
            _ => {}
        }
        // If another crate in the build also enables jsonwebtoken's `rust_crypto` feature,
        // jsonwebtoken cannot pick a backend and would panic at the first verification; choosing
        // ours explicitly keeps that out of the request path. It fails harmlessly when a provider
        // is already installed.
        let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
        let clock = self
            .clock
            .unwrap_or_else(|| Arc::new(SystemTime::now) as Clock);
        let cache = (self.cache_max_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(self.cache_max_bytes)
                .weigher(|_, verified: &Verified| verified.weight)
                .expire_after(ExpireWithToken {
                    leeway: self.leeway.as_secs(),
                    clock: clock.clone(),
                })
                .build()
        });
        Ok(JwtAuthenticator {
            inner: Arc::new(Inner {
                keys: RwLock::new(keys),

                issuer: self.issuer,
                audiences: if self.any_audience {
                    None
                } else {
                    self.audiences
                },
                leeway: self.leeway.as_secs(),
                require_exp: self.require_exp,
                typ: self.typ,
                max_token_bytes: self.max_token_bytes,
                mapping: self.mapping,
                cache,
                clock,
                deny: self.deny,
            }),
        })
    }
}

/// Cache entries live until their token expires (plus leeway), an hour at most for tokens without
/// `exp`. Only memory depends on this: expiry is checked against the token on every hit.
struct ExpireWithToken {
    leeway: u64,
    clock: Clock,
}

const MAX_ENTRY_LIFETIME: Duration = Duration::from_secs(3600);

impl moka::Expiry<[u8; 32], Verified> for ExpireWithToken {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Verified,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let lifetime = match value.exp {
            None => MAX_ENTRY_LIFETIME,
            Some(exp) => {
                let now = unix_seconds((self.clock)());
                Duration::from_secs(exp.saturating_add(self.leeway).saturating_sub(now))
                    .min(MAX_ENTRY_LIFETIME)
            }
        };
        Some(lifetime)
    }
}

impl fmt::Debug for JwtAuthenticatorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticatorBuilder")
            .field("keys", &self.keys)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}
