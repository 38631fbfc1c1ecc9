//! Per-request cost of authentication through a real `Router` (in process, `oneshot`): a bare
//! handler, the same handler behind `AuthLayer` (ES256 JWT, verified-token cache on; and API key),
//! and behind a typical hand-written `from_fn` middleware that calls `jsonwebtoken::decode`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header::AUTHORIZATION};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use portcullis::AuthLayer;
use portcullis::auth::{
    ApiKeyAuthenticator, ApiKeyGrant, InMemoryKeyStore, JwtAuthenticator, JwtKey,
};
use serde_json::{Value, json};
use tower::ServiceExt;

const PUBLIC: &[u8] = include_bytes!("../tests/fixtures/es256_public.pem");
const PRIVATE: &[u8] = include_bytes!("../tests/fixtures/es256_private.pem");
const API_KEY: &str = "pcl_bench_0123456789abcdefghijklmnopqrstuvwxyz";

fn token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": "https://issuer.bench", "aud": "bench-api", "sub": "user-1",
        "scope": "read:items", "iat": now, "exp": now + 86_400,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(PRIVATE).unwrap(),
    )
    .unwrap()
}

fn handler_router() -> Router {
    Router::new().route(
        "/items",
        get(|| async { axum::Json(json!({ "items": [1, 2, 3] })) }),
    )
}

fn portcullis_router() -> Router {
    let jwt = JwtAuthenticator::builder()
        .key(JwtKey::ec_pem(PUBLIC, Algorithm::ES256).unwrap())
        .issuer("https://issuer.bench")
        .audience(["bench-api"])
        .build()
        .unwrap();
    handler_router().layer(AuthLayer::required().with(jwt))
}

fn api_key_router() -> Router {
    let store = InMemoryKeyStore::new();
    store.insert(API_KEY, ApiKeyGrant::new("k", "svc")).unwrap();
    handler_router().layer(AuthLayer::required().with(ApiKeyAuthenticator::new(store)))
}

async fn hand_written(
    State(keys): State<Arc<(DecodingKey, Validation)>>,
    mut request: Request,
    next: Next,
) -> Result<Response, StatusCode> {
    let token = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    let data = jsonwebtoken::decode::<Value>(token, &keys.0, &keys.1)
        .map_err(|_| StatusCode::UNAUTHORIZED)?;
    request.extensions_mut().insert(data.claims);
    Ok(next.run(request).await)
}

fn from_fn_router() -> Router {
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&["https://issuer.bench"]);
    validation.set_audience(&["bench-api"]);
    let keys = Arc::new((DecodingKey::from_ec_pem(PUBLIC).unwrap(), validation));
    handler_router().layer(from_fn_with_state(keys, hand_written))
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
    let bearer = format!("Bearer {}", token());
    let mut group = c.benchmark_group("auth_layer_per_request");
    let cases: [(&str, Router, Credential); 4] = [
        ("bare_handler", handler_router(), None),
        (
            "portcullis_es256_cached",
            portcullis_router(),
            Some(("authorization", &bearer)),
        ),
        (
            "portcullis_api_key",
            api_key_router(),
            Some(("x-api-key", API_KEY)),
        ),
        (
            "from_fn_jsonwebtoken_es256",
            from_fn_router(),
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
