//! One trusted OpenID provider: discovery, its JWKS cache and the JWT checks for its tokens.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use jsonwebtoken::Algorithm;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{AdditionalProviderMetadata, ProviderMetadata};
use serde::{Deserialize, Serialize};

use super::http::{HttpClient, HttpConfig};
use super::introspection::IntrospectorBuilder;
use super::jwks::{Jwks, KeySetFetch, RefreshPolicy};
use super::presets::Preset;
use crate::auth::JwtAuthenticator;
use crate::auth::JwtAuthenticatorBuilder;
use crate::auth::jwt::AcceptedIssuers;
use crate::error::{ConfigError, Rejection};
use crate::identity::{ClaimMapping, ClaimSource, Identity};

/// The discovery document fields portcullis reads beyond OpenID Connect Discovery's own.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Extra {
    introspection_endpoint: Option<String>,
}

impl AdditionalProviderMetadata for Extra {}

type Metadata = ProviderMetadata<
    Extra,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// A trusted OpenID provider, configured from its issuer URL.
///
/// [`IssuerBuilder::build`] fetches `/.well-known/openid-configuration`, checks that the document
/// names exactly this issuer, and fetches the `jwks_uri`. From then on the keys are kept fresh in
/// the background (honouring `Cache-Control: max-age` within bounds); a token naming an unknown
/// `kid` triggers at most one refetch per cool-down, shared by every request waiting for it; when
/// the provider is down the last good keys keep working. Tokens are verified by a
/// [`JwtAuthenticator`] of this issuer alone (strict checks, verified-token cache).
///
/// Hand issuers to an [`OidcAuthenticator`](super::OidcAuthenticator). Cloning is cheap.
///
/// # Identity-provider presets
///
/// One line per provider sets its issuer forms and where its tokens keep roles, scopes, the
/// client and the tenant, and adds the checks that tell its access tokens from its ID tokens.
/// Every preset still makes every check of the generic path (signature, algorithms, `typ` when
/// set, expiry, audience); where a provider's tokens force a weaker rule, the preset puts the
/// provider's equivalent in its place.
///
/// | preset | issuer | checks beyond the generic path | roles / scopes / client / tenant |
/// |---|---|---|---|
/// | [`keycloak(base, realm)`](Self::keycloak) | `{base}/realms/{realm}` | `typ` claim `Bearer` (no ID or refresh tokens) | `realm_access.roles` + `resource_access.{aud}.roles` as `{aud}:role` / `scope` / `azp` / - |
/// | [`entra(tenant)`](Self::entra), [`entra_tenants([..])`](Self::entra_tenants), [`entra_at(authority, [..])`](Self::entra_at) | `login.microsoftonline.com/{tid}/v2.0` and `sts.windows.net/{tid}/` for listed tenants only | `tid` equals the issuer's tenant; a client (`azp`/`appid`) is required (no ID tokens) | `roles` / `scp` / `azp`, `appid` / `tid` |
/// | [`auth0(domain)`](Self::auth0) | `https://{domain}/` | RS256 or PS256 | your namespaced claim / `scope` + `permissions` / `client_id`, `azp` / - |
/// | [`okta(domain, server)`](Self::okta) | `https://{domain}/oauth2/{server}` (the org server's tokens are refused) | `cid` required (no ID tokens) | `groups` / `scp` / `cid` / - |
/// | [`cognito(region, pool)`](Self::cognito) | `https://cognito-idp.{region}.amazonaws.com/{pool}` | instead of `aud` (absent): `client_id` among [`clients`](IssuerBuilder::clients), `token_use` `access` | `cognito:groups` / `scope` / `client_id` / - |
/// | [`google()`](Self::google) | `https://accounts.google.com` and `accounts.google.com` | `email_verified` true; callers must be named (`email` or `hd`) | - / - / `azp` / - |
/// | [`zitadel(url)`](Self::zitadel) | as given | `jti` required (no ID tokens) | keys of `urn:zitadel:iam:org:project:{aud}:roles` / `scope` / `client_id`, `azp` / resource owner id |
/// | [`authentik(base, slug)`](Self::authentik) | `{base}/application/o/{slug}/` | `azp` required (no ID tokens) | `groups` / `scope` / `azp` / - |
/// | [`dex(url)`](Self::dex) | as given | (access and ID tokens are alike) | `groups` / - / `azp` / - |
/// | [`hydra(url)`](Self::hydra) | as given | `client_id` required | (`/ext/...`) / `scp` / `client_id` / - |
///
/// Any preset refuses [`any_audience`](IssuerBuilder::any_audience) without
/// [`clients`](IssuerBuilder::clients): these providers sign the tokens of every API of every
/// customer with the same keys. A preset's mapping is a starting point:
/// [`roles_from`](IssuerBuilder::roles_from) and [`scopes_from`](IssuerBuilder::scopes_from)
/// replace one part of it, [`claim_mapping`](IssuerBuilder::claim_mapping) all of it; its checks
/// stay. Mistakes that can be seen before any network access fail at
/// [`build`](IssuerBuilder::build):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use portcullis::oidc::Issuer;
///
/// // Cognito access tokens carry no `aud`: the app clients take its place.
/// let error = Issuer::cognito("eu-west-1", "eu-west-1_AbCdEf123")
///     .audience(["items-api"])
///     .build()
///     .await
///     .unwrap_err();
/// assert!(error.to_string().contains("clients"));
///
/// // Entra ID, a multi-tenant app: tokens of these two tenants only, v1 and v2.
/// let _entra = Issuer::entra_tenants([
///     "72f988bf-86f1-41af-91ab-2d7cd011db47",
///     "9188040d-6c67-4c5b-b112-36a304b66dad",
/// ])
/// .audience(["api://items", "6e74172b-be56-4843-9ff4-e66a39bb12e3"]);
/// // `.build().await?` then fetches the `organizations` metadata and the keys.
/// # }
/// ```
#[derive(Clone)]
pub struct Issuer {
    inner: Arc<IssuerInner>,
}

