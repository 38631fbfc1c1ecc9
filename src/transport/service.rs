use std::convert::Infallible;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, LOCATION, REFERRER_POLICY, SERVER,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};

use super::layer::{PlainHttp, TransportConfig, TransportSecurityLayer};
use super::scheme::{Host, is_https};
use crate::decision::{Decision, LayerKind};
use crate::error::Reason;
use crate::error::{Rejection, RejectionKind};
use crate::guard::{self, Check, Denial, Never, Verdict};
use crate::identity::Identity;
use crate::request::forwarded;

/// Headers only a proxy writes.
const FORWARDING_HEADERS: [&str; 6] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "via",
];

/// The service built by [`TransportSecurityLayer`].
pub type TransportSecurity<S> = guard::Guard<S, TransportSecurityLayer>;

/// Response future of [`TransportSecurity`].
pub type ResponseFuture<S, B> = guard::ResponseFuture<S, TransportSecurityLayer, B>;

/// What the response pass needs to know about the request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Exchange {
    https: bool,
    credentialed: bool,
}

impl Check for TransportSecurityLayer {
    const LAYER: LayerKind = LayerKind::Transport;
    const SERVICE: &'static str = "TransportSecurity";
    type Admit = (TransportSecurityLayer, Exchange);
    type Ready = Infallible;
    type Pending = Never;

    fn check<B>(&self, parts: &mut Parts, _: &B) -> Verdict<Self::Admit, Self::Pending> {
        let config = &self.config;
        let exchange = Exchange {
            https: is_https(parts, &config.proxies),
            credentialed: config.credentialed(parts),
        };
        if exchange.https
            || config.loopback_exempt(parts)
            || config.path_exempt(parts, exchange.credentialed)
        {
            return Verdict::Allow((self.clone(), exchange));
        }
        let mut response = config.plain_http(parts, exchange.credentialed);
        config.secure_headers(&mut response, exchange);
        Verdict::Deny(Denial::Answer(Box::new(response)))
    }

    fn finish<B>((layer, exchange): Self::Admit, response: &mut Response<B>) {
        layer.config.secure_headers(response, exchange);
    }
}

impl TransportConfig {
    fn credentialed(&self, request: &Parts) -> bool {
        let headers = &request.headers;
        self.credential_headers
            .iter()
            .any(|name| headers.contains_key(name))
            || request.extensions.get::<Identity>().is_some()
    }

    /// A plain request from a loopback peer, that is not a trusted proxy, to a loopback host,
    /// carrying no forwarding header: a proxy on this machine that relays the internet to us is
    /// a loopback peer too, and usually says so in one of them.
    fn loopback_exempt(&self, request: &Parts) -> bool {
        if !self.loopback_http {
            return false;
        }
        let peer = forwarded::peer(&request.extensions).to_canonical();
        let headers = &request.headers;
        peer.is_loopback()
            && !self.proxies.trusts_peer(peer)
            && !FORWARDING_HEADERS
                .iter()
                .any(|name| headers.contains_key(*name))
            && Host::of_request(request).is_some_and(|host| host.is_loopback())
    }

    /// A credential-less `GET` or `HEAD` of a path served over plain HTTP (health probes).
    fn path_exempt(&self, request: &Parts, credentialed: bool) -> bool {
        !self.http_paths.is_empty()
            && !credentialed
            && (request.method == Method::GET || request.method == Method::HEAD)
            && self
                .http_paths
                .iter()
                .any(|path| **path == *request.uri.path())
    }

    /// The answer to a plain HTTP request: a 308 where allowed, else 403. Built here rather
    /// than by the guard, so that this layer's headers are on it too.
    fn plain_http(&self, request: &Parts, credentialed: bool) -> Response<Bytes> {
        let refuse = |reason: Reason| {
            let detail = if credentialed {
                "This API is served over HTTPS only; credentials sent over plain HTTP must be \
                 considered exposed."
            } else {
                "This API is served over HTTPS only."
            };
            tracing::debug!(target: "portcullis::transport", reason = reason.as_str(), "plain HTTP refused");
            Rejection::new(RejectionKind::Forbidden)
                .with_reason(reason)
                .with_detail(detail)
                .decided_by(LayerKind::Transport)
                .into_http()
        };
        if credentialed {
            return refuse(Reason::CredentialsOverHttp);
        }
        let PlainHttp::Redirect(canonical) = &self.plain_http else {
            return refuse(Reason::HttpsRequired);
        };
        if request.method != Method::GET && request.method != Method::HEAD {
            return refuse(Reason::HttpsRequired);
        }
        let host = match canonical {
            Some(host) => host.clone(),
            None => match Host::of_request(request) {
                Some(host) => host.without_port(),
                None => return refuse(Reason::RedirectHostInvalid),
            },
        };
        let path = request
            .uri
            .path_and_query()
            .map_or("/", |path| path.as_str());
        if !path.starts_with('/') {
            return refuse(Reason::HttpsRequired);
        }
        let Ok(location) = HeaderValue::try_from(format!("https://{host}{path}")) else {
            return refuse(Reason::HttpsRequired);
        };
        tracing::debug!(target: "portcullis::transport", "plain HTTP redirected");
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
        response.headers_mut().insert(LOCATION, location);
        // 308 is cacheable by default; a shared cache that keys on less than the Host we read
        // must not hand one client's redirect to another.
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response.extensions_mut().insert(Decision::denied(
            LayerKind::Transport,
            Reason::RedirectToHttps,
        ));
        response
    }

    /// Adds this layer's headers to a response. Site-wide ones (HSTS, `nosniff`) replace what
    /// is there; per-response ones (CSP, referrer policy, caching) only fill a gap.
    fn secure_headers<B>(&self, response: &mut Response<B>, exchange: Exchange) {
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
