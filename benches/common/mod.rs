//! What the benchmarks compare against each other: an ES256 token, portcullis's `AuthLayer`,
//! and the typical hand-written `from_fn` middleware around `jsonwebtoken::decode`.
#![allow(dead_code)]

pub mod fused;

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
    signed(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(PRIVATE).unwrap(),
    )
}

/// A day-long access token for scope `read:items`, signed with `key`.
fn signed(alg: Algorithm, key: &EncodingKey) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1",
        "scope": "read:items", "iat": now, "exp": now + 86_400,
    });
    jsonwebtoken::encode(&Header::new(alg), &claims, key).unwrap()
}

/// `handler` behind portcullis's AuthLayer with an ES256 key and a verified-token cache of
/// `cache_bytes` (0: off).
pub fn portcullis(handler: Router, cache_bytes: u64) -> Router {
    handler.layer(AuthLayer::required().with(es256_jwt(cache_bytes)))
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

pub const RS_PRIVATE: &[u8] = include_bytes!("../../tests/fixtures/rs256_private.pem");
pub const RS_PUBLIC: &[u8] = include_bytes!("../../tests/fixtures/rs256_public.pem");

/// A valid RS256 token for a day (for the hand-assembled stack).
pub fn rs256_token() -> String {
    signed(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RS_PRIVATE).unwrap(),
    )
}

/// The whole portcullis stack around `handler` (route `GET /items`, scope `read:items`): audit to
/// a JSON Lines file at `audit_path`, per-IP limit and lockout, validation, ES256 JWT with a
/// verified-token cache of `cache_bytes` (0: off), per-subject limit, RBAC table, redaction.
/// Quotas are far above what the load test sends: it measures the cost, not the refusals.
pub fn full_stack(
    handler: Router,
    cache_bytes: u64,
    audit_path: &std::path::Path,
) -> (Router, portcullis::audit::AuditHandle) {
    full_stack_with(handler, cache_bytes, audit_path, true)
}

/// [`full_stack`], with or without the audit layer (its thread competes for the same cores).
pub fn full_stack_with(
    handler: Router,
    cache_bytes: u64,
    audit_path: &std::path::Path,
    with_audit: bool,
) -> (Router, portcullis::audit::AuditHandle) {
    use portcullis::rate_limit::{KeyBy, LockoutLayer, Quota, RateLimitLayer};
    use portcullis::rbac::RbacLayer;
    use portcullis::{Portcullis, RedactLayer, ValidateLayer};

    let audit = file_audit(audit_path);
    let handle = audit.handle();
    let jwt = es256_jwt(cache_bytes);
    let generous = || Quota::per_second(1_000_000).burst(1_000_000);
    let table = items_table();
    let builder = if with_audit {
        Portcullis::builder().audit(audit)
    } else {
        Portcullis::builder()
    };
    let security = builder
        .rate_limit_per_ip(
            RateLimitLayer::builder(KeyBy::ClientIp, generous())
                .build()
                .unwrap(),
        )
        .lockout(LockoutLayer::builder().build().unwrap())
        .validate(ValidateLayer::new())
        .auth(AuthLayer::required().with(jwt))
        .rate_limit_per_subject(
            RateLimitLayer::builder(KeyBy::Subject, generous())
                .build()
                .unwrap(),
        )
        .rbac(RbacLayer::table(table))
        .redact(RedactLayer::new())
        .build()
        .unwrap();
    (handler.layer(security), handle)
}

/// The ES256 authenticator of the benches, with a verified-token cache of `cache_bytes` (0: off).
fn es256_jwt(cache_bytes: u64) -> JwtAuthenticator {
    JwtAuthenticator::builder()
        .key(JwtKey::ec_pem(PUBLIC, Algorithm::ES256).unwrap())
        .issuer(ISSUER)
        .audience([AUDIENCE])
        .cache_max_bytes(cache_bytes)
        .build()
        .unwrap()
}

/// `GET /items` needs the scope `read:items`; nothing else is allowed.
fn items_table() -> portcullis::rbac::RouteTable {
    use portcullis::rbac::{RouteTable, require_scope};

    RouteTable::builder()
        .route(http::Method::GET, "/items", require_scope("read:items"))
        .build()
        .unwrap()
}

/// Audit to a fresh JSON Lines file at `path` (rotated at 64 MiB, fsync once a second), dropping
/// events rather than waiting when its queue of 65 536 is full.
fn file_audit(path: &std::path::Path) -> portcullis::audit::AuditLayer {
    use portcullis::audit::{AuditKey, AuditLayer, Fsync, JsonLinesFile, Overflow};

    let _ = std::fs::remove_file(path);
    AuditLayer::builder(AuditKey::new(b"load test audit key, 32 bytes or more").unwrap())
        .sink(
            JsonLinesFile::builder(path)
                .max_bytes(64 << 20)
                .keep(1)
                .fsync(Fsync::Interval(std::time::Duration::from_secs(1)))
                .open()
                .unwrap(),
        )
        .queue_capacity(65_536)
        .overflow(Overflow::Drop)
        .build()
        .unwrap()
}

/// Exactly the stack the issue's benchmark names: ES256 JWT with the verified-token cache, the
/// RBAC route table, one in-memory rate limit (per client address), request validation,
/// response redaction and audit to a file. [`full_stack`] adds the lockout and a per-subject
/// limit on top.
pub fn listed_stack(
    handler: Router,
    audit_path: &std::path::Path,
) -> (Router, portcullis::audit::AuditHandle) {
    use portcullis::rate_limit::{KeyBy, Quota, RateLimitLayer};
    use portcullis::rbac::RbacLayer;
    use portcullis::{Portcullis, RedactLayer, ValidateLayer};

    let audit = file_audit(audit_path);
    let handle = audit.handle();
    let jwt = es256_jwt(32 << 20);
    let table = items_table();
    let security = Portcullis::builder()
        .audit(audit)
        .rate_limit_per_ip(
            RateLimitLayer::builder(
                KeyBy::ClientIp,
                Quota::per_second(1_000_000).burst(1_000_000),
            )
            .build()
            .unwrap(),
        )
        .validate(ValidateLayer::new())
        .auth(AuthLayer::required().with(jwt))
        .rbac(RbacLayer::table(table))
        .redact(RedactLayer::new())
        .build()
        .unwrap();
    (handler.layer(security), handle)
}

/// RS256 verification, then the role (scope) check people write next to it.
async fn hand_written_rs256(
    State(keys): State<Arc<(DecodingKey, Validation)>>,
    request: Request,
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
    let allowed = data.claims["scope"]
        .as_str()
        .is_some_and(|s| s.split(' ').any(|s| s == "read:items"));
    if !allowed {
        return Err(StatusCode::FORBIDDEN);
    }
    Ok(next.run(request).await)
}

/// The typical hand-assembled stack: tower-http `TraceLayer`, `tower_governor` per peer IP,
/// `jsonwebtoken` RS256 in a `from_fn` middleware and a role check. Served with connect info.
pub fn hand_assembled(handler: Router) -> Router {
    use tower_governor::GovernorLayer;
    use tower_governor::governor::GovernorConfigBuilder;

    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    let keys = Arc::new((DecodingKey::from_rsa_pem(RS_PUBLIC).unwrap(), validation));
    let governor = GovernorConfigBuilder::default()
        .per_nanosecond(1)
        .burst_size(1_000_000)
        .finish()
        .unwrap();
    handler
        .layer(from_fn_with_state(keys, hand_written_rs256))
        .layer(GovernorLayer::new(governor))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}
