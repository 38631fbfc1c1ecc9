//! Who the caller is, as every layer and handler sees it.
//!
//! [`AuthLayer`](crate::AuthLayer) puts an [`Identity`] into the request extensions once a
//! credential is verified; handlers receive it through extractors and never parse headers
//! themselves:
//!
//! - [`Identity`]: the caller; answers 401 when the request is anonymous.
//! - `Option<Identity>`: the caller if there is one (for routes behind an optional [`AuthLayer`]).
//! - [`Claims<T>`]: the token's claims deserialized into your own type.
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use portcullis::{Claims, Identity};
//! use serde::Deserialize;
//!
//! async fn me(identity: Identity) -> String {
//!     format!("{} with scopes {:?}", identity.subject(), identity.scopes())
//! }
//!
//! #[derive(Deserialize)]
//! struct Tenant {
//!     tenant_id: String,
//! }
//!
//! async fn tenant(Claims(tenant): Claims<Tenant>) -> String {
//!     tenant.tenant_id
//! }
//!
//! async fn greeting(caller: Option<Identity>) -> String {
//!     match caller {
//!         Some(identity) => format!("hello {}", identity.subject()),
//!         None => "hello stranger".to_owned(),
//!     }
//! }
//!
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .route("/tenant", get(tenant))
//!     .route("/hello", get(greeting));
//! ```
//!
//! [`AuthLayer`]: crate::AuthLayer

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::decision::LayerKind;
use crate::error::Reason;
use crate::error::{Rejection, RejectionKind, Scheme};

/// How the caller proved who they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthMethod {
    /// A signed JWT bearer token.
    Jwt,
    /// An API key.
    ApiKey,
    /// HTTP Basic with a user name and password.
    Basic,
    /// An opaque token checked by RFC 7662 introspection.
    Introspection,
}

impl AuthMethod {
    /// The method's name as used in logs and audit events (`jwt`, `api_key`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jwt => "jwt",
            Self::ApiKey => "api_key",
            Self::Basic => "basic",
            Self::Introspection => "introspection",
        }
    }
}

/// What kind of name an [`Identity`]'s subject is, which decides whose names it can be
/// confused with: part of its [`Principal`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PrincipalKind {
    /// The `sub` of a token, JWT or introspected alike: a user (or service account) of the token's
    /// issuer. The same `sub` of two issuers names two different principals.
    TokenSubject,
    /// The OAuth client (`client_id`) of an introspected token that names no `sub`: a client, never
    /// one of the issuer's users, even when its id equals a user's `sub`.
    Client,
    /// The subject of an API key grant.
    ApiKey,
    /// A Basic user name.
    Basic,
}

impl PrincipalKind {
    fn of(method: AuthMethod) -> Self {
        match method {
            AuthMethod::Jwt | AuthMethod::Introspection => Self::TokenSubject,
            AuthMethod::ApiKey => Self::ApiKey,
            AuthMethod::Basic => Self::Basic,
        }
    }

    fn tag(self) -> char {
        match self {
            Self::TokenSubject => 't',
            Self::Client => 'c',
            Self::ApiKey => 'k',
            Self::Basic => 'b',
        }
    }
}

/// Who a caller is, whole: the kind of subject, the issuer (if any) and the subject.
///
/// A subject alone names nobody: `alice` the Basic user, `alice` the subject of an API key,
/// `alice` at one identity provider and `alice` at another are four principals. Compare
/// principals (or store [`Principal::key`]) wherever an object belongs to someone, as
/// [`owner`](crate::rbac::owner) does.
///
/// ```
/// use portcullis::identity::{Principal, PrincipalKind};
/// use portcullis::{AuthMethod, Identity};
///
/// let alice = Identity::builder("alice", AuthMethod::Jwt).issuer("https://a.example").build();
/// let owner = Principal::new(PrincipalKind::TokenSubject, Some("https://a.example"), "alice");
/// assert_eq!(alice.principal(), owner);
/// let basic = Identity::builder("alice", AuthMethod::Basic).build();
/// assert_ne!(basic.principal(), owner);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Principal<'a> {
    kind: PrincipalKind,
    issuer: Option<&'a str>,
    subject: &'a str,
}

