//! The whole stack in one layer, in the recommended order.
//!
//! [`Portcullis::builder`] takes the layers you configured (each is also usable alone) and wraps
//! a router in them, outermost first:
//!
//! | # | layer | why here |
//! |---|---|---|
//! | 1 | [`AuditLayer`] (also the request id) | sees every request and every refusal below it |
//! | 2 | [`ClientIpLayer`] | every layer below keys, limits and logs by the real client address |
//! | 3 | [`TransportSecurityLayer`] | plain HTTP is refused before any credential is looked at |
//! | 4 | per-IP [`RateLimitLayer`], then [`LockoutLayer`] | floods and credential stuffing are throttled before any expensive check |
//! | 5 | [`ValidateLayer`] | malformed or oversized requests are refused before authentication spends work on them |
//! | 6 | [`AuthLayer`] | who is calling |
//! | 7 | per-subject [`RateLimitLayer`] | needs the subject |
//! | 8 | [`RbacLayer`] | needs the identity; deny by default |
//! | 9 | [`RedactLayer`] | innermost, so it sees the identity for role rules and every handler body |
//!
//! The builder adds no behaviour beyond this wiring, which includes telling layers what the
//! others know: the trusted proxies are given once (to [`client_ip`](PortcullisBuilder::client_ip),
//! or to the transport layer) and every layer believes the same list; the audit layer resolves
//! the client address through them (so an abandoned request is recorded with it); the lockout
//! and the transport layer learn the headers the authenticators read credentials from (an API
//! key header of another name). Mistakes that would only show at request time are errors from
//! [`build`](PortcullisBuilder::build): authorization, a lockout or a per-subject limit without
//! an authenticator, a required authentication in front of a route table with public rows (it
//! would shut them: use `AuthLayer::optional()`), a per-IP limit keyed by identity or a header
//! (it runs before authentication), a per-subject limit that is not, two different lists of
//! trusted proxies, or nothing configured.
//! See `docs/architecture.md` for the full reasoning.
//!
//! ```
//! use axum::{Router, routing::get};
//! use portcullis::Portcullis;
//! use portcullis::auth::JwtAuthenticator;
//! use portcullis::auth::JwtKey;
//! use portcullis::rate_limit::{KeyBy, Quota};
//! use portcullis::rbac::{RouteTable, require_scope};
//! use portcullis::{Algorithm, AuthLayer, RateLimitLayer, RbacLayer, RedactLayer, ValidateLayer};
//!
//! # fn main() -> Result<(), portcullis::ConfigError> {
//! let jwt = JwtAuthenticator::builder()
//!     .key(JwtKey::hmac(b"a secret of at least thirty-two bytes!!", Algorithm::HS256)?)
//!     .issuer("https://issuer.example")
//!     .audience(["items-api"])
//!     .build()?;
//! let table = RouteTable::builder()
//!     .route(http::Method::GET, "/items", require_scope("read:items"))
//!     .build()?;
//! let security = Portcullis::builder()
//!     .rate_limit_per_ip(RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_second(50)).build()?)
//!     .validate(ValidateLayer::new())
//!     .auth(AuthLayer::optional().with(jwt))
//!     .rbac(RbacLayer::table(table))
//!     .redact(RedactLayer::new())
//!     .build()?;
//! let app: Router = Router::new()
//!     .route("/items", get(|| async { "[]" }))
//!     .layer(security);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::Either;
use tower_layer::Layer;
use tower_service::Service;

#[cfg(feature = "audit")]
use crate::audit::AuditLayer;
#[cfg(feature = "auth")]
use crate::auth::AuthLayer;
use crate::client_ip::{ClientIpLayer, TrustedProxies};
use crate::error::ConfigError;
use crate::guard::{Chain, Guard};
#[cfg(feature = "rate-limit")]
use crate::rate_limit::{LockoutLayer, RateLimitLayer};
#[cfg(feature = "rbac")]
use crate::rbac::RbacLayer;
#[cfg(feature = "redact")]
use crate::redact::RedactLayer;
#[cfg(feature = "transport")]
use crate::transport::TransportSecurityLayer;
#[cfg(feature = "validate")]
use crate::validate::ValidateLayer;

