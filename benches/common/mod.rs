//! What the benchmarks compare against each other: an ES256 token, portcullis's `AuthLayer`,
//! and the typical hand-written `from_fn` middleware around `jsonwebtoken::decode`.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header::AUTHORIZATION};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use portcullis::AuthLayer;
use portcullis::auth::{JwtAuthenticator, JwtKey};
use serde_json::{Value, json};

pub const PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/es256_public.pem");
pub const PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/es256_private.pem");
pub const ISSUER: &str = "https://issuer.bench";
pub const AUDIENCE: &str = "bench-api";

/// A valid ES256 access token for a day.
pub fn token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1",
        "scope": "read:items", "iat": now, "exp": now + 86_400,
    });
    jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(PRIVATE).unwrap(),
    )
    .unwrap()
}

/// `handler` behind portcullis's AuthLayer with an ES256 key and a verified-token cache of
/// `cache_bytes` (0: off).
pub fn portcullis(handler: Router, cache_bytes: u64) -> Router {
    let jwt = JwtAuthenticator::builder()
        .key(JwtKey::ec_pem(PUBLIC, Algorithm::ES256).unwrap())
        .issuer(ISSUER)
        .audience([AUDIENCE])
        .cache_max_bytes(cache_bytes)
        .build()
        .unwrap();
    handler.layer(AuthLayer::required().with(jwt))
}

/// The middleware people write by hand: strip `Bearer `, `jsonwebtoken::decode`, 401 otherwise.
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

/// `handler` behind the hand-written middleware.
pub fn from_fn(handler: Router) -> Router {
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let keys = Arc::new((DecodingKey::from_ec_pem(PUBLIC).unwrap(), validation));
    handler.layer(from_fn_with_state(keys, hand_written))
}