struct IssuerInner {
    issuer: String,
    accepted: AcceptedIssuers,
    jwks: Arc<Jwks>,
    introspection_endpoint: Option<String>,
    http: HttpConfig,
}

impl Issuer {
    /// Starts configuring the issuer whose `iss` is exactly `issuer_url`.
    pub fn builder(issuer_url: impl Into<String>) -> IssuerBuilder {
        IssuerBuilder {
            issuer: issuer_url.into(),
            discovery_url: None,
            accepted: None,
            preset: None,
            roles_set: false,
            // Keys arrive (and may all vanish) at run time, from the JWKS.
            jwt: JwtAuthenticator::builder().allow_no_keys(),
            jwks_uri: None,
            algorithms: vec![Algorithm::RS256, Algorithm::ES256],
            policy: RefreshPolicy::default(),
            http: HttpConfig::default(),
        }
    }

    /// The issuer identifier, exactly as configured and confirmed by discovery. For a
    /// multi-tenant preset this is the template of the discovery document
    /// (`https://login.microsoftonline.com/{tenantid}/v2.0`); see [`accepts`](Self::accepts).
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Whether a token whose `iss` is `iss` is this issuer's to check: the configured issuer,
    /// or, for a preset, one of the provider's spellings or listed tenants (never a template).
    pub fn accepts(&self, iss: &str) -> bool {
        self.inner.accepted.contains(iss)
    }

    pub(crate) fn accepted(&self) -> &AcceptedIssuers {
        &self.inner.accepted
    }

    /// The provider's introspection endpoint, if its discovery document names one.
    pub fn introspection_endpoint(&self) -> Option<&str> {
        self.inner.introspection_endpoint.as_deref()
    }

