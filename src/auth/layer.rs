use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use tower_layer::Layer;

use super::{Auth, Authenticator};
use crate::error::{Realm, Scheme};
use crate::guard::Guard;
use crate::identity::AnonymousChallenge;

/// Authenticates requests with a list of [`Authenticator`]s; see the [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct AuthLayer {
    pub(super) config: Arc<AuthConfig>,
}

#[derive(Clone)]
pub(super) struct AuthConfig {
    pub(super) authenticators: Vec<Arc<dyn Authenticator>>,
    pub(super) required: bool,
    pub(super) realm: Realm,
    /// The realm and schemes, shared with anonymous requests for the `Identity` extractor.
    pub(super) challenge: AnonymousChallenge,
    /// Headers besides `Authorization` where an authenticator looks for its credential.
    pub(super) credential_headers: Vec<HeaderName>,
}

impl AuthLayer {
    /// Every request must authenticate: without a credential it gets 401, on every route.
    ///
    /// With an [`RbacLayer`](crate::RbacLayer) route table that has
    /// [`public`](crate::rbac::public) rows, use [`optional`](Self::optional) instead: the table
    /// then answers 401 to anonymous callers on every route that needs a caller, and lets them
    /// through on the public ones. [`Portcullis::builder`](crate::Portcullis::builder) refuses
    /// `required` with public rows, which it would shut.
    pub fn required() -> Self {
        Self::new(true)
    }

    /// Anonymous requests pass through without an [`Identity`](crate::Identity); requests with a
    /// credential are still checked, and refused when it is not valid.
    pub fn optional() -> Self {
        Self::new(false)
    }

    fn new(required: bool) -> Self {
        let realm = Realm::default();
        let mut config = AuthConfig {
            authenticators: Vec::new(),
            required,
            challenge: AnonymousChallenge(Arc::new((realm.clone(), Vec::new()))),
            credential_headers: Vec::new(),
            realm,
        };
        config.refresh_challenge();
        Self {
            config: Arc::new(config),
        }
    }

    /// Adds an authenticator; they are tried in the order added.
    pub fn with(mut self, authenticator: impl Authenticator) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.authenticators.push(Arc::new(authenticator));
        config.refresh_challenge();
        self
    }

    /// Sets the `realm` of the `WWW-Authenticate` challenges (default `api`).
    pub fn realm(mut self, realm: Realm) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.realm = realm;
        config.refresh_challenge();
        self
    }
}

impl AuthLayer {
    /// Whether every request must authenticate.
    #[cfg(feature = "rbac")]
    pub(crate) fn is_required(&self) -> bool {
        self.config.required
    }

    /// Headers besides `Authorization` where its authenticators look for credentials.
    pub(crate) fn credential_headers(&self) -> &[HeaderName] {
        &self.config.credential_headers
    }
}

impl AuthConfig {
    fn refresh_challenge(&mut self) {
        let mut schemes: Vec<Scheme> = Vec::new();
        self.credential_headers.clear();
        for authenticator in &self.authenticators {
            if let Some(header) = authenticator.credential_header()
                && !self.credential_headers.contains(header)
            {
                self.credential_headers.push(header.clone());
            }
            let scheme = authenticator.scheme();
            if !schemes.contains(&scheme) {
                schemes.push(scheme);
            }
        }
        if schemes.is_empty() {
            // A layer without authenticators refuses everything; its 401s still need a challenge.
            schemes.push(Scheme::Bearer);
        }
        self.challenge = AnonymousChallenge(Arc::new((self.realm.clone(), schemes)));
    }

    pub(super) fn schemes(&self) -> &[Scheme] {
        &self.challenge.0.1
    }
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("required", &self.config.required)
            .field("realm", &self.config.realm)
            .field("schemes", &self.config.schemes())
            .finish()
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard::new(inner, self.clone())
    }
}