impl<'a> Principal<'a> {
    /// A principal from its parts, e.g. as stored with a resource.
    pub fn new(kind: PrincipalKind, issuer: Option<&'a str>, subject: &'a str) -> Self {
        Self {
            kind,
            issuer,
            subject,
        }
    }

    /// The kind of subject.
    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// The issuer, when the credential had one.
    pub fn issuer(&self) -> Option<&'a str> {
        self.issuer
    }

    /// The subject.
    pub fn subject(&self) -> &'a str {
        self.subject
    }

    /// One string that names this principal and no other, to store as an owner column: the kind,
    /// then the issuer and the subject each with its length in front (a missing issuer has a tag
    /// of its own, distinct from an empty one). Stable across releases.
    ///
    /// ```
    /// use portcullis::identity::{Principal, PrincipalKind};
    ///
    /// let a = Principal::new(PrincipalKind::TokenSubject, Some("a|b"), "c");
    /// let b = Principal::new(PrincipalKind::TokenSubject, Some("a"), "b|c");
    /// assert_ne!(a.key(), b.key());
    /// assert_eq!(a.key(), "t+3:a|b1:c");
    /// ```
    pub fn key(&self) -> String {
        let mut key =
            String::with_capacity(8 + self.subject.len() + self.issuer.map_or(0, str::len));
        self.write_key(&mut key);
        key
    }

    pub(crate) fn write_key(&self, out: &mut String) {
        out.push(self.kind.tag());
        match self.issuer {
            None => out.push('-'),
            Some(issuer) => {
                out.push('+');
                length_prefixed(out, issuer);
            }
        }
        length_prefixed(out, self.subject);
    }
}

/// `value` with its length in bytes and `:` in front: nothing can be read into it beyond its
/// length, whatever it contains.
pub(crate) fn length_prefixed(out: &mut String, value: &str) {
    let mut length = itoa::Buffer::new();
    out.push_str(length.format(value.len()));
    out.push(':');
    out.push_str(value);
}

/// The authenticated caller.
///
/// Cheap to clone (one reference count). Its `Debug` output names the subject, method, scopes and
/// roles but not the raw claims, which may hold personal data.
#[derive(Clone)]
pub struct Identity(Arc<IdentityInner>);

struct IdentityInner {
    subject: String,
    issuer: Option<String>,
    method: AuthMethod,
    kind: PrincipalKind,
    scopes: Vec<String>,
    roles: Vec<String>,
    expires_at: Option<SystemTime>,
    api_key_id: Option<String>,
    client_id: Option<String>,
    tenant: Option<String>,
    claims: Map<String, Value>,
}

impl Identity {
    /// Starts building an identity, for custom [`Authenticator`](crate::auth::Authenticator)s
    /// and tests.
    pub fn builder(subject: impl Into<String>, method: AuthMethod) -> IdentityBuilder {
        IdentityBuilder {
            inner: IdentityInner {
                subject: subject.into(),
                issuer: None,
                method,
                kind: PrincipalKind::of(method),
                scopes: Vec::new(),
                roles: Vec::new(),
                expires_at: None,
                api_key_id: None,
                client_id: None,
                tenant: None,
                claims: Map::new(),
            },
        }
    }

    /// The subject: the `sub` claim, the API key's subject or the Basic user name; for an
    /// introspected token without `sub`, its `client_id` (then [`principal`](Self::principal) is
    /// of kind [`PrincipalKind::Client`]).
    ///
    /// A subject alone does not say who the caller is (two issuers, a Basic user and an API key
    /// can share one): to compare callers, or to record who owns something, use
    /// [`principal`](Self::principal).
    pub fn subject(&self) -> &str {
        &self.0.subject
    }