    /// Starts an [`Introspector`](super::Introspector) for this provider's introspection
    /// endpoint, with this issuer required in `iss` and the same HTTP settings.
    pub fn introspector(
        &self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Result<IntrospectorBuilder, ConfigError> {
        let endpoint = self.introspection_endpoint().ok_or_else(|| {
            ConfigError::new("the provider's discovery document has no introspection_endpoint")
        })?;
        Ok(
            IntrospectorBuilder::new(endpoint.to_owned(), client_id.into(), client_secret.into())
                .issuer(self.issuer())
                .http_config(self.inner.http.clone()),
        )
    }

    /// Verifies a token with the keys known right now (no refetch). The rejection reason is
    /// `unknown_kid` when the token names a key this issuer does not have (yet).
    pub fn verify(&self, token: &str) -> Result<Identity, Rejection> {
        self.inner.jwks.jwt().verify(token)
    }

    /// How many times the JWKS was fetched (discovery's fetch included). For monitoring.
    pub fn jwks_fetches(&self) -> u64 {
        self.inner.jwks.fetches()
    }

    /// Whether the last JWKS fetch failed and the keys in use are the last good ones.
    pub fn jwks_stale(&self) -> bool {
        self.inner.jwks.is_stale()
    }

    /// Fetches the JWKS now (joining a fetch in flight), ignoring the cool-down. Returns whether
    /// the fetch succeeded; on failure the last good keys stay in use.
    pub async fn refresh_keys(&self) -> bool {
        match self.inner.jwks.refresh(false) {
            Some(refresh) => matches!(refresh.await, KeySetFetch::Fresh(_)),
            None => false,
        }
    }

    pub(crate) fn jwks(&self) -> &Arc<Jwks> {
        &self.inner.jwks
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.inner.issuer)
            .field("jwt", self.inner.jwks.jwt())
            .finish_non_exhaustive()
    }
}

/// Configures an [`Issuer`]. Audience is required (or [`any_audience`](Self::any_audience)).
#[must_use]
pub struct IssuerBuilder {
    pub(super) issuer: String,
    pub(super) discovery_url: Option<String>,
    /// Set by presets whose tokens spell the issuer more than one way.
    pub(super) accepted: Option<AcceptedIssuers>,
    pub(super) preset: Option<Preset>,
    pub(super) roles_set: bool,
    /// The token checks: every JWT setting is the JWT builder's own, set through it.
    pub(super) jwt: JwtAuthenticatorBuilder,
    pub(super) jwks_uri: Option<String>,
    pub(super) algorithms: Vec<Algorithm>,
    pub(super) policy: RefreshPolicy,
    pub(super) http: HttpConfig,
}

