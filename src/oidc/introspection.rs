//! RFC 7662 token introspection for opaque access tokens, with a bounded cache.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::request::Parts;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenResponse, BasicTokenType,
};
use oauth2::{
    AccessToken, Client, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ExtraTokenFields,
    IntrospectionUrl, StandardRevocableToken, StandardTokenIntrospectionResponse,
    TokenIntrospectionResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::http::{HttpClient, HttpConfig};
use super::invalid;
use crate::auth::{Authentication, Authenticator};
use crate::error::Reason;
use crate::error::{ConfigError, Rejection, Scheme};
use crate::identity::{AuthMethod, ClaimMapping, Identity, system_time};
use crate::request::credential;

/// Every member of the introspection response beyond RFC 7662's, for the [`ClaimMapping`]
/// (`roles`, `realm_access`, ...).
#[derive(Clone, Debug, Deserialize, Serialize)]
struct OtherClaims {
    #[serde(flatten)]
    members: Map<String, Value>,
}

impl ExtraTokenFields for OtherClaims {}

type Response = StandardTokenIntrospectionResponse<OtherClaims, BasicTokenType>;

type IntrospectionClient = Client<
    BasicErrorResponse,
    BasicTokenResponse,
    Response,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
>;

/// Checks opaque bearer tokens with the provider's RFC 7662 introspection endpoint.
///
/// The request authenticates this API as an OAuth client (`client_secret_basic`). Answers are
/// cached by the SHA-256 of the token in a bounded cache: an active token until its `exp` (at most
/// [`max_positive_ttl`](IntrospectorBuilder::max_positive_ttl), 5 min by default, so a
/// revocation shows within that time), an inactive one for
/// [`negative_ttl`](IntrospectorBuilder::negative_ttl) (10 s) so garbage tokens cannot make us
/// call the provider for every request. `active: false` is a 401 `invalid_token`; so is an
/// unreachable provider (with a warning in the log): never a 5xx.
///
/// The identity is built like a JWT's: scopes and roles through the [`ClaimMapping`], `iss`
/// checked when configured, `aud` against the audiences. The subject is `sub`, or `client_id` for
/// client-credentials tokens that have no `sub`: such an identity's
/// [`principal`](crate::Identity::principal) is then of kind
/// [`PrincipalKind::Client`](crate::PrincipalKind::Client), so a client named like a user is never
/// taken for that user by [`owner`](crate::rbac::owner) checks or per-subject rate limits.
///
/// On its own it is an [`Authenticator`] for every bearer token; next to JWT issuers, give it to
/// [`OidcAuthenticator::builder`](super::OidcAuthenticator::builder), which sends it only the
/// tokens that are not JWTs.
#[derive(Clone)]
pub struct Introspector {
    inner: Arc<Inner>,
}

struct Inner {
    client: IntrospectionClient,
    http: HttpClient,
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    mapping: ClaimMapping,
    negative_ttl: Duration,
    max_positive_ttl: Duration,
    max_token_bytes: usize,
    cache: moka::sync::Cache<[u8; 32], Cached>,
    /// Calls to the provider in flight at once. Every unknown token costs one call, so without a
    /// bound a flood of random tokens would become a flood on the provider (and get us
    /// rate-limited there, locking out real tokens).
    calls: Arc<tokio::sync::Semaphore>,
}

#[derive(Clone)]
struct Cached {
    identity: Option<Identity>,
    exp: Option<u64>,
    ttl: Duration,
    /// Roughly the bytes it holds ([`weigh`]).
    weight: u32,
}

/// Roughly the bytes an answer's identity holds in memory: each JSON value is a node of some 64
/// bytes besides its text, so an array of many small values (`[0,0,0,...]`) weighs what it costs,
/// not what it took on the wire.
fn weigh(identity: Option<&Identity>) -> u32 {
    fn nodes_and_text(value: &Value) -> (u64, u64) {
        match value {
            Value::String(text) => (1, text.len() as u64),
            Value::Array(items) => items.iter().map(nodes_and_text).fold((1, 0), add),
            Value::Object(members) => members
                .iter()
                .map(|(key, value)| add(nodes_and_text(value), (0, key.len() as u64)))
                .fold((1, 0), add),
            _ => (1, 0),
        }
    }
    fn add(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
        (a.0 + b.0, a.1 + b.1)
    }
    let (nodes, text) = identity.map_or((0, 0), |identity| {
        identity
            .claims()
            .iter()
            .map(|(key, value)| add(nodes_and_text(value), (0, key.len() as u64)))
            .fold((1, 0), add)
    });
    u32::try_from(256 + 64 * nodes + text).unwrap_or(u32::MAX)
}

impl Introspector {
    /// Starts configuring introspection at `endpoint` as the OAuth client `client_id`.
    pub fn builder(
        endpoint: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> IntrospectorBuilder {
        IntrospectorBuilder::new(endpoint.into(), client_id.into(), client_secret.into())
    }

    /// Introspects one token (without the `Bearer ` prefix).
    pub async fn introspect(&self, token: &str) -> Result<Identity, Rejection> {
        let inner = &*self.inner;
        if token.len() > inner.max_token_bytes {
            return Err(invalid(Reason::TooLarge, "The access token is too large."));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = inner.cache.get(&digest) {
            return match hit.identity {
                Some(identity) if hit.exp.is_none_or(|exp| now() < exp) => Ok(identity),
                Some(_) => Err(invalid(Reason::Expired, "The access token expired.")),
                None => Err(inactive()),
            };
        }
        let Ok(_call) = inner.calls.clone().try_acquire_owned() else {
            tracing::warn!("too many token introspections in flight; refusing the token");
            return Err(invalid(
                Reason::IntrospectionBusy,
                "The access token could not be checked right now.",
            ));
        };
        let access_token = AccessToken::new(token.to_owned());
        let http = inner.http.clone();
        let call = move |request| {
            let http = http.clone();
            async move { http.execute(request).await }
        };
        let response = match inner
            .client
            .introspect(&access_token)
            .set_token_type_hint("access_token")
            .request_async(&call)
            .await
        {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%error, "token introspection failed; refusing the token");
                return Err(invalid(
                    Reason::IntrospectionFailed,
                    "The access token could not be checked.",
                ));
            }
        };
        let (outcome, exp) = inner.judge(&response);
        let ttl = match (&outcome, exp) {
            (Ok(_), Some(exp)) => {
                Duration::from_secs(exp.saturating_sub(now())).min(inner.max_positive_ttl)
            }
            (Ok(_), None) => inner.max_positive_ttl,
            (Err(_), _) => inner.negative_ttl,
        };
        inner.cache.insert(
            digest,
            Cached {
                identity: outcome.as_ref().ok().cloned(),
                exp,
                ttl,
                weight: weigh(outcome.as_ref().ok()),
            },
        );
        outcome
    }
}

fn inactive() -> Rejection {
    invalid(Reason::Inactive, "The access token is not active.")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Inner {
    fn judge(&self, response: &Response) -> (Result<Identity, Rejection>, Option<u64>) {
        if !response.active() {
            return (Err(inactive()), None);
        }
        // Only bearer access tokens: a refresh token is "active" too, and a sender-constrained
        // token (RFC 9449 DPoP, RFC 8705 mTLS: a `cnf` claim) presented without its proof must be
        // refused.
        let bearer = response
            .token_type()
            .is_none_or(|kind| kind.as_ref().eq_ignore_ascii_case("bearer"));
        if !bearer || response.extra_fields().members.contains_key("cnf") {
            return (
                Err(invalid(
                    Reason::NotABearerAccessToken,
                    "The token is not a bearer access token.",
                )),
                None,
            );
        }
        let exp = response
            .exp()
            .map(|at| u64::try_from(at.timestamp()).unwrap_or(0));
        (self.identity(response, exp), exp)
    }

    fn identity(&self, response: &Response, exp: Option<u64>) -> Result<Identity, Rejection> {
        if exp.is_some_and(|exp| now() >= exp) {
            return Err(invalid(Reason::Expired, "The access token expired."));
        }
        if let Some(expected) = &self.issuer
            && response.iss() != Some(expected.as_str())
        {
            return Err(invalid(
                Reason::BadIssuer,
                "The access token was issued by an untrusted issuer.",
            ));
        }
        if let Some(expected) = &self.audiences {
            let audiences = response.aud().map(Vec::as_slice).unwrap_or_default();
            if !audiences.iter().any(|aud| expected.contains(aud)) {
                return Err(invalid(
                    Reason::BadAudience,
                    "The access token is not meant for this API.",
                ));
            }
        }
        // Without `sub`, the token speaks for its OAuth client: the client id becomes the subject,
        // marked as a client's so that it never passes for a user with the same name.
        let (subject, client) = match (response.sub(), response.client_id()) {
            (Some(sub), _) => (sub, false),
            (None, Some(client)) => (client.as_str(), true),
            (None, None) => ("", false),
        };
        if subject.is_empty() {
            return Err(invalid(
                Reason::MissingSub,
                "The access token has no subject.",
            ));
        }
        let subject = subject.to_owned();
        let Ok(Value::Object(mut claims)) = serde_json::to_value(response) else {
            return Err(invalid(
                Reason::ClaimType,
                "A claim of the access token has the wrong type.",
            ));
        };
        claims.retain(|_, value| !value.is_null());
        let mapped = self.mapping.apply(&claims).map_err(|()| {
            invalid(
                Reason::ClaimType,
                "A claim of the access token has the wrong type.",
            )
        })?;
        let mut builder = Identity::builder(subject, AuthMethod::Introspection).mapped(mapped);
        if client {
            builder = builder.client_subject();
        }
        if let Some(iss) = response.iss() {
            builder = builder.issuer(iss);
        }
        if let Some(exp) = exp {
            builder = builder.expires_at(system_time(exp));
        }
        Ok(builder.claims(claims).build())
    }
}

impl Authenticator for Introspector {
    fn scheme(&self) -> Scheme {
        Scheme::Bearer
    }

    fn authenticate(&self, request: &Parts) -> Authentication {
        match credential::credentials(&request.headers, "Bearer") {
            None => Authentication::NotPresent,
            Some(token) => self.authenticate_token(token),
        }
    }
}

impl Introspector {
    pub(crate) fn authenticate_token(&self, token: &str) -> Authentication {
        // The layer checked the header's syntax; an introspector used alone must not send the
        // identity provider what no client could have sent through the layer.
        if !credential::is_credential(token.as_bytes()) {
            return Authentication::Rejected(invalid(
                Reason::Malformed,
                "The access token is malformed.",
            ));
        }
        let this = self.clone();
        let token = token.to_owned();
        Authentication::Pending(Box::pin(async move { this.introspect(&token).await }))
    }
}

impl fmt::Debug for Introspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Introspector")
            .field("endpoint", &self.inner.client.introspection_url().as_str())
            .field("client_id", &self.inner.client.client_id().as_str())
            .field("issuer", &self.inner.issuer)
            .finish_non_exhaustive()
    }
}

