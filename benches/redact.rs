//! Redaction cost of `RedactLayer` with the default rules (21 field names, 5 detectors) for
//! 1 KiB, 100 KiB and 1 MiB JSON responses: `redact_json` alone (validation, the redaction pass,
//! output), on documents where about one record in four carries secrets and on documents with
//! none; and the whole layer in a `Router` for the "secrets" case (the handler serializing the document,
//! buffering, the pass, headers, extension).

use std::hint::black_box;

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::{Json, Router};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portcullis::RedactLayer;
use serde_json::{Value, json};
use tower::ServiceExt;

/// An array of user-like records serialized to at least `size` bytes.
fn document(size: usize, secrets: bool) -> Vec<u8> {
    let mut users = Vec::new();
    let mut i = 0u64;
    let mut total = 12;
    loop {
        let secret = secrets && i.is_multiple_of(4);
        users.push(json!({
            "id": i,
            "name": format!("User number {i}"),
            "role": if i.is_multiple_of(3) { "editor" } else { "viewer" },
            "email": if secret { format!("user{i}@example.com") } else { format!("user {i} at home") },
            "created_at": "2026-11-24T12:00:00Z",
            "balance": 1234.5 + i as f64,
            "active": i.is_multiple_of(2),
            "tags": ["alpha", "beta", "gamma"],
            "card_number": if secret { Value::from("4111 1111 1111 1111") } else { Value::Null },
            "bio": "Likes long walks, short meetings and well-formed JSON documents; lives in room 42.",
        }));
        i += 1;
        total += users.last().map_or(0, |u| u.to_string().len() + 1);
        if total >= size {
            return serde_json::to_vec(&json!({ "users": users })).unwrap_or_default();
        }
    }
}

fn redact_json(c: &mut Criterion) {
    let layer = RedactLayer::new();
    let mut group = c.benchmark_group("redact_json");
    for (label, size) in [
        ("1KiB", 1024),
        ("100KiB", 100 * 1024),
        ("1MiB", 1024 * 1024),
    ] {
        for secrets in [true, false] {
            let doc = document(size, secrets);
            group.throughput(Throughput::Bytes(doc.len() as u64));
            let case = if secrets { "secrets" } else { "clean" };
            group.bench_with_input(BenchmarkId::new(case, label), &doc, |b, doc| {
                b.iter(|| black_box(layer.redact_json(black_box(doc), None, None)))
            });
        }
    }
    group.finish();
}

fn through_layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("redact_layer");
    for (label, size) in [
        ("1KiB", 1024),
        ("100KiB", 100 * 1024),
        ("1MiB", 1024 * 1024),
    ] {
        let doc: Value = serde_json::from_slice(&document(size, true)).unwrap_or_default();
        let app = Router::new()
            .route(
                "/users",
                get(move || {
                    let doc = doc.clone();
                    async move { Json(doc) }
                }),
            )
            .layer(RedactLayer::new());
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("secrets", label), |b| {
            b.to_async(&runtime).iter(|| {
                let app = app.clone();
                async move {
                    let request = Request::get("/users")
                        .body(Body::empty())
                        .unwrap_or_default();
                    let response = app.oneshot(request).await;
                    black_box(response.map(|r| r.into_body()))
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, redact_json, through_layer);
criterion_main!(benches);
