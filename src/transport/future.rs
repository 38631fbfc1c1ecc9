use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::response::Response;
use pin_project_lite::pin_project;

use super::layer::TransportConfig;
use super::service::Exchange;

pin_project! {
    /// Response future of [`TransportSecurity`](super::TransportSecurity).
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
            config: Arc<TransportConfig>,
            exchange: Exchange,
        },
        Ready {
            response: Option<Response>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn call(future: F, config: Arc<TransportConfig>, exchange: Exchange) -> Self {
        Self {
            state: State::Calling {
                future,
                config,
                exchange,
            },
        }
    }

    pub(super) fn ready(response: Response) -> Self {
        Self {
            state: State::Ready {
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
        match self.project().state.project() {
            StateProj::Calling {
                future,
                config,
                exchange,
            } => {
                let mut response = ready!(future.poll(cx))?;
                config.secure_headers(&mut response, *exchange);
                Poll::Ready(Ok(response))
            }
            StateProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after completion: never resolve twice.
                None => Poll::Pending,
            },
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