// The slots of layers whose feature is off never hold one.
#[cfg(not(feature = "audit"))]
use crate::guard::Disabled as AuditLayer;
#[cfg(not(feature = "auth"))]
use crate::guard::Disabled as AuthLayer;
#[cfg(not(feature = "rbac"))]
use crate::guard::Disabled as RbacLayer;
#[cfg(not(feature = "redact"))]
use crate::guard::Disabled as RedactLayer;
#[cfg(not(feature = "transport"))]
use crate::guard::Disabled as TransportSecurityLayer;
#[cfg(not(feature = "validate"))]
use crate::guard::Disabled as ValidateLayer;
#[cfg(not(feature = "rate-limit"))]
use crate::guard::{Disabled as LockoutLayer, Disabled as RateLimitLayer};

/// Every configured portcullis layer, as one [`Layer`] in the recommended order.
#[derive(Clone)]
#[must_use]
pub struct Portcullis {
    layers: PortcullisBuilder,
}

/// Collects the layers of a [`Portcullis`] stack.
#[derive(Clone, Default)]
#[must_use]
pub struct PortcullisBuilder {
    audit: Option<AuditLayer>,
    client_ip: Option<ClientIpLayer>,
    transport: Option<TransportSecurityLayer>,
    rate_limit_per_ip: Option<RateLimitLayer>,
    lockout: Option<LockoutLayer>,
    validate: Option<ValidateLayer>,
    auth: Option<AuthLayer>,
    rate_limit_per_subject: Option<RateLimitLayer>,
    rbac: Option<RbacLayer>,
    redact: Option<RedactLayer>,
}

impl Portcullis {
    /// Starts an empty stack.
    pub fn builder() -> PortcullisBuilder {
        PortcullisBuilder::default()
    }
}

impl PortcullisBuilder {
    /// Audit every request (outermost; also assigns the request id).
    #[cfg(feature = "audit")]
    pub fn audit(mut self, layer: AuditLayer) -> Self {
        self.audit = Some(layer);
        self
    }

    /// Read the client address through these trusted proxies. They are the stack's one list:
    /// the transport layer believes their proto header too, unless it was given its own list
    /// (which must then name the same networks).
    pub fn client_ip(mut self, proxies: TrustedProxies) -> Self {
        self.client_ip = Some(ClientIpLayer::new(proxies));
        self
    }

    /// Refuse plain HTTP, set HSTS and the API security headers.
    #[cfg(feature = "transport")]
    pub fn transport(mut self, layer: TransportSecurityLayer) -> Self {
        self.transport = Some(layer);
        self
    }

    /// A limit for everyone, before authentication: keyed by client address (or route and
    /// address). Not by identity, which is not known yet, nor by a header, whose every new value
    /// would be a fresh budget. A `Route` or `Global` key here lets one anonymous client spend
    /// everyone's budget: use it only as a ceiling above per-address limits.
    #[cfg(feature = "rate-limit")]
    pub fn rate_limit_per_ip(mut self, layer: RateLimitLayer) -> Self {
        self.rate_limit_per_ip = Some(layer);
        self
    }

    /// Lock out addresses and user names after repeated failed logins.
    #[cfg(feature = "rate-limit")]
    pub fn lockout(mut self, layer: LockoutLayer) -> Self {
        self.lockout = Some(layer);
        self
    }

    /// Refuse malformed requests before authentication.
    #[cfg(feature = "validate")]
    pub fn validate(mut self, layer: ValidateLayer) -> Self {
        self.validate = Some(layer);
        self
    }

    /// Authenticate callers.
    #[cfg(feature = "auth")]
    pub fn auth(mut self, layer: AuthLayer) -> Self {
        self.auth = Some(layer);
        self
    }

    /// A limit per caller, after authentication: keyed by subject, API key, route and subject,
    /// or a header.
    #[cfg(feature = "rate-limit")]
    pub fn rate_limit_per_subject(mut self, layer: RateLimitLayer) -> Self {
        self.rate_limit_per_subject = Some(layer);
        self
    }

    /// Authorize requests (deny by default).
    #[cfg(feature = "rbac")]
    pub fn rbac(mut self, layer: RbacLayer) -> Self {
        self.rbac = Some(layer);
        self
    }

    /// Redact responses.
    #[cfg(feature = "redact")]
    pub fn redact(mut self, layer: RedactLayer) -> Self {
        self.redact = Some(layer);
        self
    }

