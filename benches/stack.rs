//! Per-request cost of each layer of the full stack alone, and of the whole stack, in process
//! (`Router::oneshot`, current-thread runtime): where the full stack's time goes. The load test
//! (`benches/load.rs`) measures the same stack over HTTP.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::audit::{AuditHandle, AuditKey, AuditLayer, Fsync, JsonLinesFile, Overflow};
use portcullis::auth::{JwtAuthenticator, JwtKey};
use portcullis::rate_limit::{KeyBy, LockoutLayer, Quota, RateLimitLayer};
use portcullis::rbac::{RbacLayer, RouteTable, require_scope};
use portcullis::redact::{Email, Rule};
use portcullis::{
    Algorithm, AuthLayer, Portcullis, RedactLayer, TransportSecurityLayer, ValidateLayer,
};
use serde_json::json;
use tower::ServiceExt;

/// The system allocator, counting the allocations of the thread that makes them: the request
/// path's allocations, without the audit thread's.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counter is a
// thread-local `Cell` with a const initializer, which neither allocates nor reenters.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn handler_router() -> Router {
    Router::new().route(
        "/items",
        get(|| async { axum::Json(json!({ "items": [{ "id": 1, "name": "gate" }] })) }),
    )
}

fn auth() -> AuthLayer {
    let jwt = JwtAuthenticator::builder()
        .key(JwtKey::ec_pem(common::PUBLIC, Algorithm::ES256).unwrap())
        .issuer(common::ISSUER)
        .audience([common::AUDIENCE])
        .cache_max_bytes(32 << 20)
        .build()
        .unwrap();
    AuthLayer::required().with(jwt)
}

fn generous(key: KeyBy) -> RateLimitLayer {
    RateLimitLayer::builder(key, Quota::per_second(1_000_000).burst(1_000_000))
        .build()
        .unwrap()
}

fn rbac() -> RbacLayer {
    RbacLayer::table(
        RouteTable::builder()
            .route(http::Method::GET, "/items", require_scope("read:items"))
            .build()
            .unwrap(),
    )
}

/// Every audit layer built, so a counting run can flush them before it exits.
static AUDITS: std::sync::Mutex<Vec<AuditHandle>> = std::sync::Mutex::new(Vec::new());