    /// Who the caller is, whole: kind of subject, issuer and subject.
    pub fn principal(&self) -> Principal<'_> {
        Principal {
            kind: self.0.kind,
            issuer: self.0.issuer.as_deref(),
            subject: &self.0.subject,
        }
    }

    /// The issuer (`iss`), when the credential had one.
    pub fn issuer(&self) -> Option<&str> {
        self.0.issuer.as_deref()
    }

    /// How the caller authenticated.
    pub fn method(&self) -> AuthMethod {
        self.0.method
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &[String] {
        &self.0.scopes
    }

    /// The roles.
    pub fn roles(&self) -> &[String] {
        &self.0.roles
    }

    /// Whether `scope` was granted (exact, case-sensitive match).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.0.scopes.iter().any(|s| s == scope)
    }

    /// Whether the caller has `role` (exact, case-sensitive match).
    pub fn has_role(&self, role: &str) -> bool {
        self.0.roles.iter().any(|r| r == role)
    }

    /// `Ok` when `scope` was granted, otherwise the RFC 6750 `insufficient_scope` rejection (403,
    /// with a `Bearer error="insufficient_scope", scope="..."` challenge; RFC 6750 makes the realm
    /// optional and a handler does not know the layer's, so it is left out).
    ///
    /// ```
    /// use portcullis::{AuthMethod, Identity};
    ///
    /// let reader = Identity::builder("alice", AuthMethod::Jwt).scopes(["read:items"]).build();
    /// assert!(reader.require_scope("read:items").is_ok());
    /// assert_eq!(reader.require_scope("admin").unwrap_err().status(), 403);
    /// ```
    pub fn require_scope(&self, scope: &'static str) -> Result<(), Rejection> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(Rejection::new(RejectionKind::InsufficientScope)
                .with_reason(Reason::MissingScope)
                .with_scope(scope)
                .with_challenge(Scheme::Bearer))
        }
    }

    /// Checks an object-level rule against one resource: `Ok`, or the same 403 rejection the
    /// [`RbacLayer`](crate::RbacLayer) gives. See [`ResourcePolicy`](crate::rbac::ResourcePolicy).
    #[cfg(feature = "rbac")]
    pub fn authorize<R>(
        &self,
        policy: &crate::rbac::ResourcePolicy<R>,
        resource: &R,
    ) -> Result<(), Rejection> {
        policy.authorize(self, resource)
    }

    /// When the credential stops being valid (`exp`).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.0.expires_at
    }

    /// The id of the API key used, for API key callers.
    pub fn api_key_id(&self) -> Option<&str> {
        self.0.api_key_id.as_deref()
    }

    /// The OAuth client the token was issued to (`client_id`, `azp`, or where the issuer's
    /// [`ClaimMapping`] reads it), when the token names one.
    pub fn client_id(&self) -> Option<&str> {
        self.0.client_id.as_deref()
    }

    /// The tenant (directory, organisation) the token belongs to, when the issuer's
    /// [`ClaimMapping`] reads one (Entra ID's `tid`).
    pub fn tenant(&self) -> Option<&str> {
        self.0.tenant.as_deref()
    }

    /// All claims of the credential as a JSON object (empty for API keys and Basic).
    pub fn claims(&self) -> &Map<String, Value> {
        &self.0.claims
    }

    /// One claim: a top-level name (`email`, `https://example.com/roles`), or a JSON Pointer into
    /// nested objects when the path starts with `/` (`/realm_access/roles`).
    pub fn claim(&self, path: &str) -> Option<&Value> {
        lookup_claim(&self.0.claims, path)
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("subject", &self.0.subject)
            .field("issuer", &self.0.issuer)
            .field("method", &self.0.method)
            .field("kind", &self.0.kind)
            .field("scopes", &self.0.scopes)
            .field("roles", &self.0.roles)
            .field("api_key_id", &self.0.api_key_id)
            .field("client_id", &self.0.client_id)
            .field("tenant", &self.0.tenant)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Identity`].
#[must_use]
pub struct IdentityBuilder {
    inner: IdentityInner,
}

impl fmt::Debug for IdentityBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityBuilder")
            .field("subject", &self.inner.subject)
            .field("method", &self.inner.method)
            .finish_non_exhaustive()
    }
}

impl IdentityBuilder {
    /// Sets the issuer.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.inner.issuer = Some(issuer.into());
        self
    }

    /// Marks the subject as an OAuth client id rather than a user's subject (a token that names
    /// only its client): its [`Principal`] is then of kind [`PrincipalKind::Client`], never equal
    /// to a user's.
    pub fn client_subject(mut self) -> Self {
        self.inner.kind = PrincipalKind::Client;
        self
    }

    /// Sets the scopes.
    pub fn scopes<I: IntoIterator<Item = T>, T: Into<String>>(mut self, scopes: I) -> Self {
        self.inner.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the roles.
    pub fn roles<I: IntoIterator<Item = T>, T: Into<String>>(mut self, roles: I) -> Self {
        self.inner.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the expiry.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.inner.expires_at = Some(at);
        self
    }

    /// Sets what a [`ClaimMapping`] read.
    pub(crate) fn mapped(mut self, mapped: Mapped) -> Self {
        self.inner.scopes = mapped.scopes;
        self.inner.roles = mapped.roles;
        self.inner.client_id = mapped.client;
        self.inner.tenant = mapped.tenant;
        self
    }

    /// Sets the OAuth client the credential was issued to.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.inner.client_id = Some(client_id.into());
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.inner.tenant = Some(tenant.into());
        self
    }

    /// Sets the API key id.
    pub fn api_key_id(mut self, id: impl Into<String>) -> Self {
        self.inner.api_key_id = Some(id.into());
        self
    }

    /// Sets the raw claims.
    pub fn claims(mut self, claims: Map<String, Value>) -> Self {
        self.inner.claims = claims;
        self
    }

    /// Finishes the identity.
    pub fn build(self) -> Identity {
        Identity(Arc::new(self.inner))
    }
}

/// Where roles, scopes, the client and the tenant are read from in a token's claims.
///
/// Each list of [`ClaimSource`]s is tried in order and every source found contributes. A value
/// may be a space-separated string (the `scope` claim of RFC 8693/9068) or an array of strings
/// (`scp`, `roles`, Keycloak's `realm_access.roles`, Auth0's `permissions`), or, for a
/// [`ClaimSource::keys`] source, an object whose member names are the values (ZITADEL's project
/// roles); any other JSON type makes the token invalid rather than silently granting nothing. A
/// path is a top-level claim name, or a JSON Pointer (RFC 6901) when it starts with `/`:
/// `/realm_access/roles`.
///
/// The default reads scopes from `scope` and `scp`, roles from `roles`, the client from
/// `client_id` (RFC 9068) or else `azp` (OpenID Connect), and no tenant. The
/// [identity-provider presets](crate::oidc::Issuer#identity-provider-presets) set each
/// provider's own.
///
/// ```
/// use portcullis::{ClaimMapping, ClaimSource};
///
/// // Keycloak: realm roles plus one client's roles as `items-api:<role>`; Auth0-style
/// // permissions as scopes.
/// let mapping = ClaimMapping::default()
///     .roles_from([
///         ClaimSource::path("/realm_access/roles"),
///         ClaimSource::path("/resource_access/items-api/roles").prefixed("items-api:"),
///     ])
///     .scopes_from(["scope", "permissions"]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct ClaimMapping {
    scopes: Vec<ClaimSource>,
    roles: Vec<ClaimSource>,
    client: Vec<String>,
    tenant: Vec<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        Self {
            scopes: vec!["scope".into(), "scp".into()],
            roles: vec!["roles".into()],
            client: vec!["client_id".into(), "azp".into()],
            tenant: Vec::new(),
        }
    }
}