    /// Checks the combination and returns the stack.
    pub fn build(self) -> Result<Portcullis, ConfigError> {
        let needs_auth = [
            (self.rbac.is_some(), "authorization (rbac)"),
            (self.lockout.is_some(), "a lockout"),
            (
                self.rate_limit_per_subject.is_some(),
                "a per-subject rate limit",
            ),
        ];
        if self.auth.is_none()
            && let Some((_, what)) = needs_auth.iter().find(|(set, _)| *set)
        {
            return Err(ConfigError::new(format!(
                "{what} needs an authenticator: add .auth(..)"
            )));
        }
        #[cfg(feature = "rate-limit")]
        if self
            .rate_limit_per_ip
            .as_ref()
            .is_some_and(RateLimitLayer::counts_by_identity)
        {
            return Err(ConfigError::new(
                "rate_limit_per_ip runs before authentication: key it by client IP (not by \
                 identity or a header), or use rate_limit_per_subject",
            ));
        }
        #[cfg(feature = "rate-limit")]
        if self
            .rate_limit_per_subject
            .as_ref()
            .is_some_and(|limit| !limit.counts_by_identity())
        {
            return Err(ConfigError::new(
                "rate_limit_per_subject must be keyed by subject, API key id, route and subject, \
                 or a header",
            ));
        }
        #[cfg(all(feature = "auth", feature = "rbac"))]
        if let (Some(auth), Some(rbac)) = (&self.auth, &self.rbac)
            && auth.is_required()
            && let [first, ..] = rbac.public_routes().as_slice()
        {
            return Err(ConfigError::new(format!(
                "AuthLayer::required() answers 401 on the route table's public routes ({first}, ...): \
                 use AuthLayer::optional(); the table answers 401 to anonymous callers on every \
                 route that needs a caller"
            )));
        }
        self.check_proxies()?;
        let configured = self.audit.is_some()
            || self.client_ip.is_some()
            || self.transport.is_some()
            || self.rate_limit_per_ip.is_some()
            || self.validate.is_some()
            || self.auth.is_some()
            || self.redact.is_some();
        if !configured {
            return Err(ConfigError::new("no layer configured"));
        }
        #[cfg_attr(not(any(feature = "audit", feature = "transport")), allow(unused_mut))]
        let mut layers = self;
        // The trusted proxies are configured once: the layer that was not given them believes
        // the other's. A transport layer that believes the proxies' proto header still sees
        // TLS itself when they send none (re-encrypting proxies).
        #[cfg(feature = "transport")]
        match (&layers.client_ip, &layers.transport) {
            (Some(client_ip), Some(transport)) if !transport.proxies().trusts_any() => {
                let proxies = TrustedProxies::clone(client_ip.proxies());
                layers.transport = Some(transport.clone().with_proxies(proxies));
            }
            (None, Some(transport)) if transport.proxies().trusts_any() => {
                layers.client_ip = Some(ClientIpLayer::new(transport.proxies().clone()));
            }
            _ => {}
        }
        // The audit layer resolves the client address itself, so that a request that ends
        // without an answer is recorded with the client's, not the proxy's.
        #[cfg(feature = "audit")]
        if let Some(client_ip) = &layers.client_ip {
            layers.audit = layers
                .audit
                .map(|audit| audit.resolve_client_ip(client_ip.proxies().clone()));
        }
        // Credentials in the authenticators' own headers (an API key header of another name)
        // are guesses for the lockout and credentials for the transport layer's caching rule.
        #[cfg(feature = "auth")]
        if let Some(auth) = &layers.auth {
            let names = auth.credential_headers();
            #[cfg(feature = "rate-limit")]
            {
                layers.lockout = layers
                    .lockout
                    .map(|lockout| lockout.with_credential_headers(names));
            }
            #[cfg(feature = "transport")]
            {
                layers.transport = layers.transport.map(|transport| {
                    names.iter().fold(transport, |transport, name| {
                        transport.with_credential_header(name.clone())
                    })
                });
            }
            let _ = names;
        }
        Ok(Portcullis { layers })
    }
}

impl PortcullisBuilder {
    /// Both layers that read forwarding headers must believe the same proxies. Given to one of
    /// them, the other believes them too (see `build`); given to both, they must agree.
    #[cfg(feature = "transport")]
    fn check_proxies(&self) -> Result<(), ConfigError> {
        match (&self.client_ip, &self.transport) {
            (Some(client_ip), Some(transport))
                if transport.proxies().trusts_any()
                    && !client_ip.proxies().same_networks(transport.proxies()) =>
            {
                Err(ConfigError::new(
                    "client_ip and transport trust different proxies: give them once, to \
                     .client_ip(..)",
                ))
            }
            _ => Ok(()),
        }
    }

