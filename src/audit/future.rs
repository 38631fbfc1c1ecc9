use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

use super::event::{Ended, RawEvent};
use super::pipeline::{AuditHandle, Overflow};
use super::request_id::X_REQUEST_ID;
use crate::decision::Decision;
use crate::error::Rejection;
use crate::identity::Identity;
use crate::request::forwarded::ClientIp;
use crate::scrub::Redactions;

/// The event of a request still in flight. Dropped unfinished (the client went away, the
/// handler panicked), it still submits its event, as abandoned, so every request is recorded.
pub(crate) struct Pending {
    raw: Option<Box<RawEvent>>,
    /// The request id, echoed in the response.
    id: HeaderValue,
    start: Instant,
    handle: AuditHandle,
}

impl Pending {
    pub(crate) fn new(
        raw: Box<RawEvent>,
        id: HeaderValue,
        start: Instant,
        handle: AuditHandle,
    ) -> Self {
        Self {
            raw: Some(raw),
            id,
            start,
            handle,
        }
    }

    fn finish(&mut self) -> Option<Box<RawEvent>> {
        let mut raw = self.raw.take()?;
        raw.latency_us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        Some(raw)
    }
}

impl Pending {
    /// Submits the event of a request that ended without an answer: abandoned by the client
    /// (499), or cut short by a panic (500).
    fn abandon(&mut self, panicked: bool) {
        if let Some(mut raw) = self.finish() {
            raw.status = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
            if panicked {
                raw.ended = Ended::Panicked;
                raw.status = StatusCode::INTERNAL_SERVER_ERROR;
            }
            if let Err(raw) = self.handle.try_submit(raw) {
                self.handle.dropped();
                self.handle.inner.pool.give_back(raw);
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.abandon(std::thread::panicking());
    }
}

pin_project! {
    /// Response future of [`Audit`](super::Audit).
    pub struct ResponseFuture<F>
    where
        F: Future,
    {
        #[pin]
        inner: F,
        pending: Pending,
        // Set while the response waits for room in a full queue (`Overflow::Wait`).
        waiting: Option<Pin<Box<dyn Future<Output = F::Output> + Send>>>,
    }
}

impl<F: Future> ResponseFuture<F> {
    pub(crate) fn new(inner: F, pending: Pending) -> Self {
        Self {
            inner,
            pending,
            waiting: None,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Send + 'static,
    E: Send + 'static,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(waiting) = this.waiting.as_mut() {
            return waiting.as_mut().poll(cx);
        }
        // A panic below is recorded as one before it goes on unwinding. Left to `Drop`, it would
        // look like a cancel whenever a `CatchPanicLayer` outside this layer stops the unwinding:
        // that drops this future only after the panic is over. Catching costs nothing until
        // something panics.
        let polled = panic::catch_unwind(AssertUnwindSafe(|| this.inner.poll(cx)));
        let mut result = match polled {
            Ok(poll) => ready!(poll),
            Err(payload) => {
                this.pending.abandon(true);
                panic::resume_unwind(payload)
            }
        };
        let Some(mut raw) = this.pending.finish() else {
            return Poll::Ready(result);
        };
        raw.ended = Ended::Answered;
        match &mut result {
            Ok(response) => {
                read_response(&mut raw, response);
                response
                    .headers_mut()
                    .insert(&X_REQUEST_ID, this.pending.id.clone());
            }
            Err(_) => raw.status = StatusCode::INTERNAL_SERVER_ERROR,
        }
        let handle = &this.pending.handle;
        let Err(raw) = handle.try_submit(raw) else {
            return Poll::Ready(result);
        };
        let Overflow::Wait(deadline) = handle.inner.overflow else {
            handle.dropped();
            handle.inner.pool.give_back(raw);
            return Poll::Ready(result);
        };
        let handle = handle.clone();
        let mut waiting: Pin<Box<dyn Future<Output = F::Output> + Send>> = Box::pin(async move {
            handle.submit_within(raw, deadline).await;
            result
        });
        let poll = waiting.as_mut().poll(cx);
        if poll.is_pending() {
            *this.waiting = Some(waiting);
        }
        poll
    }
}

fn read_response<B>(raw: &mut RawEvent, response: &Response<B>) {
    raw.status = response.status();
    let extensions = response.extensions();
    raw.rejection = extensions
        .get::<Rejection>()
        .map(|r| (r.kind(), r.reason()));
    raw.decision = extensions.get::<Decision>().cloned();
    raw.redacted = extensions.get::<Redactions>().map_or(0, Redactions::total);
    if raw.identity.is_none() {
        raw.identity = extensions.get::<Identity>().cloned();
    }
    if let Some(ip) = extensions.get::<ClientIp>() {
        raw.client_ip = Some(ip.0);
    }
}
