//! The core with toy checks, without any layer: the order of response steps, refusals of a
//! later check, deferral in the middle of a chain, and the poll-after-completion policy.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use tower_service::Service;

use super::*;
use crate::decision::Decision;
use crate::error::{Reason, RejectionKind};

/// Writes its name into `x-steps` on the way out; refuses, defers or allows per `mode`.
#[derive(Clone)]
struct Toy {
    name: &'static str,
    mode: Mode,
    /// Checks run, in order.
    log: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone, Copy)]
enum Mode {
    Allow,
    Refuse,
    /// Defers once, then allows.
    Defer,
}

impl Toy {
    fn new(name: &'static str, mode: Mode, log: &Arc<Mutex<Vec<String>>>) -> Self {
        Self {
            name,
            mode,
            log: log.clone(),
        }
    }

    fn note(&self, what: &str) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{what} {}", self.name));
    }
}

impl Check for Toy {
    const LAYER: LayerKind = LayerKind::Rbac;
    const SERVICE: &'static str = "Toy";
    type Admit = &'static str;
    type Ready = ();
    type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn check<B: http_body::Body>(
        &self,
        parts: &mut Parts,
        _: &B,
    ) -> Verdict<Self::Admit, Self::Pending> {
        self.note("check");
        // What an earlier check put into the request is visible here.
        parts.extensions.insert(self.name);
        match self.mode {
            Mode::Allow => Verdict::Allow(self.name),
            Mode::Refuse => Verdict::Deny(Denial::Refuse(
                Rejection::new(RejectionKind::Forbidden).with_reason(Reason::Policy),
            )),
            Mode::Defer => Verdict::Defer(Box::pin(async { tokio::task::yield_now().await })),
        }
    }

    fn resume<B: http_body::Body>(
        &self,
        _: &mut Parts,
        _: &B,
        (): (),
    ) -> Verdict<Self::Admit, Self::Pending> {
        self.note("resume");
        Verdict::Allow(self.name)
    }

    fn finish<B>(name: Self::Admit, response: &mut Response<B>) {
        let steps = response
            .headers()
            .get("x-steps")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        response
            .headers_mut()
            .insert("x-steps", format!("{steps}{name};").parse().unwrap());
    }
}

/// Answers 200 with the extension names the checks left, or counts its calls.
#[derive(Clone)]
struct Inner(Arc<Mutex<u32>>);

impl Service<Request<String>> for Inner {
    type Response = Response<Bytes>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Bytes>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<String>) -> Self::Future {
        *self.0.lock().unwrap() += 1;
        let last = request.extensions().get::<&'static str>().copied();
        std::future::ready(Ok(Response::new(Bytes::from_static(
            last.unwrap_or("").as_bytes(),
        ))))
    }
}

async fn run<C: Check>(check: C, calls: &Arc<Mutex<u32>>) -> Response<Bytes> {
    let mut guard = Guard::new(Inner(calls.clone()), check);
    guard.call(Request::new(String::new())).await.unwrap()
}

fn steps(response: &Response<Bytes>) -> &str {
    response
        .headers()
        .get("x-steps")
        .map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn response_steps_run_innermost_first_as_nested_layers_would() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(Mutex::new(0));
    let chain = Chain::new(
        Toy::new("a", Mode::Allow, &log),
        Chain::new(
            Toy::new("b", Mode::Allow, &log),
            Toy::new("c", Mode::Allow, &log),
        ),
    );
    let response = run(chain, &calls).await;
    assert_eq!(response.status(), 200);
    // The inner service saw the last check's extension; the steps ran c, b, a.
    assert_eq!(response.body(), "c".as_bytes());
    assert_eq!(steps(&response), "c;b;a;");
    assert_eq!(*calls.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_later_refusal_gets_the_earlier_response_steps_and_its_own_decision() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(Mutex::new(0));
    let chain = Chain::new(
        Toy::new("a", Mode::Allow, &log),
        Chain::new(
            Toy::new("b", Mode::Refuse, &log),
            Toy::new("c", Mode::Allow, &log),
        ),
    );
    let response = run(chain, &calls).await;
    assert_eq!(response.status(), 403);
    assert_eq!(steps(&response), "a;");
    let decision = response.extensions().get::<Decision>().unwrap();
    assert_eq!((decision.layer, decision.allowed), (LayerKind::Rbac, false));
    assert_eq!(decision.reason, Reason::Policy);
    // Nothing after the refusal ran, and the inner service was not called.
    assert_eq!(*log.lock().unwrap(), ["check a", "check b"]);
    assert_eq!(*calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn checks_defer_one_after_another_in_one_request() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(Mutex::new(0));
    let chain = Chain::new(
        Toy::new("a", Mode::Defer, &log),
        Chain::new(
            Some(Toy::new("b", Mode::Allow, &log)),
            Chain::new(None::<Toy>, Toy::new("c", Mode::Defer, &log)),
        ),
    );
    let response = run(chain, &calls).await;
    assert_eq!(response.status(), 200);
    assert_eq!(steps(&response), "c;b;a;");
    assert_eq!(
        *log.lock().unwrap(),
        ["check a", "resume a", "check b", "check c", "resume c"]
    );
    assert_eq!(*calls.lock().unwrap(), 1);
}

#[tokio::test]
#[should_panic(expected = "polled after completion")]
async fn a_future_polled_after_completion_panics_and_never_answers_twice() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let calls = Arc::new(Mutex::new(0));
    let mut guard = Guard::new(Inner(calls), Toy::new("a", Mode::Refuse, &log));
    let mut future = Box::pin(guard.call(Request::new(String::new())));
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(future.as_mut().poll(&mut cx).is_ready());
    let _ = future.as_mut().poll(&mut cx);
}

#[test]
fn refusals_render_into_any_body_that_holds_bytes() {
    let response: Response<Bytes> =
        Denial::Refuse(Rejection::new(RejectionKind::Forbidden)).into_response(LayerKind::Auth);
    assert_eq!(response.status(), 403);
    assert!(response.body().starts_with(b"{\"type\""));
    let decision = response.extensions().get::<Decision>().unwrap();
    assert_eq!(decision.layer, LayerKind::Auth);
}
