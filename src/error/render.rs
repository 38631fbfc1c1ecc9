//! The one place to give rejections your API's own error shape.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::response::Response;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::Rejection;

/// Turns a [`Rejection`] into a response of your own design.
///
/// Implemented for every `Fn(&Rejection) -> Response + Clone + Send + Sync + 'static`.
pub trait RenderRejection: Clone + Send + Sync + 'static {
    /// Renders the rejection. The status is yours to choose, but [`RenderRejectionLayer`] adds the
    /// rejection's protocol headers (`WWW-Authenticate`, `Retry-After`, ...) that the response
    /// does not already have, so clients keep working.
    fn render(&self, rejection: &Rejection) -> Response;
}

impl<F> RenderRejection for F
where
    F: Fn(&Rejection) -> Response + Clone + Send + Sync + 'static,
{
    fn render(&self, rejection: &Rejection) -> Response {
        self(rejection)
    }
}

/// Re-renders every rejection produced by the layers and extractors inside it.
///
/// Put it outermost, once: every portcullis layer, extractor and handler that returns a
/// [`Rejection`] leaves it in the response extensions, and this layer swaps the default
/// problem+json body for yours. Responses without a rejection pass untouched.
///
/// ```
/// use axum::{Router, routing::get};
/// use axum::response::{IntoResponse, Response};
/// use portcullis::{Rejection, RenderRejectionLayer};
///
/// fn my_shape(rejection: &Rejection) -> Response {
///     let body = serde_json::json!({ "error": { "message": rejection.detail() } });
///     (rejection.status(), axum::Json(body)).into_response()
/// }
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(RenderRejectionLayer::new(my_shape));
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct RenderRejectionLayer<R> {
    renderer: R,
}

impl<R: RenderRejection> RenderRejectionLayer<R> {
    /// Renders rejections with `renderer`.
    pub fn new(renderer: R) -> Self {
        Self { renderer }
    }
}

impl<S, R: Clone> Layer<S> for RenderRejectionLayer<R> {
    type Service = RenderRejectionService<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RenderRejectionService {
            inner,
            renderer: self.renderer.clone(),
        }
    }
}

/// The service built by [`RenderRejectionLayer`].
#[derive(Clone, Debug)]
pub struct RenderRejectionService<S, R> {
    inner: S,
    renderer: R,
}

impl<S, R, Req> Service<Req> for RenderRejectionService<S, R>
where
    S: Service<Req, Response = Response>,
    R: RenderRejection,
{
    type Response = Response;
    type Error = S::Error;
    type Future = RenderFuture<S::Future, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        RenderFuture {
            future: self.inner.call(request),
            renderer: self.renderer.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`RenderRejectionService`].
    pub struct RenderFuture<F, R> {
        #[pin]
        future: F,
        renderer: R,
    }
}

impl<F, R, E> Future for RenderFuture<F, R>
where
    F: Future<Output = Result<Response, E>>,
    R: RenderRejection,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.future.poll(cx))?;
        let Some(rejection) = response.extensions().get::<Rejection>() else {
            return Poll::Ready(Ok(response));
        };
        let mut rendered = this.renderer.render(rejection);
        let protocol = rejection.headers();
        let headers = rendered.headers_mut();
        for name in protocol.keys() {
            if !headers.contains_key(name) {
                for value in protocol.get_all(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        let (mut parts, _) = response.into_parts();
        // Keep the rejection (and anything else outer layers put there) visible to outer layers.
        let extensions = std::mem::take(&mut parts.extensions);
        rendered.extensions_mut().extend(extensions);
        Poll::Ready(Ok(rendered))
    }
}
