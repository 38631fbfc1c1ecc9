//! Per-request cost of authentication through a real `Router` (in process, `oneshot`): a bare
//! handler, the same handler behind `AuthLayer` (ES256 JWT, verified-token cache on; and API key),
//! and behind a typical hand-written `from_fn` middleware that calls `jsonwebtoken::decode`.

mod common;

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::AuthLayer;
use portcullis::auth::{ApiKeyAuthenticator, ApiKeyGrant, InMemoryKeyStore};
use serde_json::json;
use tower::ServiceExt;

const API_KEY: &str = "pcl_bench_0123456789abcdefghijklmnopqrstuvwxyz";

fn handler_router() -> Router {
    Router::new().route(
        "/items",
        get(|| async { axum::Json(json!({ "items": [1, 2, 3] })) }),
    )
}

fn api_key_router() -> Router {
    let store = InMemoryKeyStore::new();
    store.insert(API_KEY, ApiKeyGrant::new("k", "svc")).unwrap();
    handler_router().layer(AuthLayer::required().with(ApiKeyAuthenticator::new(store)))
}

fn request(header: Option<(&str, &str)>) -> Request<Body> {
    let mut builder = axum::http::Request::get("/items");
    if let Some((name, value)) = header {
        builder = builder.header(name, value);
    }
    builder.body(Body::empty()).unwrap()
}

type Credential<'a> = Option<(&'a str, &'a str)>;

fn per_request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bearer = format!("Bearer {}", common::token());
    let mut group = c.benchmark_group("auth_layer_per_request");
    let cases: [(&str, Router, Credential); 4] = [
        ("bare_handler", handler_router(), None),
        (
            "portcullis_es256_cached",
            common::portcullis(handler_router(), 32 << 20),
            Some(("authorization", &bearer)),
        ),
        (
            "portcullis_api_key",
            api_key_router(),
            Some(("x-api-key", API_KEY)),
        ),
        (
            "from_fn_jsonwebtoken_es256",
            common::from_fn(handler_router()),
            Some(("authorization", &bearer)),
        ),
    ];
    for (name, router, header) in cases {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| async {
                let response = router.clone().oneshot(request(header)).await.unwrap();
                assert_eq!(response.status(), 200);
                black_box(response)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, per_request);
criterion_main!(benches);