impl fmt::Debug for IssuerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerBuilder")
            .field("issuer", &self.issuer)
            .field("audiences", &self.jwt.audiences)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl IssuerBuilder {
    /// Accepts tokens whose `aud` contains one of these.
    pub fn audience<I: IntoIterator<Item = T>, T: Into<String>>(mut self, audiences: I) -> Self {
        self.jwt = self.jwt.audience(audiences);
        self
    }

    /// Accepts any audience: only when this provider issues tokens for this API alone.
    pub fn any_audience(mut self) -> Self {
        self.jwt = self.jwt.any_audience();
        self
    }

    /// The signing algorithms accepted from this issuer (default RS256 and ES256). A JWKS key
    /// with another `alg` is skipped; one without `alg` takes the first of these that fits it.
    pub fn algorithms<I: IntoIterator<Item = Algorithm>>(mut self, algorithms: I) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Requires the header `typ`, e.g. `["at+jwt"]` for RFC 9068 access tokens.
    pub fn typ<I: IntoIterator<Item = T>, T: AsRef<str>>(mut self, accepted: I) -> Self {
        self.jwt = self.jwt.typ(accepted);
        self
    }

    /// Where scopes, roles, the client and the tenant are read from in this issuer's tokens.
    /// This replaces a preset's whole mapping, the client and tenant claims included (Entra's
    /// `appid` and `tid`, Okta's `cid`); to change only roles or scopes, use
    /// [`roles_from`](Self::roles_from) or [`scopes_from`](Self::scopes_from). A preset's checks
    /// (token type, tenant, client) stay.
    pub fn claim_mapping(mut self, mapping: ClaimMapping) -> Self {
        self.jwt = self.jwt.claim_mapping(mapping);
        self.roles_set = true;
        self
    }

    /// Reads roles from these sources, keeping the rest of the mapping (e.g. a preset's scopes).
    /// See [`ClaimMapping::roles_from`].
    pub fn roles_from<I: IntoIterator<Item = T>, T: Into<ClaimSource>>(
        mut self,
        sources: I,
    ) -> Self {
        self.jwt.mapping = std::mem::take(&mut self.jwt.mapping).roles_from(sources);
        self.roles_set = true;
        self
    }

    /// Reads scopes from these sources, keeping the rest of the mapping.
    /// See [`ClaimMapping::scopes_from`].
    pub fn scopes_from<I: IntoIterator<Item = T>, T: Into<ClaimSource>>(
        mut self,
        sources: I,
    ) -> Self {
        self.jwt.mapping = std::mem::take(&mut self.jwt.mapping).scopes_from(sources);
        self
    }

    /// Requires the claim at `path` to equal one of `values`; see
    /// [`JwtAuthenticatorBuilder::require_claim`](crate::auth::JwtAuthenticatorBuilder::require_claim).
    pub fn require_claim<I: IntoIterator<Item = T>, T: Into<serde_json::Value>>(
        mut self,
        path: impl Into<String>,
        values: I,
    ) -> Self {
        self.jwt = self.jwt.require_claim(path, values);
        self
    }

    /// Requires the token's client to be one of these; see
    /// [`JwtAuthenticatorBuilder::clients`](crate::auth::JwtAuthenticatorBuilder::clients).
    pub fn clients<I: IntoIterator<Item = T>, T: Into<String>>(mut self, clients: I) -> Self {
        self.jwt = self.jwt.clients(clients);
        self
    }

    /// Fetches the discovery document from this URL instead of
    /// `{issuer}/.well-known/openid-configuration` (a provider reached by another name inside
    /// your network, or a multi-tenant metadata document). The document must still name the
    /// configured issuer.
    pub fn discovery_url(mut self, url: impl Into<String>) -> Self {
        self.discovery_url = Some(url.into());
        self
    }

    /// Clock skew tolerated for `exp`, `nbf` and `iat` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.jwt = self.jwt.leeway(leeway);
        self
    }

    /// Memory budget of the verified-token cache (default as [`JwtAuthenticator`]'s).
    pub fn cache_max_bytes(mut self, bytes: u64) -> Self {
        self.jwt = self.jwt.cache_max_bytes(bytes);
        self
    }

    /// The clock for `exp`, `nbf` and `iat` (default: the system clock). For tests.
    pub fn clock(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.jwt = self.jwt.clock(clock);
        self
    }

    /// Skips discovery and uses this key set URL (for OAuth servers without OpenID discovery).
    pub fn jwks_uri(mut self, uri: impl Into<String>) -> Self {
        self.jwks_uri = Some(uri.into());
        self
    }

    /// Least time between two JWKS fetches caused by unknown kids (default 30 s), so that tokens
    /// with forged kids cannot make us hammer the provider.
    pub fn refresh_cooldown(mut self, cooldown: Duration) -> Self {
        self.policy.cooldown = cooldown;
        self
    }

    /// Bounds for the background refresh interval taken from `Cache-Control: max-age` (default
    /// 1 min to 24 h; 1 h when the provider sends no max-age; the lower bound after a failure).
    pub fn refresh_interval(mut self, min: Duration, max: Duration) -> Self {
        self.policy.min_interval = min;
        self.policy.max_interval = max.max(min);
        self.policy.default_interval = self.policy.default_interval.clamp(min, max.max(min));
        self
    }

    /// Connect timeout for the provider (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.http.connect_timeout = timeout;
        self
    }

    /// Read timeout for the provider (default 10 s).
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.http.read_timeout = timeout;
        self
    }

    /// Largest discovery document or JWKS accepted, in bytes (default 256 KiB). Enforced while
    /// reading.
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

    /// Allows plain `http://` URLs whose host is a loopback address (`127.0.0.1`, `[::1]`,
    /// `localhost`), for a provider running on this machine in tests. Anything else stays
    /// https-only.
    pub fn allow_http_on_loopback(mut self) -> Self {
        self.http.allow_http_on_loopback = true;
        self
    }

    /// Discovers the provider, fetches its keys and starts the background refresh.
    ///
    /// Fails when the issuer URL is not allowed (https, or http on loopback when allowed), the
    /// discovery document cannot be fetched or names another issuer, or the configuration is
    /// incomplete. A JWKS that cannot be fetched at start-up is an error too: there would be no
    /// last good keys to fall back on.
    pub async fn build(self) -> Result<Issuer, ConfigError> {
        // A refused root bundle first, as the introspector reports it.
        if let Some(refused) = &self.http.refused {
            return Err(refused.clone());
        }
        if self.algorithms.is_empty() {
            return Err(ConfigError::new("an issuer needs at least one algorithm"));
        }
        let mut this = self.finish_preset()?;
        let http = HttpClient::new(this.http.clone())?;
        http.check_url(&this.issuer)?;
        let (jwks_uri, introspection_endpoint) = match &this.jwks_uri {
            Some(uri) => (uri.clone(), None),
            None => discover(&http, this.discovery_url.as_deref(), &this.issuer).await?,
        };
        let jwks_uri = http.check_url(&jwks_uri)?;
        let accepted = this
            .accepted
            .take()
            .unwrap_or_else(|| AcceptedIssuers::one(this.issuer.clone()));
        match (&this.jwt.audiences, this.jwt.any_audience) {
            (Some(_), false) | (None, true) => {}
            (None, false) => {
                return Err(ConfigError::new(
                    "set the issuer's accepted audience(s), or call any_audience() explicitly",
                ));
            }
            (Some(_), true) => {
                return Err(ConfigError::new(
                    "audience() and any_audience() exclude each other",
                ));
            }
        }
        let jwt = this.jwt.accepted_issuers(accepted.clone());
        let jwks = Arc::new(Jwks::new(
            this.issuer.clone(),
            jwks_uri,
            http,
            jwt.build()?,
            this.algorithms,
            this.policy,
        ));
        let first = match jwks.refresh(false) {
            Some(refresh) => refresh.await,
            None => KeySetFetch::Failed,
        };
        if matches!(first, KeySetFetch::Failed) {
            return Err(ConfigError::new(format!(
                "cannot fetch the JWKS of {:?} (see the log)",
                this.issuer
            )));
        }
        jwks.spawn_background(first);
        Ok(Issuer {
            inner: Arc::new(IssuerInner {
                issuer: this.issuer,
                accepted,
                jwks,
                introspection_endpoint,
                http: this.http,
            }),
        })
    }
}

/// OpenID Connect Discovery 1.0 §4: the document must name exactly the issuer we asked for.
async fn discover(
    http: &HttpClient,
    url: Option<&str>,
    issuer: &str,
) -> Result<(String, Option<String>), ConfigError> {
    let url = match url {
        Some(url) => url.to_owned(),
        None => format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ),
    };
    let url = http.check_url(&url)?;
    let fetched = http
        .get(&url)
        .await
        .map_err(|error| ConfigError::new(format!("OpenID discovery at {url} failed: {error}")))?;
    let metadata: Metadata = serde_json::from_slice(&fetched.body).map_err(|error| {
        ConfigError::new(format!(
            "the OpenID discovery document at {url} is not valid: {error}"
        ))
    })?;
    if metadata.issuer().as_str() != issuer {
        return Err(ConfigError::new(format!(
            "the discovery document names issuer {:?}, not {issuer:?}",
            metadata.issuer().as_str()
        )));
    }
    Ok((
        metadata.jwks_uri().as_str().to_owned(),
        metadata
            .additional_metadata()
            .introspection_endpoint
            .clone(),
    ))
}
