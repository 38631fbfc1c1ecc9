//! What `Valid<Json<T>>` costs over plain `Json<T>`, for a 1 KiB and a 100 KiB body, through a
//! real `Router` (in process, `oneshot`): plain `Json<T>` (serde only), `Json<T>` plus a manual
//! `validate()` call (what people write by hand), and `Valid<Json<T>>` (strict parsing: depth and
//! duplicate scan, unknown fields, error paths, then the same rules). Also the per-request cost of
//! `ValidateLayer`'s request checks on a bodiless GET.

use std::hint::black_box;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portcullis::{Valid, ValidateLayer};
use serde::{Deserialize, Serialize};
use tower::ServiceExt;
use validator::Validate;

#[derive(Deserialize, Validate)]
struct Order {
    #[validate(
        length(min = 1, max = 100),
        custom(function = "portcullis::validate::safe_line")
    )]
    customer: String,
    #[validate(custom(function = "portcullis::validate::iso_date"))]
    date: String,
    #[validate(length(max = 5000), nested)]
    lines: Vec<Line>,
}

// validator puts a failing field's value into its error, so a `length` rule on a `Vec<Line>`
// needs `Line: Serialize`.
#[derive(Deserialize, Serialize, Validate)]
struct Line {
    #[validate(custom(function = "portcullis::validate::identifier"))]
    sku: String,
    #[validate(range(min = 1, max = 10_000))]
    quantity: u32,
    #[validate(
        range(min = 0.0, max = 1_000_000.0),
        custom(function = "portcullis::validate::finite")
    )]
    price: f64,
    #[validate(
        length(max = 200),
        custom(function = "portcullis::validate::safe_text")
    )]
    note: String,
}

/// A valid order body of about `target` bytes.
fn body(target: usize) -> Vec<u8> {
    let mut lines = Vec::new();
    let mut size = 60;
    let mut i = 0;
    while size < target {
        let line = format!(
            r#"{{"sku":"SKU-{i:05}","quantity":{},"price":{}.5,"note":"handle with care, line {i}"}}"#,
            1 + i % 50,
            10 + i % 900
        );
        size += line.len() + 1;
        lines.push(line);
        i += 1;
    }
    format!(
        r#"{{"customer":"Ada Lovelace","date":"2026-11-24","lines":[{}]}}"#,
        lines.join(",")
    )
    .into_bytes()
}

fn routers() -> [(&'static str, Router); 3] {
    [
        (
            "plain_json",
            Router::new().route(
                "/orders",
                post(|Json(order): Json<Order>| async move {
                    black_box(order.lines.len());
                    StatusCode::CREATED
                }),
            ),
        ),
        (
            "json_then_validate",
            Router::new().route(
                "/orders",
                post(|Json(order): Json<Order>| async move {
                    match order.validate() {
                        Ok(()) => StatusCode::CREATED,
                        Err(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    }
                }),
            ),
        ),
        (
            "valid_json",
            Router::new().route(
                "/orders",
                post(|Valid(Json(order)): Valid<Json<Order>>| async move {
                    black_box(order.lines.len());
                    StatusCode::CREATED
                }),
            ),
        ),
    ]
}

fn request(body: &bytes::Bytes) -> Request<Body> {
    Request::post("/orders")
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Body::from(body.clone()))
        .unwrap()
}

fn bench_bodies(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("json_body");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    for size in [1024, 100 * 1024] {
        let body = bytes::Bytes::from(body(size));
        group.throughput(Throughput::Bytes(body.len() as u64));
        for (name, router) in routers() {
            // Every variant must accept the body, or we would be timing an error path.
            let status = runtime.block_on(router.clone().oneshot(request(&body)));
            assert_eq!(status.unwrap().status(), StatusCode::CREATED, "{name}");
            group.bench_with_input(BenchmarkId::new(name, size), &body, |b, body| {
                b.to_async(&runtime)
                    .iter(|| async { router.clone().oneshot(request(body)).await.unwrap() });
            });
        }
    }
    group.finish();
}

fn bench_layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bare = Router::new().route("/items", get(|| async { "ok" }));
    let layered = bare.clone().layer(
        ValidateLayer::builder()
            .allowed_methods([Method::GET, Method::POST])
            .allowed_hosts(["api.example.com"])
            .deny_body_on([Method::GET])
            .build()
            .unwrap(),
    );
    let mut group = c.benchmark_group("validate_layer");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    for (name, router) in [("bare_get", bare), ("validate_layer_get", layered)] {
        let get = || {
            Request::get("/items?page=2")
                .header("host", "api.example.com")
                .header("user-agent", "bench/1.0")
                .header("accept", "application/json")
                .body(Body::empty())
                .unwrap()
        };
        let status = runtime.block_on(router.clone().oneshot(get()));
        assert_eq!(status.unwrap().status(), StatusCode::OK, "{name}");
        group.bench_function(name, |b| {
            b.to_async(&runtime)
                .iter(|| async { router.clone().oneshot(get()).await.unwrap() });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_bodies, bench_layer);
criterion_main!(benches);
