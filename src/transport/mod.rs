//! HTTPS only, and the response headers every API should send.
//!
//! RFC 6750 §5.3 says bearer tokens MUST be protected by TLS; so must API keys, passwords and
//! session cookies. [`TransportSecurityLayer`] refuses every request that did not reach you over
//! HTTPS, and adds the security headers an API needs to every response, your handlers' and every
//! inner layer's rejections alike.
//!
//! # Which requests count as HTTPS
//!
//! - **TLS terminated by this process**: the request carries a [`TlsConnection`] extension, which
//!   your TLS acceptor inserts (see `examples/tls.rs`).
//! - **TLS terminated by a proxy**: the socket peer (axum's `ConnectInfo<SocketAddr>`) is one of
//!   the [`TrustedProxies`](crate::TrustedProxies) and says so in the header its
//!   [`ProxyHeader`](crate::client_ip::ProxyHeader) implies: `Forwarded: proto=https` (RFC 7239)
//!   for [`ProxyHeader::Forwarded`](crate::client_ip::ProxyHeader::Forwarded),
//!   `X-Forwarded-Proto: https` otherwise. The other header is never read. Your proxy must
//!   overwrite `X-Forwarded-Proto` (nginx: `proxy_set_header X-Forwarded-Proto $scheme`; AWS ALB
//!   does) or append to `Forwarded`; one that passes a client's header on untouched lets the
//!   client claim HTTPS. A trusted proxy's header is believed over the connection it came on: it
//!   describes the client's hop, the one that matters.
//!
//! Everything else is plain HTTP, and so fails closed:
//!
//! - a proto header from a peer that is not a trusted proxy (anyone can write `https`);
//! - an ambiguous header from a trusted proxy: two `X-Forwarded-Proto` lines or a list
//!   (`https, http`; there is no telling which proxy wrote which), two `proto` parameters in one
//!   `Forwarded` element, an unreadable element on our side of the chain, more than 32 elements;
//! - the request target's scheme: `GET https://host/ HTTP/1.1` (absolute form) and HTTP/2's
//!   `:scheme` are written by the client, so `https` there proves nothing about the connection.
//!
//! `Forwarded` elements are read right to left, as [`ClientIpLayer`](crate::ClientIpLayer)
//! reads them: each was appended by a trusted proxy describing the connection it received, so the
//! `proto` that counts is the one of the element whose `for=` is not a trusted proxy (the client's
//! hop); the hops between your proxies may be plain HTTP. What a client wrote to the left of its
//! hop is never read. So list only your proxies as trusted: an address in those networks is
//! believed about the hop before it.
//!
//! # Plain HTTP
//!
//! Refused by default with **403** problem+json (`reason` `https_required`; `credentials_over_http`
//! when it carried credentials, which must then be considered exposed). Not 421, whose meaning is
//! "wrong connection for this authority" and which clients may retry on another connection; not
//! 426, which asks for an in-band TLS upgrade nobody implements. A refusal fails loudly, so a
//! misconfigured client is fixed instead of leaking its token on every call.
//!
//! With [`redirect`](TransportSecurityLayerBuilder::redirect) (or
//! [`redirect_to`](TransportSecurityLayerBuilder::redirect_to) a canonical host) plain `GET` and `HEAD`
//! requests **without credentials** get a **308** to the same path on `https://`: that is for
//! people typing a URL. Other methods are still refused (their body already crossed the network
//! in clear, and a redirect would hide the mistake), and so are requests with credentials. The
//! `Location` host is the configured canonical host, or else the request's own host, used only
//! when it is exactly one well-formed host name or IP literal (the `Host` header and the target's
//! authority agreeing; `X-Forwarded-Host` is never read); anything else is refused, never echoed.
//! Redirects carry `Cache-Control: no-store`.
//!
//! [`allow_http_on_loopback`](TransportSecurityLayerBuilder::allow_http_on_loopback) lets plain HTTP through
//! from a loopback peer to a loopback host (`localhost`, `127.0.0.1`, `[::1]`) for local
//! development. It is off by default, and never applies to a trusted proxy or to a request with a
//! forwarding header (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`, `Via`).
//!
//! # Response headers
//!
//! | header | value | when | a handler's own value |
//! |---|---|---|---|
//! | `Strict-Transport-Security` | `max-age=31536000; includeSubDomains` ([`Hsts`]) | HTTPS responses only (RFC 6797 §7.2) | replaced; removed over plain HTTP |
//! | `X-Content-Type-Options` | `nosniff` | always | replaced |
//! | `Content-Security-Policy` | `default-src 'none'; frame-ancestors 'none'` | always | kept |
//! | `Referrer-Policy` | `no-referrer` | always | kept |
//! | `Cache-Control` | `no-store` | the request carried credentials or an [`Identity`](crate::Identity) | kept |
//! | `Server` | | | removed |
//!
//! Every value can be changed or switched off on the layer. Headers that describe a particular
//! response (CSP, referrer policy, caching) are defaults that a handler can override by setting
//! them; those that describe the whole site (HSTS, `nosniff`) are the layer's.
//!
//! Put the layer **outermost** (outside a [`RenderRejectionLayer`](crate::RenderRejectionLayer)
//! too), so plain HTTP is refused before anything else runs and every response leaves through it.
//!
//! # Example
//!
//! ```
//! use std::net::SocketAddr;
//!
//! use axum::{Router, body::Body, extract::ConnectInfo, http::Request, routing::get};
//! use portcullis::client_ip::{ProxyHeader, TrustedProxies};
//! use portcullis::transport::TransportSecurityLayer;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let proxies = TrustedProxies::new(["10.0.0.0/8"])?.header(ProxyHeader::XForwardedFor);
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(TransportSecurityLayer::builder().trusted_proxies(proxies).build()?);
//!
//! let from = |peer: &str, proto: &str| {
//!     let peer: SocketAddr = peer.parse().expect("an address");
//!     Request::get("/")
//!         .header("x-forwarded-proto", proto)
//!         .extension(ConnectInfo(peer))
//!         .body(Body::empty())
//! };
//!
//! // TLS terminated by the load balancer: served, with HSTS.
//! let response = app.clone().oneshot(from("10.0.0.2:4711", "https")?).await?;
//! assert_eq!(response.status(), 200);
//! assert!(response.headers().contains_key("strict-transport-security"));
//! assert_eq!(response.headers()["x-content-type-options"], "nosniff");
//!
//! // The same header straight from the internet proves nothing.
//! let response = app.oneshot(from("203.0.113.9:4711", "https")?).await?;
//! assert_eq!(response.status(), 403);
//! assert!(!response.headers().contains_key("strict-transport-security"));
//! # Ok(())
//! # }
//! ```

mod layer;
mod scheme;
mod service;

pub use layer::{Hsts, TransportSecurityLayer, TransportSecurityLayerBuilder};
pub use service::{ResponseFuture, TransportSecurity};

/// Marks a request that arrived over a TLS connection this process terminated.
///
/// Insert it into the request extensions from your TLS acceptor, for every request of the
/// connection (`examples/tls.rs` does). It cannot be forged by a client: only code can put it
/// there. Do not insert it for connections that a proxy decrypted; configure
/// [`trusted_proxies`](TransportSecurityLayerBuilder::trusted_proxies) for those.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConnection;

impl TlsConnection {
    /// The marker.
    pub fn new() -> Self {
        Self
    }
}
