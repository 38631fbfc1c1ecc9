use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::ConnectInfo;
use http::{Request, Response};
use tower_service::Service;

use super::RequestId;
use super::future::{Pending, ResponseFuture};
use super::pipeline::AuditHandle;
use super::request_id::X_REQUEST_ID;
use crate::request::forwarded::{ClientIp, TrustedProxies, canonical, peer};

/// The service built by [`AuditLayer`](super::AuditLayer).
#[derive(Clone)]
pub struct Audit<S> {
    pub(super) inner: S,
    pub(super) handle: AuditHandle,
    pub(super) trust_request_id: bool,
    pub(super) client_ip: Option<Arc<TrustedProxies>>,
}

impl<S: fmt::Debug> fmt::Debug for Audit<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Audit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        // An outer audit layer already named this request: keep its id.
        let request_id = match request.extensions().get::<RequestId>() {
            Some(id) => id.clone(),
            None => RequestId::resolve(request.headers(), self.trust_request_id),
        };
        request.extensions_mut().insert(request_id.clone());
        // A Basic credential is decoded here once, for this record and the layers inside.
        let (mut parts, body) = request.into_parts();
        crate::request::credential::keep_basic(&parts.headers, &mut parts.extensions);
        let mut request = Request::from_parts(parts, body);
        // Inner layers and handlers that read the header see the id that is recorded.
        request
            .headers_mut()
            .insert(&X_REQUEST_ID, request_id.header_value().clone());
        let extensions = request.extensions();
        // The address as the client-IP layer inside will resolve it (the builder hands over its
        // proxies): recorded even if no answer ever brings that layer's result back up.
        let client_ip = match (&self.client_ip, extensions.get::<ClientIp>()) {
            (Some(proxies), _) => Some(proxies.client_ip(peer(extensions), request.headers())),
            (None, Some(ip)) => Some(ip.0),
            (None, None) => extensions
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|c| canonical(c.0.ip())),
        };
        let mut raw = self.handle.inner.pool.take();
        raw.capture(
            &request_id,
            (
                request.method(),
                request.uri(),
                request.headers(),
                extensions,
            ),
            client_ip,
        );
        ResponseFuture::new(
            self.inner.call(request),
            Pending::new(
                raw,
                request_id.header_value().clone(),
                start,
                self.handle.clone(),
            ),
        )
    }
}