/// Configures an [`Introspector`]. Audience is required (or
/// [`any_audience`](Self::any_audience)).
#[must_use]
pub struct IntrospectorBuilder {
    endpoint: String,
    client_id: String,
    client_secret: String,
    issuer: Option<String>,
    audiences: Option<Vec<String>>,
    any_audience: bool,
    mapping: ClaimMapping,
    negative_ttl: Duration,
    max_positive_ttl: Duration,
    cache_max_bytes: u64,
    max_token_bytes: usize,
    max_concurrent_calls: usize,
    http: HttpConfig,
}

impl fmt::Debug for IntrospectorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The client secret is never printed.
        f.debug_struct("IntrospectorBuilder")
            .field("endpoint", &self.endpoint)
            .field("client_id", &self.client_id)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl IntrospectorBuilder {
    pub(crate) fn new(endpoint: String, client_id: String, client_secret: String) -> Self {
        Self {
            endpoint,
            client_id,
            client_secret,
            issuer: None,
            audiences: None,
            any_audience: false,
            mapping: ClaimMapping::default(),
            negative_ttl: Duration::from_secs(10),
            max_positive_ttl: Duration::from_secs(300),
            cache_max_bytes: 32 << 20,
            max_token_bytes: 8 * 1024,
            max_concurrent_calls: 32,
            // Short: a request waits for this, and a slow provider must not pile requests up.
            http: HttpConfig {
                connect_timeout: Duration::from_secs(2),
                read_timeout: Duration::from_secs(3),
                max_response_bytes: 64 * 1024,
                ..HttpConfig::default()
            },
        }
    }

    pub(crate) fn http_config(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }

    /// Requires the response's `iss` to equal `issuer`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires the response's `aud` to contain one of these.
    pub fn audience<I: IntoIterator<Item = T>, T: Into<String>>(mut self, audiences: I) -> Self {
        self.audiences = Some(audiences.into_iter().map(Into::into).collect());
        self
    }

    /// Accepts any audience (the provider only issues tokens for this API).
    pub fn any_audience(mut self) -> Self {
        self.any_audience = true;
        self
    }

    /// Where scopes and roles are read from in the introspection response.
    pub fn claim_mapping(mut self, mapping: ClaimMapping) -> Self {
        self.mapping = mapping;
        self
    }

    /// How long an inactive answer is remembered (default 10 s).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Longest time an active answer is remembered, however far its `exp` (default 5 min): the
    /// delay before a revocation at the provider is seen.
    pub fn max_positive_ttl(mut self, ttl: Duration) -> Self {
        self.max_positive_ttl = ttl;
        self
    }

    /// Memory budget of the answer cache in bytes (default 32 MiB, some 30 000 typical answers).
    /// Entries are weighed by the claims they hold, so a provider that answers with huge claims
    /// (or lets users edit theirs) cannot make the cache outgrow its budget.
    pub fn cache_max_bytes(mut self, bytes: u64) -> Self {
        self.cache_max_bytes = bytes;
        self
    }

    /// Connect timeout (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.http.connect_timeout = timeout;
        self
    }

    /// Read timeout (default 3 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.http.read_timeout = timeout;
        self
    }

    /// Largest introspection response accepted (default 64 KiB), enforced while reading.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.http.max_response_bytes = bytes;
        self
    }

    /// Also trusts the CA certificates of this PEM bundle, for a provider whose certificate a
    /// private CA issued (the bundled web PKI roots stay trusted). Refused when the bundle holds
    /// no certificate: `build()` then fails.
    pub fn root_certificates(mut self, pem: &[u8]) -> Self {
        self.http.add_root_certificates(pem);
        self
    }

    /// Allows a plain `http://` endpoint on a loopback address, for tests.
    pub fn allow_http_on_loopback(mut self) -> Self {
        self.http.allow_http_on_loopback = true;
        self
    }

    /// Most introspection calls in flight at once (default 32); beyond them a token that is not
    /// cached is refused with 401 rather than queued.
    pub fn max_concurrent_calls(mut self, calls: usize) -> Self {
        self.max_concurrent_calls = calls;
        self
    }

    /// Checks the configuration and builds the introspector.
    pub fn build(self) -> Result<Introspector, ConfigError> {
        let http = HttpClient::new(self.http)?;
        let endpoint = http.check_url(&self.endpoint)?;
        let audiences = match (self.audiences, self.any_audience) {
            (Some(list), false) if !list.is_empty() => Some(list),
            (None, true) => None,
            _ => {
                return Err(ConfigError::new(
                    "set the introspector's audience(s), or call any_audience() explicitly",
                ));
            }
        };
        let client = Client::new(ClientId::new(self.client_id))
            .set_client_secret(ClientSecret::new(self.client_secret))
            .set_introspection_url(IntrospectionUrl::from_url(endpoint));
        let cache = moka::sync::Cache::builder()
            .max_capacity(self.cache_max_bytes)
            .weigher(|_, cached: &Cached| cached.weight)
            .expire_after(CachedTtl)
            .build();
        Ok(Introspector {
            inner: Arc::new(Inner {
                client,
                http,
                issuer: self.issuer,
                audiences,
                mapping: self.mapping,
                negative_ttl: self.negative_ttl,
                max_positive_ttl: self.max_positive_ttl,
                max_token_bytes: self.max_token_bytes,
                cache,
                calls: Arc::new(tokio::sync::Semaphore::new(
                    self.max_concurrent_calls.max(1),
                )),
            }),
        })
    }
}