/// One place in a token's claims that scopes or roles are read from: a path (see
/// [`ClaimMapping`]) read as values or as the member names of an object, with an optional prefix.
/// A plain `&str` or `String` converts into [`ClaimSource::path`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct ClaimSource {
    path: String,
    keys: bool,
    prefix: String,
}

impl ClaimSource {
    /// The values at `path`: a space-separated string or an array of strings.
    pub fn path(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            keys: false,
            prefix: String::new(),
        }
    }

    /// The member names of the object at `path`, e.g. ZITADEL's
    /// `urn:zitadel:iam:org:project:roles`, `{"editor": {"<org id>": "<org domain>"}}`.
    pub fn keys(path: impl Into<String>) -> Self {
        Self {
            keys: true,
            ..Self::path(path)
        }
    }

    /// Prepends `prefix` to every value read here, so values from two places cannot be confused
    /// (Keycloak client roles as `items-api:editor`, apart from a realm role `editor`).
    pub fn prefixed(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
}

impl From<&str> for ClaimSource {
    fn from(path: &str) -> Self {
        Self::path(path)
    }
}

impl From<String> for ClaimSource {
    fn from(path: String) -> Self {
        Self::path(path)
    }
}

impl From<&String> for ClaimSource {
    fn from(path: &String) -> Self {
        Self::path(path.as_str())
    }
}

