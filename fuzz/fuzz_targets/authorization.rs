//! Arbitrary bytes as credentials: the `Authorization` header (JWT bearer, API key, Basic
//! schemes) and `X-Api-Key` through an `AuthLayer`, and straight into `JwtAuthenticator::verify`.
//! Every answer must be 400 or 401 problem+json with a challenge; nothing may panic.
#![no_main]

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use portcullis::auth::{
    ApiKeyAuthenticator, ApiKeyGrant, InMemoryKeyStore, JwtAuthenticator, JwtKey,
};
use portcullis::{Algorithm, AuthLayer};
use std::sync::LazyLock;
use tower::ServiceExt;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-fuzz-secret";

static JWT: LazyLock<JwtAuthenticator> = LazyLock::new(|| {
    JwtAuthenticator::builder()
        .key(
            JwtKey::hmac(SECRET, Algorithm::HS256)
                .expect("a long secret")
                .with_kid("k"),
        )
        .issuer("https://issuer.fuzz")
        .audience(["fuzz"])
        .build()
        .expect("a valid configuration")
});

static APP: LazyLock<Router> = LazyLock::new(|| {
    let store = InMemoryKeyStore::new();
    store
        .insert(
            "pcl_fuzz_0123456789abcdefghijklmnopqrstuvwxyz",
            ApiKeyGrant::new("k", "svc"),
        )
        .expect("a long key");
    Router::new().route("/", get(|| async { "ok" })).layer(
        AuthLayer::required()
            .with(JWT.clone())
            .with(ApiKeyAuthenticator::new(store)),
    )
});

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = JWT.verify(text);
    }
    let (header, rest) = data.split_at(data.len() / 2);
    for (name, value) in [
        ("authorization", data),
        ("x-api-key", header),
        ("authorization", rest),
    ] {
        let Ok(value) = http::HeaderValue::from_bytes(value) else {
            continue;
        };
        let request = http::Request::get("/")
            .header(name, value)
            .body(Body::empty())
            .expect("a static request");
        // JWT and API key checks are synchronous, so the answer is ready at once.
        let response = APP
            .clone()
            .oneshot(request)
            .now_or_never()
            .expect("answered without waiting")
            .expect("infallible");
        let status = response.status().as_u16();
        assert!(matches!(status, 400 | 401), "status {status}");
        assert!(response.headers().contains_key("www-authenticate"));
    }
});