struct CachedTtl;

impl moka::Expiry<[u8; 32], Cached> for CachedTtl {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Cached,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::PrincipalKind;

    /// A provider answering with huge claims (or letting users edit theirs) weighs what it costs:
    /// an array of 32 000 zeros is 64 KiB on the wire and some 2 MiB in memory.
    #[test]
    fn answers_are_weighed_by_what_they_hold() {
        let small = Identity::builder("alice", AuthMethod::Introspection).build();
        let zeros: Map<String, Value> =
            serde_json::from_str(&format!("{{\"x\":[{}0]}}", "0,".repeat(32_000))).unwrap();
        let big = Identity::builder("alice", AuthMethod::Introspection)
            .claims(zeros)
            .build();
        assert!(weigh(None) >= 256 && weigh(Some(&small)) < 1024);
        assert!(weigh(Some(&big)) >= 64 * 32_000);
    }

    fn introspector() -> Introspector {
        Introspector::builder("https://idp.test/introspect", "api", "secret")
            .any_audience()
            .build()
            .unwrap()
    }

    /// A bad root bundle fails `build()` (the setter stays infallible), whatever comes after.
    #[test]
    fn a_bad_root_bundle_fails_the_build() {
        for bad in [&b"not a certificate"[..], b""] {
            let built = Introspector::builder("https://idp.test/introspect", "api", "secret")
                .any_audience()
                .root_certificates(bad)
                .build();
            let error = built.expect_err("a bad root bundle was accepted");
            assert!(
                error.to_string().contains("root certificate bundle"),
                "{error}"
            );
        }
    }

    fn judge(response: serde_json::Value) -> Identity {
        let response: Response = serde_json::from_value(response).unwrap();
        introspector().inner.judge(&response).0.unwrap()
    }

    /// Issue #16: a token without `sub` speaks for its client, and its principal says so: it is
    /// never the user whose `sub` equals the client id.
    #[test]
    fn a_client_id_subject_is_marked_as_a_client() {
        let client = judge(serde_json::json!({
            "active": true, "client_id": "alice", "iss": "https://idp.test",
        }));
        assert_eq!(client.subject(), "alice");
        assert_eq!(client.principal().kind(), PrincipalKind::Client);
        let user = judge(serde_json::json!({
            "active": true, "sub": "alice", "client_id": "app", "iss": "https://idp.test",
        }));
        assert_eq!(user.principal().kind(), PrincipalKind::TokenSubject);
        assert_ne!(client.principal(), user.principal());
        let response: Response =
            serde_json::from_value(serde_json::json!({ "active": true })).unwrap();
        let refused = introspector().inner.judge(&response).0.unwrap_err();
        assert_eq!(refused.reason(), "missing_sub");
    }
}
