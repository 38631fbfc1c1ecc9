//! The client's IP address, done right: the socket peer unless it is a trusted proxy.
//!
//! Behind a load balancer every request comes from the balancer's address, so the client has to
//! be read from `X-Forwarded-For`, `Forwarded` (RFC 7239) or `X-Real-IP`. Those headers are
//! written by whoever sent the request, so they are believed only when the socket peer is one of
//! your [`TrustedProxies`], and only as far as the chain of trusted proxies goes: the address
//! used is the right-most one that is *not* a trusted proxy. A client cannot spoof its way past
//! that: anything it writes to the left of the last untrusted hop is ignored.
//!
//! [`ClientIpLayer`] works this out once per request and leaves a [`ClientIp`] in the request
//! extensions; the rate limiter, the audit layer and your handlers read it from there.
//!
//! ```
//! use axum::{Router, routing::get};
//! use portcullis::client_ip::{ClientIp, ClientIpLayer, ProxyHeader, TrustedProxies};
//!
//! # fn main() -> Result<(), portcullis::ConfigError> {
//! let proxies = TrustedProxies::new(["10.0.0.0/8", "fd00::/8"])?.header(ProxyHeader::XForwardedFor);
//! let app: Router = Router::new()
//!     .route("/ip", get(|ClientIp(ip): ClientIp| async move { ip.to_string() }))
//!     .layer(ClientIpLayer::new(proxies));
//! # Ok(())
//! # }
//! ```
//!
//! Serve the router with `into_make_service_with_connect_info::<SocketAddr>()` so the socket
//! peer is known; without it (e.g. in `oneshot` tests) the peer counts as `0.0.0.0`.

use std::convert::Infallible;
use std::sync::Arc;

use http::Response;
use http::request::Parts;
use tower_layer::Layer;

use crate::decision::LayerKind;
use crate::guard::{Check, Guard, Never, Verdict};
use crate::request::forwarded::peer;
pub use crate::request::forwarded::{ClientIp, ProxyHeader, TrustedProxies};

/// Works out the [`ClientIp`] of each request once; see the [module docs](self).
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientIpLayer {
    proxies: Arc<TrustedProxies>,
}

impl ClientIpLayer {
    /// Believes forwarding headers from `proxies` only.
    pub fn new(proxies: TrustedProxies) -> Self {
        Self {
            proxies: Arc::new(proxies),
        }
    }
}

impl ClientIpLayer {
    #[cfg(any(feature = "audit", feature = "transport"))]
    pub(crate) fn proxies(&self) -> &Arc<TrustedProxies> {
        &self.proxies
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ClientIpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Guard::new(inner, self.clone())
    }
}

/// The service built by [`ClientIpLayer`].
pub type ClientIpService<S> = Guard<S, ClientIpLayer>;

/// Response future of [`ClientIpService`]: leaves the [`ClientIp`] in the response extensions
/// too, for layers outside this one (the audit layer).
pub type ResponseFuture<S, B> = crate::guard::ResponseFuture<S, ClientIpLayer, B>;

impl Check for ClientIpLayer {
    const LAYER: LayerKind = LayerKind::ClientIp;
    const SERVICE: &'static str = "ClientIpService";
    type Admit = ClientIp;
    type Ready = Infallible;
    type Pending = Never;

    fn check<B>(&self, parts: &mut Parts, _: &B) -> Verdict<Self::Admit, Self::Pending> {
        // Resolved here even when an outer layer or the application put a `ClientIp` in
        // already: only this layer's proxies decide the address the layers below key by.
        let ip = ClientIp(
            self.proxies
                .client_ip(peer(&parts.extensions), &parts.headers),
        );
        parts.extensions.insert(ip);
        Verdict::Allow(ip)
    }

    fn finish<B>(ip: Self::Admit, response: &mut Response<B>) {
        response.extensions_mut().insert(ip);
    }
}
