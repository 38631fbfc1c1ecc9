#![allow(private_bounds)] // `Check` is crate-private; see the module docs.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{Check, Verdict};

pin_project! {
    /// Response future of [`Guard`](super::Guard).
    ///
    /// Polling it again after it has completed panics, as `futures`' combinators do: that is a
    /// bug in the caller (never something a request can cause), and an answer must never be
    /// produced twice. The inner future is never polled after it has completed.
    pub struct ResponseFuture<S, C, B>
    where
        S: Service<Request<B>>,
        C: Check,
    {
        #[pin]
        state: State<S, C, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, C, B>
    where
        S: Service<Request<B>>,
        C: Check,
    {
        Deferred {
            #[pin]
            pending: C::Pending,
            // An `Option` so it can be moved out once the check has decided.
            request: Option<(Parts, B, S, C)>,
        },
        Called {
            #[pin]
            future: S::Future,
            admit: Option<C::Admit>,
        },
        Denied {
            response: Option<S::Response>,
        },
        Done,
    }
}

impl<S, C, B> ResponseFuture<S, C, B>
where
    S: Service<Request<B>>,
    C: Check,
{
    pub(super) fn called(future: S::Future, admit: C::Admit) -> Self {
        Self {
            state: State::Called {
                future,
                admit: Some(admit),
            },
        }
    }

    pub(super) fn denied(response: S::Response) -> Self {
        Self {
            state: State::Denied {
                response: Some(response),
            },
        }
    }

    pub(super) fn deferred(pending: C::Pending, parts: Parts, body: B, inner: S, check: C) -> Self {
        Self {
            state: State::Deferred {
                pending,
                request: Some((parts, body, inner, check)),
            },
        }
    }
}

/// The only panics of the future: each `expect` below finds its value taken only when the future
/// is polled again after it returned `Ready`, which is a bug in the caller, never something a
/// request can cause (no request data decides which state the future is in).
const POLLED_AFTER_COMPLETION: &str = "portcullis ResponseFuture polled after completion";

impl<S, C, B, ResBody> Future for ResponseFuture<S, C, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    C: Check,
    B: http_body::Body,
    ResBody: From<Bytes>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut this = self.as_mut().project();
            let next = match this.state.as_mut().project() {
                StateProj::Deferred { pending, request } => {
                    let ready = ready!(pending.poll(cx));
                    let (mut parts, body, mut inner, check) =
                        request.take().expect(POLLED_AFTER_COMPLETION);
                    match check.resume(&mut parts, &body, ready) {
                        Verdict::Allow(admit) => State::Called {
                            future: inner.call(Request::from_parts(parts, body)),
                            admit: Some(admit),
                        },
                        Verdict::Deny(denial) => State::Denied {
                            response: Some(denial.into_response(C::LAYER)),
                        },
                        Verdict::Defer(pending) => State::Deferred {
                            pending,
                            request: Some((parts, body, inner, check)),
                        },
                    }
                }
                StateProj::Called { future, admit } => {
                    let mut result = ready!(future.poll(cx));
                    let admit = admit.take().expect(POLLED_AFTER_COMPLETION);
                    if let Ok(response) = &mut result {
                        C::finish(admit, response);
                    }
                    this.state.set(State::Done);
                    return Poll::Ready(result);
                }
                StateProj::Denied { response } => {
                    let response = response.take().expect(POLLED_AFTER_COMPLETION);
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(response));
                }
                StateProj::Done => panic!("{POLLED_AFTER_COMPLETION}"),
            };
            this.state.set(next);
        }
    }
}

impl<S, C, B> fmt::Debug for ResponseFuture<S, C, B>
where
    S: Service<Request<B>>,
    C: Check,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