fn audit() -> AuditLayer {
    let path = std::env::temp_dir().join(format!(
        "portcullis-bench-stack-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let layer =
        AuditLayer::builder(AuditKey::new(b"benchmark audit key, at least 32 bytes").unwrap())
            .sink(
                JsonLinesFile::builder(&path)
                    .max_bytes(64 << 20)
                    .keep(0)
                    .fsync(Fsync::Interval(Duration::from_secs(1)))
                    .open()
                    .unwrap(),
            )
            .queue_capacity(1 << 20)
            .overflow(Overflow::Drop)
            .build()
            .unwrap();
    AUDITS.lock().unwrap().push(layer.handle());
    layer
}

/// Each case's router, built only when asked for: a case that is not run starts no audit
/// thread (whose timers would add to another case's instruction count).
type Case = (&'static str, Box<dyn Fn() -> Router>);

fn cases() -> Vec<Case> {
    vec![
        ("bare", Box::new(handler_router)),
        ("audit_file", Box::new(|| handler_router().layer(audit()))),
        (
            "transport",
            Box::new(|| handler_router().layer(TransportSecurityLayer::new())),
        ),
        (
            "rate_limit_ip",
            Box::new(|| handler_router().layer(generous(KeyBy::ClientIp))),
        ),
        (
            "validate",
            Box::new(|| handler_router().layer(ValidateLayer::new())),
        ),
        (
            "auth_es256_cached",
            Box::new(|| handler_router().layer(auth())),
        ),
        (
            "auth_lockout",
            Box::new(|| {
                handler_router()
                    .layer(auth())
                    .layer(LockoutLayer::builder().build().unwrap())
            }),
        ),
        (
            "auth_rate_limit_subject",
            Box::new(|| {
                handler_router()
                    .layer(generous(KeyBy::Subject))
                    .layer(auth())
            }),
        ),
        (
            "auth_rbac",
            Box::new(|| handler_router().layer(rbac()).layer(auth())),
        ),
        (
            "redact",
            Box::new(|| handler_router().layer(RedactLayer::new())),
        ),
        // As the demo configures it: one rule that spares some roles.
        (
            "redact_except_roles",
            Box::new(|| {
                handler_router().layer(
                    RedactLayer::new()
                        .rule(Rule::detector(Email).except_roles(["writer", "admin"])),
                )
            }),
        ),
        // The same layers nested by hand in the documented order: what the builder's one
        // service saves over nesting is the difference to `full_stack`.
        (
            "full_nested",
            Box::new(|| {
                handler_router()
                    .layer(RedactLayer::new())
                    .layer(rbac())
                    .layer(generous(KeyBy::Subject))
                    .layer(auth())
                    .layer(ValidateLayer::new())
                    .layer(LockoutLayer::builder().build().unwrap())
                    .layer(generous(KeyBy::ClientIp))
                    .layer(TransportSecurityLayer::new())
                    .layer(audit())
            }),
        ),
        (
            "full_stack",
            Box::new(|| {
                handler_router().layer(
                    Portcullis::builder()
                        .audit(audit())
                        .transport(TransportSecurityLayer::new())
                        .rate_limit_per_ip(generous(KeyBy::ClientIp))
                        .lockout(LockoutLayer::builder().build().unwrap())
                        .validate(ValidateLayer::new())
                        .auth(auth())
                        .rate_limit_per_subject(generous(KeyBy::Subject))
                        .rbac(rbac())
                        .redact(RedactLayer::new())
                        .build()
                        .unwrap(),
                )
            }),
        ),
    ]
}

async fn call(router: &Router<()>, bearer: &str) -> bytes::Bytes {
    let mut request = axum::http::Request::get("/items")
        .header("authorization", bearer)
        .header("host", "api.example")
        .header("user-agent", "bench/1.0")
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(portcullis::transport::TlsConnection::new());
    let response = router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes()
}

/// Allocations per request on the request's thread, printed before the timings: a count, so
/// unlike a time it does not move with the machine's load.
///
/// `STACK_ALLOCATIONS_ONLY=<case>`: that case's count only, then exit, for a heap profiler
/// (`valgrind --tool=dhat`) or an instruction count (`valgrind --tool=callgrind`, run twice with
/// `STACK_REQUESTS` apart: the difference over the extra requests is the instructions per
/// request, of every thread, the audit thread included, and it does not move with the machine's
/// load as times do; `scripts/instructions.sh` does this per case).
fn allocations_per_request(runtime: &tokio::runtime::Runtime, bearer: &str) {
    let requests: u64 = std::env::var("STACK_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let only = std::env::var("STACK_ALLOCATIONS_ONLY").ok();
    println!("allocations per request (request thread):");
    for (name, router) in cases() {
        if only.as_deref().is_some_and(|only| only != name) {
            continue;
        }
        let router = router().with_state::<()>(());
        runtime.block_on(async {
            for _ in 0..100 {
                call(&router, bearer).await;
            }
            let before = allocations();
            for _ in 0..requests {
                black_box(call(&router, bearer).await);
            }
            let per_request = (allocations() - before) as f64 / requests as f64;
            println!("  {name:<24} {per_request:6.1}");
        });
    }
    if only.is_some() {
        // Every queued record sealed and written, so each request's record counts.
        let audits = std::mem::take(&mut *AUDITS.lock().unwrap());
        runtime.block_on(async {
            for audit in audits {
                audit.shutdown().await;
            }
        });
        std::process::exit(0);
    }
}

fn per_layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let bearer = format!("Bearer {}", common::token());
    allocations_per_request(&runtime, &bearer);
    let mut group = c.benchmark_group("stack_per_request");
    for (name, router) in cases() {
        // As `axum::serve` does: handlers become routes, and layers are applied, once, not on
        // every call (a `Router<()>` called directly re-applies them per request).
        let router = router().with_state::<()>(());
        let bearer = bearer.clone();
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| async { black_box(call(&router, &bearer).await) })
        });
    }
    group.finish();
}

criterion_group!(benches, per_layer);
criterion_main!(benches);