/// More entries than this in one claim make the token invalid; it bounds the work per token.
const MAX_CLAIM_ENTRIES: usize = 256;

/// What a [`ClaimMapping`] read from one token.
#[derive(Debug, Default)]
pub(crate) struct Mapped {
    pub(crate) scopes: Vec<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) client: Option<String>,
    pub(crate) tenant: Option<String>,
}

impl ClaimMapping {
    /// Reads scopes from these sources (replacing the default).
    pub fn scopes_from<I: IntoIterator<Item = T>, T: Into<ClaimSource>>(mut self, sources: I) -> Self {
        self.scopes = sources.into_iter().map(Into::into).collect();
        self
    }

    /// Reads roles from these sources (replacing the default).
    pub fn roles_from<I: IntoIterator<Item = T>, T: Into<ClaimSource>>(mut self, sources: I) -> Self {
        self.roles = sources.into_iter().map(Into::into).collect();
        self
    }

    /// Reads the OAuth client the token was issued to from the first of these claims present
    /// (replacing the default `client_id`, `azp`). A present claim that is not a string makes
    /// the token invalid.
    pub fn client_from<I: IntoIterator<Item = T>, T: Into<String>>(mut self, paths: I) -> Self {
        self.client = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Reads the tenant (directory, organisation) from the first of these claims present, e.g.
    /// Entra's `tid` (default: none).
    pub fn tenant_from<I: IntoIterator<Item = T>, T: Into<String>>(mut self, paths: I) -> Self {
        self.tenant = paths.into_iter().map(Into::into).collect();
        self
    }

    /// Adds one role source after the others.
    #[cfg_attr(not(feature = "oidc"), allow(dead_code))]
    pub(crate) fn push_roles(&mut self, source: ClaimSource) {
        self.roles.push(source);
    }

    /// Scopes, roles, client and tenant from `claims`, or `Err` when a mapped claim has the
    /// wrong type or too many entries.
    pub(crate) fn apply(&self, claims: &Map<String, Value>) -> Result<Mapped, ()> {
        Ok(Mapped {
            scopes: collect(claims, &self.scopes)?,
            roles: collect(claims, &self.roles)?,
            client: first_string(claims, &self.client)?,
            tenant: first_string(claims, &self.tenant)?,
        })
    }
}

fn collect(claims: &Map<String, Value>, sources: &[ClaimSource]) -> Result<Vec<String>, ()> {
    let mut out: Vec<String> = Vec::new();
    // Items read, duplicates and empty ones included: each is compared with at most
    // MAX_CLAIM_ENTRIES kept ones, so the work per token stays bounded.
    let mut read = 0usize;
    let mut push = |out: &mut Vec<String>, prefix: &str, item: &str| {
        read += 1;
        if read > 4 * MAX_CLAIM_ENTRIES {
            return Err(());
        }
        push_unique(out, prefix, item)
    };
    for source in sources {
        let prefix = source.prefix.as_str();
        match (lookup_claim(claims, &source.path), source.keys) {
            (None | Some(Value::Null), _) => {}
            (Some(Value::String(s)), false) => {
                // RFC 6749 §3.3: scope tokens are separated by spaces.
                for item in s.split(' ') {
                    push(&mut out, prefix, item)?;
                }
            }
            (Some(Value::Array(items)), false) => {
                for item in items {
                    let Value::String(s) = item else {
                        return Err(());
                    };
                    push(&mut out, prefix, s)?;
                }
            }
            (Some(Value::Object(members)), true) => {
                for name in members.keys() {
                    push(&mut out, prefix, name)?;
                }
            }
            _ => return Err(()),
        }
    }
    Ok(out)
}

fn push_unique(out: &mut Vec<String>, prefix: &str, item: &str) -> Result<(), ()> {
    if item.is_empty()
        || out
            .iter()
            .any(|x| x.strip_prefix(prefix) == Some(item))
    {
        return Ok(());
    }
    if out.len() >= MAX_CLAIM_ENTRIES {
        return Err(());
    }
    out.push(format!("{prefix}{item}"));
    Ok(())
}

/// The first of `paths` present, as a string.
fn first_string(claims: &Map<String, Value>, paths: &[String]) -> Result<Option<String>, ()> {
    for path in paths {
        match lookup_claim(claims, path) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if !s.is_empty() => return Ok(Some(s.clone())),
            Some(Value::String(_)) => {}
            Some(_) => return Err(()),
        }
    }
    Ok(None)
}

