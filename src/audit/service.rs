use std::fmt;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use axum::extract::{ConnectInfo, MatchedPath};
use http::header::{AUTHORIZATION, USER_AGENT};
use http::{Request, Response, StatusCode};
use tower_service::Service;

use super::RequestId;
use super::event::RawEvent;
use super::future::{Pending, ResponseFuture};
use super::pipeline::AuditHandle;
use crate::client_ip::ClientIp;
use crate::identity::Identity;

/// The service built by [`AuditLayer`](super::AuditLayer).
#[derive(Clone)]
pub struct Audit<S> {
    pub(super) inner: S,
    pub(super) handle: AuditHandle,
    pub(super) trust_request_id: bool,
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
        let request_id = RequestId::resolve(request.headers(), self.trust_request_id);
        request.extensions_mut().insert(request_id.clone());
        let extensions = request.extensions();
        let client_ip = extensions.get::<ClientIp>().map(|ip| ip.0).or_else(|| {
            extensions
                .get::<ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip())
        });
        let headers = request.headers();
        // Only a Basic credential names a user worth correlating; nothing else is kept.
        let attempted_user = headers
            .get(AUTHORIZATION)
            .filter(|v| {
                v.as_bytes()
                    .get(..6)
                    .is_some_and(|s| s.eq_ignore_ascii_case(b"basic "))
            })
            .cloned();
        let raw = RawEvent {
            time: SystemTime::now(),
            latency_us: 0,
            request_id,
            method: request.method().clone(),
            uri: request.uri().clone(),
            route: extensions.get::<MatchedPath>().cloned(),
            user_agent: headers.get(USER_AGENT).cloned(),
            attempted_user,
            client_ip,
            identity: extensions.get::<Identity>().cloned(),
            status: StatusCode::OK,
            rejection: None,
            decision: None,
            redacted: 0,
            cancelled: true,
        };
        ResponseFuture::new(
            self.inner.call(request),
            Pending::new(raw, start, self.handle.clone()),
        )
    }
}
