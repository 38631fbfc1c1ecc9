use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum::response::Response;
use pin_project_lite::pin_project;

use super::layer::RedactConfig;
use crate::identity::Identity;

type Redacting = Pin<Box<dyn Future<Output = Response> + Send>>;

/// What the response pass needs from the request.
pub(super) struct RequestInfo {
    pub(super) config: Arc<RedactConfig>,
    pub(super) identity: Option<Identity>,
    pub(super) route: Option<MatchedPath>,
    pub(super) head: bool,
}

pin_project! {
    /// Response future of [`Redact`](super::Redact).
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling {
            #[pin]
            future: F,
            info: Option<RequestInfo>,
        },
        Redacting {
            future: Redacting,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(future: F, info: RequestInfo) -> Self {
        Self {
            state: State::Calling {
                future,
                info: Some(info),
            },
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().state.project() {
                StateProj::Calling { future, info } => {
                    let response = match future.poll(cx) {
                        Poll::Ready(Ok(response)) => response,
                        other => return other,
                    };
                    let Some(info) = info.take() else {
                        return Poll::Pending;
                    };
                    let future = Box::pin(super::service::redact_response(info, response));
                    self.as_mut()
                        .project()
                        .state
                        .set(State::Redacting { future });
                }
                StateProj::Redacting { future } => return future.as_mut().poll(cx).map(Ok),
            }
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