    #[cfg(not(feature = "transport"))]
    fn check_proxies(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}

impl fmt::Debug for Portcullis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut layers = Vec::new();
        let present = [
            (self.layers.audit.is_some(), "audit"),
            (self.layers.client_ip.is_some(), "client_ip"),
            (self.layers.transport.is_some(), "transport"),
            (self.layers.rate_limit_per_ip.is_some(), "rate_limit_per_ip"),
            (self.layers.lockout.is_some(), "lockout"),
            (self.layers.validate.is_some(), "validate"),
            (self.layers.auth.is_some(), "auth"),
            (
                self.layers.rate_limit_per_subject.is_some(),
                "rate_limit_per_subject",
            ),
            (self.layers.rbac.is_some(), "rbac"),
            (self.layers.redact.is_some(), "redact"),
        ];
        for (set, name) in present {
            if set {
                layers.push(name);
            }
        }
        f.debug_struct("Portcullis")
            .field("layers", &layers)
            .finish()
    }
}

impl fmt::Debug for PortcullisBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortcullisBuilder").finish_non_exhaustive()
    }
}

/// `inner` wrapped in `layer` when it is configured.
fn maybe<L: Layer<S>, S>(layer: &Option<L>, inner: S) -> Maybe<L::Service, S> {
    match layer {
        Some(layer) => Maybe::On {
            service: layer.layer(inner),
        },
        None => Maybe::Off { service: inner },
    }
}

/// The checks between the audit and the redaction layer, in their documented order, run by one
/// [`Guard`] with one future instead of nested services.
type Checks = Chain<
    Option<ClientIpLayer>,
    Chain<
        Option<TransportSecurityLayer>,
        Chain<
            Option<RateLimitLayer>,
            Chain<
                Option<LockoutLayer>,
                Chain<
                    Option<ValidateLayer>,
                    Chain<Option<AuthLayer>, Chain<Option<RateLimitLayer>, Option<RbacLayer>>>,
                >,
            >,
        >,
    >,
>;

// The service types, innermost to outermost.
type Inner3<S> = Maybe<<RedactLayer as Layer<S>>::Service, S>;
type Inner2<S> = Guard<Inner3<S>, Arc<Checks>>;
type Inner1<S> = Maybe<<AuditLayer as Layer<Inner2<S>>>::Service, Inner2<S>>;

impl<S> Layer<S> for Portcullis {
    type Service = PortcullisService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let layers = &self.layers;
        let checks = Chain::new(
            layers.client_ip.clone(),
            Chain::new(
                layers.transport.clone(),
                Chain::new(
                    layers.rate_limit_per_ip.clone(),
                    Chain::new(
                        layers.lockout.clone(),
                        Chain::new(
                            layers.validate.clone(),
                            Chain::new(
                                layers.auth.clone(),
                                Chain::new(
                                    layers.rate_limit_per_subject.clone(),
                                    layers.rbac.clone(),
                                ),
                            ),
                        ),
                    ),
                ),
            ),
        );
        let checked = Guard::new(maybe(&layers.redact, inner), Arc::new(checks));
        PortcullisService {
            inner: maybe(&layers.audit, checked),
        }
    }
}

/// The service built by [`Portcullis`]: the configured layers around `S`.
#[derive(Clone)]
pub struct PortcullisService<S> {
    inner: Inner1<S>,
}

impl<S> fmt::Debug for PortcullisService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PortcullisService").finish_non_exhaustive()
    }
}

impl<S, R> Service<R> for PortcullisService<S>
where
    Inner1<S>: Service<R>,
{
    type Response = <Inner1<S> as Service<R>>::Response;
    type Error = <Inner1<S> as Service<R>>::Error;
    type Future = <Inner1<S> as Service<R>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.inner.call(request)
    }
}

/// A layer's service when it is configured, the bare inner service when it is not.
#[derive(Clone, Debug)]
pub enum Maybe<A, B> {
    /// The layer is configured.
    On {
        /// The layer's service.
        service: A,
    },
    /// It is not.
    Off {
        /// The inner service.
        service: B,
    },
}

impl<A, B, R> Service<R> for Maybe<A, B>
where
    A: Service<R>,
    B: Service<R, Response = A::Response, Error = A::Error>,
{
    type Response = A::Response;
    type Error = A::Error;
    type Future = Either<A::Future, B::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::On { service } => service.poll_ready(cx),
            Self::Off { service } => service.poll_ready(cx),
        }
    }

    fn call(&mut self, request: R) -> Self::Future {
        match self {
            Self::On { service } => Either::Left(service.call(request)),
            Self::Off { service } => Either::Right(service.call(request)),
        }
    }
}
