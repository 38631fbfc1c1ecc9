use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::response::Response;
use http::Request;
use http::request::Parts;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::BoxAuthFuture;
use super::layer::AuthConfig;
use super::service::finish_rejection;
use crate::identity::Identity;
use crate::rate_limit::PendingAttempt;

pin_project! {
    /// Response future of [`Auth`](super::Auth).
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Authenticating {
            future: BoxAuthFuture,
            // `Option`s so they can be moved out once the credential is checked.
            request: Option<(Parts, B, S)>,
            config: Arc<AuthConfig>,
        },
        Calling {
            #[pin]
            future: S::Future,
            // Left in the response extensions for outer layers (the audit layer).
            identity: Option<Identity>,
        },
        Rejected {
            response: Option<Response>,
        },
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response>,
{
    pub(super) fn call(future: S::Future, identity: Option<Identity>) -> Self {
        Self {
            state: State::Calling { future, identity },
        }
    }

    pub(super) fn rejected(response: Response) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    pub(super) fn pending(
        future: BoxAuthFuture,
        parts: Parts,
        body: B,
        inner: S,
        config: Arc<AuthConfig>,
    ) -> Self {
        Self {
            state: State::Authenticating {
                future,
                request: Some((parts, body, inner)),
                config,
            },
        }
    }
}

impl<S, B> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response>,
{
    type Output = Result<Response, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            match this.state.as_mut().project() {
                StateProj::Authenticating {
                    future,
                    request,
                    config,
                } => {
                    let outcome = ready!(future.as_mut().poll(cx));
                    let Some((mut parts, body, mut inner)) = request.take() else {
                        return Poll::Pending;
                    };
                    match outcome {
                        Ok(identity) => {
                            if let Some(attempt) = parts.extensions.get::<PendingAttempt>() {
                                attempt.accepted();
                            }
                            parts.extensions.insert(identity.clone());
                            let future = inner.call(Request::from_parts(parts, body));
                            this.state.set(State::Calling {
                                future,
                                identity: Some(identity),
                            });
                        }
                        Err(rejection) => {
                            let response = finish_rejection(config, rejection);
                            // Leave the finished authentication future behind for good.
                            this.state.set(State::Rejected { response: None });
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
                StateProj::Calling { future, identity } => {
                    let mut result = ready!(future.poll(cx));
                    if let (Ok(response), Some(identity)) = (&mut result, identity.take()) {
                        response.extensions_mut().insert(identity);
                    }
                    return Poll::Ready(result);
                }
                StateProj::Rejected { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        // Polled again after completion: never resolve twice.
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}
