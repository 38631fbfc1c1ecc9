//! Cost of auditing: per request (a bare handler, then behind `AuditLayer` with the tracing
//! sink and with the JSON Lines file sink), and sustained records per second into a file.
//!
//! The request path only hands cheap clones to a bounded queue; the audit thread builds, scrubs,
//! seals (HMAC-SHA256) and writes on the other core. The per-request figures therefore include
//! that thread competing for the machine, which is what a server sees.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis::audit::{
    AlertRules, AuditKey, AuditLayer, Fsync, JsonLinesFile, Overflow, TracingSink,
};
use serde_json::json;
use tower::ServiceExt;

fn handler_router() -> Router {
    Router::new().route(
        "/items/{id}",
        get(|| async { axum::Json(json!({ "items": [1, 2, 3] })) }),
    )
}

fn key() -> AuditKey {
    AuditKey::new(b"benchmark audit key, at least 32 bytes").unwrap()
}

fn request() -> axum::http::Request<Body> {
    axum::http::Request::get("/items/42")
        .header("user-agent", "bench/1.0 (criterion)")
        .header("x-request-id", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
        .body(Body::empty())
        .unwrap()
}

fn file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

fn file_layer(path: &PathBuf, fsync: Fsync) -> AuditLayer {
    AuditLayer::builder(key())
        .sink(
            JsonLinesFile::builder(path)
                .max_bytes(256 << 20)
                .keep(1)
                .fsync(fsync)
                .open()
                .unwrap(),
        )
        .alerts(AlertRules::default())
        .queue_capacity(65_536)
        .overflow(Overflow::Wait(Duration::from_secs(5)))
        .build()
        .unwrap()
}

fn per_request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    // No subscriber is installed, so the tracing sink's events are skipped at the macro: this
    // measures the layer, the queue and the sealing, not a log formatter.
    let tracing = AuditLayer::builder(key())
        .sink(TracingSink)
        .queue_capacity(65_536)
        .overflow(Overflow::Wait(Duration::from_secs(5)))
        .build()
        .unwrap();
    let path = file("per_request.jsonl");
    let file = file_layer(&path, Fsync::Interval(Duration::from_secs(1)));
    let handles = [tracing.handle(), file.handle()];
    let mut group = c.benchmark_group("audit_per_request");
    let cases = [
        ("bare_handler", handler_router()),
        ("audit_tracing_sink", handler_router().layer(tracing)),
        ("audit_file_sink", handler_router().layer(file)),
    ];
    for (name, router) in cases {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let response = router.clone().oneshot(request()).await.unwrap();
                assert_eq!(response.status(), 200);
                black_box(response)
            })
        });
    }
    group.finish();
    runtime.block_on(async {
        for handle in handles {
            handle.shutdown().await;
            assert_eq!(handle.stats().dropped, 0, "the queue never overflowed");
        }
    });
}

/// Records per second from requests to durable lines: `BATCH` requests, then a flush (which
/// waits until every record is sealed, written and `fsync`ed).
fn sustained(c: &mut Criterion) {
    const BATCH: u64 = 10_000;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("audit_sustained_to_file");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(10);
    for (name, fsync) in [
        ("fsync_interval_1s", Fsync::Interval(Duration::from_secs(1))),
        ("fsync_every_batch", Fsync::EveryBatch),
    ] {
        let path = file(&format!("{name}.jsonl"));
        let layer = file_layer(&path, fsync);
        let handle = layer.handle();
        let router = handler_router().layer(layer);
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_custom(|iterations| {
                let router = router.clone();
                let handle = handle.clone();
                async move {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        for _ in 0..BATCH {
                            let response = router.clone().oneshot(request()).await.unwrap();
                            black_box(response);
                        }
                        handle.flush().await;
                    }
                    start.elapsed()
                }
            })
        });
        runtime.block_on(handle.shutdown());
        assert_eq!(handle.stats().dropped, 0);
        assert_eq!(handle.stats().written, handle.stats().accepted);
    }
    group.finish();
}

criterion_group!(benches, per_request, sustained);
criterion_main!(benches);