/// A path starting with `/` is a JSON Pointer (RFC 6901) into nested objects; anything else is
/// one top-level claim name, dots and slashes included. One reading per path, so a claim named
/// `realm_access.roles` can never stand in for the nested one.
pub(crate) fn lookup_claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if !path.starts_with('/') {
        return claims.get(path);
    }
    let mut current: Option<&Value> = None;
    for raw in path[1..].split('/') {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        current = Some(match current {
            None => claims.get(&segment)?,
            Some(value) => match value {
                Value::Object(map) => map.get(&segment)?,
                Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
                _ => return None,
            },
        });
    }
    current
}

/// Seconds since the epoch as a `SystemTime`, capped at the end of year 9999 so an absurd `exp`
/// reads as "far future", never as an overflow.
/// The last second of the year 9999: the latest NumericDate portcullis accepts in a token
/// (later ones are refused as malformed) and the latest time an identity can hold.
pub(crate) const YEAR_9999_END: u64 = 253_402_300_799;

pub(crate) fn system_time(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds.min(YEAR_9999_END))
}

/// Installed in the request extensions by an optional [`AuthLayer`](crate::AuthLayer) for anonymous
/// requests, so the [`Identity`] extractor's 401 names the schemes the layer accepts.
#[derive(Clone, Debug)]
pub(crate) struct AnonymousChallenge(pub(crate) Arc<(crate::error::Realm, Vec<Scheme>)>);

pub(crate) fn missing_identity(extensions: &http::Extensions) -> Rejection {
    let mut rejection =
        Rejection::new(RejectionKind::MissingCredentials).with_reason(Reason::MissingCredentials);
    match extensions.get::<AnonymousChallenge>() {
        Some(AnonymousChallenge(challenge)) => {
            rejection.set_realm(&challenge.0);
            rejection.set_challenges(&challenge.1);
        }
        None => rejection = rejection.with_challenge(Scheme::Bearer),
    }
    rejection
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Identity>()
            .cloned()
            // Refused in the handler, after the layers let the request through: recorded
            // under `auth`, not under their allow.
            .ok_or_else(|| missing_identity(&parts.extensions).decided_by(LayerKind::Auth))
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Identity {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Identity>().cloned())
    }
}

