use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, REFERRER_POLICY, SERVER,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use tower_service::Service;

use super::ResponseFuture;
use super::layer::{PlainHttp, TransportConfig};
use super::scheme::{Host, is_https};
use crate::client_ip;
use crate::decision::Decision;
use crate::error::{Rejection, RejectionKind};
use crate::identity::Identity;

/// Headers only a proxy writes.
const FORWARDING_HEADERS: [&str; 6] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "via",
];

/// The service built by [`TransportSecurityLayer`](super::TransportSecurityLayer).
#[derive(Clone)]
pub struct TransportSecurity<S> {
    pub(super) inner: S,
    pub(super) config: Arc<TransportConfig>,
}

impl<S: fmt::Debug> fmt::Debug for TransportSecurity<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportSecurity")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

/// What the response pass needs to know about the request.
#[derive(Clone, Copy, Debug)]
pub(super) struct Exchange {
    pub(super) https: bool,
    pub(super) credentialed: bool,
}

impl<S, B> Service<Request<B>> for TransportSecurity<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let exchange = Exchange {
            https: is_https(&request, &self.config.proxies),
            credentialed: self.config.credentialed(&request),
        };
        if exchange.https || self.config.loopback_exempt(&request) {
            return ResponseFuture::call(self.inner.call(request), self.config.clone(), exchange);
        }
        let mut response = self.config.plain_http(&request, exchange.credentialed);
        self.config.secure_headers(&mut response, exchange);
        ResponseFuture::ready(response)
    }
}

impl TransportConfig {
    fn credentialed<B>(&self, request: &Request<B>) -> bool {
        let headers = request.headers();
        self.credential_headers
            .iter()
            .any(|name| headers.contains_key(name))
            || request.extensions().get::<Identity>().is_some()
    }

    /// A plain request from a loopback peer, that is not a trusted proxy, to a loopback host,
    /// carrying no forwarding header: a proxy on this machine that relays the internet to us is
    /// a loopback peer too, and usually says so in one of them.
    fn loopback_exempt<B>(&self, request: &Request<B>) -> bool {
        if !self.loopback_http {
            return false;
        }
        let peer = client_ip::peer(request.extensions()).to_canonical();
        let headers = request.headers();
        peer.is_loopback()
            && !self.proxies.trusts_peer(peer)
            && !FORWARDING_HEADERS
                .iter()
                .any(|name| headers.contains_key(*name))
            && Host::of_request(request).is_some_and(|host| host.is_loopback())
    }

    /// The answer to a plain HTTP request: a 308 where allowed, else 403.
    fn plain_http<B>(&self, request: &Request<B>, credentialed: bool) -> Response {
        let refuse = |reason: &'static str| {
            let detail = if credentialed {
                "This API is served over HTTPS only; credentials sent over plain HTTP must be \
                 considered exposed."
            } else {
                "This API is served over HTTPS only."
            };
            tracing::debug!(target: "portcullis::transport", reason, "plain HTTP refused");
            let mut response = Rejection::new(RejectionKind::Forbidden)
                .with_reason(reason)
                .with_detail(detail)
                .into_response();
            response
                .extensions_mut()
                .insert(Decision::denied("transport", reason));
            response
        };
        if credentialed {
            return refuse("credentials_over_http");
        }
        let PlainHttp::Redirect(canonical) = &self.plain_http else {
            return refuse("https_required");
        };
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return refuse("https_required");
        }
        let host = match canonical {
            Some(host) => host.clone(),
            None => match Host::of_request(request) {
                Some(host) => host.without_port(),
                None => return refuse("redirect_host_invalid"),
            },
        };
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |path| path.as_str());
        if !path.starts_with('/') {
            return refuse("https_required");
        }
        let Ok(location) = HeaderValue::try_from(format!("https://{host}{path}")) else {
            return refuse("https_required");
        };
        tracing::debug!(target: "portcullis::transport", "plain HTTP redirected");
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
        response.headers_mut().insert(LOCATION, location);
        // 308 is cacheable by default; a shared cache that keys on less than the Host we read
        // must not hand one client's redirect to another.
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
            .extensions_mut()
            .insert(Decision::denied("transport", "redirect_to_https"));
        response
    }

    /// Adds this layer's headers to a response. Site-wide ones (HSTS, `nosniff`) replace what
    /// is there; per-response ones (CSP, referrer policy, caching) only fill a gap.
    pub(super) fn secure_headers(&self, response: &mut Response, exchange: Exchange) {
        let headers = response.headers_mut();
        if self.strip_server {
            headers.remove(SERVER);
        }
        match (&self.hsts, exchange.https) {
            (Some(hsts), true) => {
                headers.insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
            }
            (None, true) => {}
            // RFC 6797 §7.2: never over plain HTTP, whoever set it.
            (_, false) => {
                headers.remove(STRICT_TRANSPORT_SECURITY);
            }
        }
        if self.nosniff {
            headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        }
        default(
            headers,
            CONTENT_SECURITY_POLICY,
            &self.content_security_policy,
        );
        default(headers, REFERRER_POLICY, &self.referrer_policy);
        if exchange.credentialed {
            default(headers, CACHE_CONTROL, &self.cache_control);
        }
    }
}

fn default(headers: &mut HeaderMap, name: HeaderName, value: &Option<HeaderValue>) {
    if let Some(value) = value {
        headers.entry(name).or_insert_with(|| value.clone());
    }
}
