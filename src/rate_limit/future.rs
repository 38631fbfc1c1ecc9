use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::response::Response;
use http::Request;
use pin_project_lite::pin_project;
use tower_service::Service;

use super::Outcome;
use super::layer::RateLimitConfig;
use super::service::{HeaderPlan, Which, decide, limit_of};

/// A shared-backend check in flight.
pub(super) type BoxCheck = Pin<Box<dyn Future<Output = Outcome> + Send>>;

pin_project! {
    /// Response future of [`RateLimit`](super::RateLimit).
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
        Checking {
            check: BoxCheck,
            request: Option<(Request<B>, S)>,
            config: Arc<RateLimitConfig>,
            which: Which,
        },
        Called {
            #[pin]
            future: S::Future,
            plan: Option<HeaderPlan>,
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
    pub(super) fn called(future: S::Future, plan: Option<HeaderPlan>) -> Self {
        Self {
            state: State::Called { future, plan },
        }
    }

    pub(super) fn rejected(response: Response) -> Self {
        Self {
            state: State::Rejected {
                response: Some(response),
            },
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) fn checking(
        check: BoxCheck,
        request: Request<B>,
        inner: S,
        config: Arc<RateLimitConfig>,
        which: Which,
    ) -> Self {
        Self {
            state: State::Checking {
                check,
                request: Some((request, inner)),
                config,
                which,
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
                StateProj::Checking {
                    check,
                    request,
                    config,
                    which,
                } => {
                    let outcome = ready!(check.as_mut().poll(cx));
                    let Some((request, mut inner)) = request.take() else {
                        return Poll::Pending;
                    };
                    let config = config.clone();
                    let next = decide(
                        &mut inner,
                        &config,
                        limit_of(&config, *which),
                        outcome,
                        request,
                    );
                    this.state.set(next.state);
                }
                StateProj::Called { future, plan } => {
                    let mut response = ready!(future.poll(cx))?;
                    if let Some(plan) = plan.take() {
                        plan.write(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Rejected { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}