/// The caller's claims deserialized into your own type.
///
/// Answers 401 when there is no identity, and 403 when the claims do not have the shape of `T`:
/// the token is valid, it just does not carry what this handler needs (a 401 would make clients
/// refresh the token in a loop).
#[derive(Clone, Debug)]
pub struct Claims<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Claims<T> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let identity = parts
            .extensions
            .get::<Identity>()
            .ok_or_else(|| missing_identity(&parts.extensions).decided_by(LayerKind::Auth))?;
        T::deserialize(&identity.0.claims).map(Claims).map_err(|_| {
            Rejection::new(RejectionKind::Forbidden)
                .with_detail("The credential does not carry the claims this resource needs.")
                .with_reason(Reason::ClaimsShape)
                .decided_by(LayerKind::Auth)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mapping_reads_strings_arrays_and_nested_paths() {
        let claims = json!({
            "scope": "a b  a",
            "scp": ["c"],
            "realm_access": { "roles": ["admin"] },
            "https://example.com/roles": ["ns"],
            "realm_access.roles": ["forged"],
        });
        // The literal name `realm_access.roles` is never read as the nested path.
        let mapping = ClaimMapping::default().roles_from([
            "/realm_access/roles",
            "https://example.com/roles",
            "missing",
            "/missing/x",
        ]);
        let mapped = mapping.apply(claims.as_object().unwrap()).unwrap();
        assert_eq!(mapped.scopes, ["a", "b", "c"]);
        assert_eq!(mapped.roles, ["admin", "ns"]);
    }

    #[test]
    fn mapping_reads_object_keys_prefixes_client_and_tenant() {
        let claims = json!({
            "urn:zitadel:iam:org:project:roles": { "editor": {"1": "a.example"}, "viewer": {} },
            "realm_access": { "roles": ["editor"] },
            "resource_access": { "items-api": { "roles": ["editor", "admin"] } },
            "azp": "web",
            "tid": "t-1",
        });
        let mapping = ClaimMapping::default()
            .roles_from([
                ClaimSource::keys("urn:zitadel:iam:org:project:roles"),
                ClaimSource::path("/realm_access/roles"),
                ClaimSource::path("/resource_access/items-api/roles").prefixed("items-api:"),
            ])
            .tenant_from(["tid"]);
        let mapped = mapping.apply(claims.as_object().unwrap()).unwrap();
        assert_eq!(
            mapped.roles,
            ["editor", "viewer", "items-api:editor", "items-api:admin"]
        );
        assert_eq!(mapped.client.as_deref(), Some("web"));
        assert_eq!(mapped.tenant.as_deref(), Some("t-1"));
        // `client_id` comes first; a tenant is only read where configured.
        let both = json!({ "client_id": "cid", "azp": "web", "tid": "t" });
        let mapped = ClaimMapping::default()
            .apply(both.as_object().unwrap())
            .unwrap();
        assert_eq!(mapped.client.as_deref(), Some("cid"));
        assert_eq!(mapped.tenant, None);
        // A keys source needs an object; a values source refuses one; a client must be a string.
        let keys = ClaimMapping::default().roles_from([ClaimSource::keys("roles")]);
        assert!(keys.apply(json!({"roles": ["a"]}).as_object().unwrap()).is_err());
        assert!(keys.apply(json!({"roles": {"a": 1}}).as_object().unwrap()).is_ok());
        assert!(
            ClaimMapping::default()
                .apply(json!({"azp": ["web"]}).as_object().unwrap())
                .is_err()
        );
        // Duplicates and empty items count towards the bound on the work per token.
        let repeated = vec!["a"; 2000].join(" ");
        assert!(
            ClaimMapping::default()
                .apply(json!({ "scope": repeated }).as_object().unwrap())
                .is_err()
        );
        assert!(
            ClaimMapping::default()
                .apply(json!({ "scope": " ".repeat(2000) }).as_object().unwrap())
                .is_err()
        );
        let many: Map<String, Value> = (0..300).map(|i| (format!("r{i}"), json!({}))).collect();
        assert!(keys.apply(json!({ "roles": many }).as_object().unwrap()).is_err());
    }

    #[test]
    fn mapping_rejects_wrong_types() {
        for claims in [
            json!({"scope": 1}),
            json!({"scope": ["a", 2]}),
            json!({"scope": {"x": 1}}),
        ] {
            let claims = claims.as_object().unwrap();
            assert!(ClaimMapping::default().apply(claims).is_err(), "{claims:?}");
        }
        let many: Vec<String> = (0..300).map(|i| format!("s{i}")).collect();
        assert!(
            ClaimMapping::default()
                .apply(json!({ "scp": many }).as_object().unwrap())
                .is_err()
        );
    }

    #[test]
    fn debug_hides_claims() {
        let mut claims = Map::new();
        claims.insert("email".into(), json!("alice@example.com"));
        let identity = Identity::builder("alice", AuthMethod::Jwt)
            .claims(claims)
            .build();
        let debug = format!("{identity:?}");
        assert!(debug.contains("alice"));
        assert!(!debug.contains("example.com"));
        assert_eq!(identity.claim("email"), Some(&json!("alice@example.com")));
        assert_eq!(identity.claim("/email"), Some(&json!("alice@example.com")));
        assert_eq!(identity.claim("/email/x"), None);
    }

    #[test]
    fn absurd_expiry_is_far_future() {
        let far = system_time(u64::MAX);
        assert!(far > SystemTime::now());
    }
}
