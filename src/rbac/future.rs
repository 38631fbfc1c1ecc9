use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::response::Response;
use pin_project_lite::pin_project;

use crate::decision::Decision;

pin_project! {
    /// Response future of [`Rbac`](super::Rbac).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            decision: Option<Decision>,
        },
        Rejected {
            response: Option<Response>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn call(future: F, decision: Decision) -> Self {
        Self {
            kind: Kind::Called {
                future,
                decision: Some(decision),
            },
        }
    }

    pub(super) fn rejected(response: Response) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, decision } => {
                let mut response = ready!(future.poll(cx))?;
                // An inner layer or guard that refused has the last word on why.
                if let Some(decision) = decision.take()
                    && response.extensions().get::<Decision>().is_none()
                {
                    response.extensions_mut().insert(decision);
                }
                Poll::Ready(Ok(response))
            }
            KindProj::Rejected { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after completion: never resolve twice.
                None => Poll::Pending,
            },
        }
    }
}
