//! Configuring a [`JwtAuthenticator`].

use super::verify::{check_new_key, install, normalize_typ, unix_seconds};
use super::*;

/// Configures a [`JwtAuthenticator`].
#[must_use]
pub struct JwtAuthenticatorBuilder {
    pub(super) keys: Vec<JwtKey>,
    pub(super) issuers: Option<AcceptedIssuers>,
    pub(super) any_issuer: bool,
    pub(crate) claim_rules: Vec<ClaimRule>,
    pub(crate) clients: Option<Vec<String>>,
    pub(crate) client_required: bool,
    pub(crate) audiences: Option<Vec<String>>,
    pub(crate) any_audience: bool,
    pub(super) leeway: Duration,
    pub(super) require_exp: bool,
    pub(super) typ: Option<Vec<String>>,
    pub(super) max_token_bytes: usize,
    pub(crate) mapping: ClaimMapping,
    pub(super) cache_max_bytes: u64,
    pub(super) clock: Option<Clock>,
    pub(super) deny: Option<Arc<dyn JtiDenyList>>,
    /// Set by the OIDC issuer, whose keys arrive (and may all vanish) at run time.
    pub(super) allow_no_keys: bool,
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
        self.issuers = Some(AcceptedIssuers::one(issuer.into()));
        self
    }

    /// Accepts these issuers (replacing [`issuer`](Self::issuer)): the spellings of one
    /// provider, or the tenants of a multi-tenant one.
    #[cfg_attr(not(feature = "oidc"), allow(dead_code))]
    pub(crate) fn accepted_issuers(mut self, issuers: AcceptedIssuers) -> Self {
        self.issuers = Some(issuers);
        self
    }

    /// Requires the claim at `path` (a name, or a JSON Pointer starting with `/`) to equal one of
    /// `values`, e.g. `require_claim("token_use", ["access"])`; a token without it is refused.
    /// Each call adds a rule; every rule must hold.
    pub fn require_claim<I: IntoIterator<Item = T>, T: Into<Value>>(
        mut self,
        path: impl Into<String>,
        values: I,
    ) -> Self {
        self.claim_rules.push(ClaimRule::one_of(path, values));
        self
    }

    /// Refuses tokens that name no client (an ID token where an access token is expected, for
    /// providers whose access tokens always name theirs).
    #[cfg_attr(not(feature = "oidc"), allow(dead_code))]
    pub(crate) fn require_client(mut self) -> Self {
        self.client_required = true;
        self
    }

    /// Requires the token's client (read as the [`ClaimMapping`] says, by default `client_id`
    /// or `azp`) to be one of these: tokens issued to other applications of the same provider
    /// are refused even when their audience fits.
    pub fn clients<I: IntoIterator<Item = T>, T: Into<String>>(mut self, clients: I) -> Self {
        self.clients = Some(clients.into_iter().map(Into::into).collect());
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
        if self.clients.as_ref().is_some_and(Vec::is_empty) {
            return Err(ConfigError::new("the client list is empty"));
        }
        if self
            .claim_rules
            .iter()
            .any(|rule| rule.values.as_ref().is_some_and(Vec::is_empty))
        {
            return Err(ConfigError::new("require_claim() needs at least one value"));
        }
        match (&self.issuers, self.any_issuer) {
            (Some(issuers), false) if issuers.issuers.is_empty() => {
                return Err(ConfigError::new("the issuer list is empty"));
            }
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

                issuers: self.issuers,
                claim_rules: self.claim_rules,
                clients: self.clients,
                client_required: self.client_required,
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
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}
