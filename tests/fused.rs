//! `Portcullis::builder()` runs its checks in one service with one future. This drives the same
//! request corpus (allowed, refused by each layer, hostile) through that fused stack and through
//! the same layers nested by hand in the documented order, and requires the same responses, byte
//! for byte, and the same audit records.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use common::*;
use http::{HeaderMap, Method, Request};
use http_body_util::BodyExt;
use portcullis::audit::{AlertRules, AuditEvent, AuditKey, AuditLayer, RecentEvents};
use portcullis::auth::{
    ApiKeyAuthenticator, ApiKeyGrant, BasicAuthenticator, BasicUser, InMemoryKeyStore,
};
use portcullis::client_ip::{ClientIpLayer, TrustedProxies};
use portcullis::rate_limit::{KeyBy, LockoutLayer, Quota, RateLimitLayer};
use portcullis::rbac::{RbacLayer, RouteTable, require_scope};
use portcullis::transport::{TlsConnection, TransportSecurityLayer};
use portcullis::{AuthLayer, Portcullis, RedactLayer, ValidateLayer};
use serde_json::json;
use tower::ServiceExt;

const API_KEY: &str = "pcl_fused_test_key_0123456789abcdefghijkl";

/// One fresh set of layers: the two stacks must not share limiter or lockout state.
struct Layers {
    audit: AuditLayer,
    client_ip: ClientIpLayer,
    transport: TransportSecurityLayer,
    per_ip: RateLimitLayer,
    lockout: LockoutLayer,
    validate: ValidateLayer,
    auth: AuthLayer,
    per_subject: RateLimitLayer,
    rbac: RbacLayer,
    redact: RedactLayer,
}

fn phc() -> String {
    // Cheap argon2 parameters keep the test fast; production hashes use hash_password().
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    hasher
        .hash_password(b"correct horse", &salt)
        .unwrap()
        .to_string()
}

/// With Redis: the backend of the two limits and the lockout, under a prefix of the stack's own.
type Shared = Option<(String, String)>;

async fn layers(recent: &RecentEvents, phc: &str, shared: &Shared) -> Layers {
    let jwt = hs256_jwt();
    let basic = BasicAuthenticator::builder()
        .user(BasicUser::new("ops", phc).unwrap().roles(["admin"]))
        .build()
        .unwrap();
    let store = InMemoryKeyStore::new();
    store
        .insert(API_KEY, ApiKeyGrant::new("ci", "ci-bot"))
        .unwrap();
    #[cfg(feature = "redis")]
    let backend = match shared {
        Some((url, prefix)) => Some(
            portcullis::rate_limit::RedisBackend::connect(url)
                .await
                .unwrap()
                .prefix(prefix),
        ),
        None => None,
    };
    #[cfg(not(feature = "redis"))]
    assert!(shared.is_none());
    // Hourly refill: the budgets cannot refill between the two stacks' turns.
    let limit = |key, burst| {
        let builder = RateLimitLayer::builder(key, Quota::per_hour(1).burst(burst));
        #[cfg(feature = "redis")]
        let builder = match &backend {
            Some(backend) => builder.redis(backend.clone()),
            None => builder,
        };
        builder.build().unwrap()
    };
    let lockout = LockoutLayer::builder().max_failures(3);
    #[cfg(feature = "redis")]
    let lockout = match &backend {
        Some(backend) => lockout.redis(backend.clone()),
        None => lockout,
    };
    Layers {
        audit: AuditLayer::builder(
            AuditKey::new(b"the audit key for tests, 32+ bytes long").unwrap(),
        )
        .sink(recent.clone())
        .alerts(AlertRules::none())
        .build()
        .unwrap(),
        client_ip: ClientIpLayer::new(TrustedProxies::none()),
        transport: TransportSecurityLayer::new(),
        per_ip: limit(KeyBy::ClientIp, 6),
        lockout: lockout.build().unwrap(),
        validate: ValidateLayer::builder()
            .deny_body_on([Method::GET])
            .build()
            .unwrap(),
        auth: AuthLayer::optional()
            .with(jwt)
            .with(basic)
            .with(ApiKeyAuthenticator::new(store)),
        per_subject: limit(KeyBy::Subject, 3),
        rbac: RbacLayer::table(
            RouteTable::builder()
                .route(Method::GET, "/items", require_scope("read:items"))
                .route(Method::POST, "/items", require_scope("write:items"))
                .build()
                .unwrap(),
        ),
        redact: RedactLayer::new(),
    }
}

fn router() -> Router {
    Router::new().route(
        "/items",
        get(|| async {
            axum::Json(json!({ "owner": "keeper@castle.example", "items": [{ "id": 1 }] }))
        })
        .post(|| async { "stored" }),
    )
}

fn fused(layers: Layers) -> Router {
    router().layer(
        Portcullis::builder()
            .audit(layers.audit)
            .client_ip(TrustedProxies::none())
            .transport(layers.transport)
            .rate_limit_per_ip(layers.per_ip)
            .lockout(layers.lockout)
            .validate(layers.validate)
            .auth(layers.auth)
            .rate_limit_per_subject(layers.per_subject)
            .rbac(layers.rbac)
            .redact(layers.redact)
            .build()
            .unwrap(),
    )
}

/// The same layers nested by hand, innermost first, as the stack's docs list them.
fn nested(layers: Layers) -> Router {
    router()
        .layer(layers.redact)
        .layer(layers.rbac)
        .layer(layers.per_subject)
        .layer(layers.auth)
        .layer(layers.validate)
        .layer(layers.lockout)
        .layer(layers.per_ip)
        .layer(layers.transport)
        .layer(layers.client_ip)
        .layer(layers.audit)
}

/// A request of the corpus: method, client address (last octet), over TLS, headers, body.
type Case = (Method, u8, bool, Vec<(&'static str, String)>, &'static str);

/// One request of the corpus: from `ip`, over TLS or not, with these headers and body.
fn request(
    method: Method,
    ip: u8,
    tls: bool,
    headers: &[(&str, String)],
    body: &'static str,
) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri("/items")
        .header("host", "api.example");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let mut request = builder.body(Body::from(body)).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, ip], 5000))));
    if tls {
        request.extensions_mut().insert(TlsConnection::new());
    }
    request
}

async fn answer(app: &Router, request: Request<Body>) -> (u16, HeaderMap, bytes::Bytes) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let mut headers = response.headers().clone();
    // Unique per request by design.
    headers.remove("x-request-id");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

/// The record without what differs between any two requests (time, id, latency).
fn comparable(event: &AuditEvent) -> String {
    let mut event = event.clone();
    event.time = std::time::UNIX_EPOCH;
    event.request_id = String::new();
    event.latency_us = 0;
    format!("{event:?}")
}

#[tokio::test]
async fn the_fused_stack_answers_and_records_exactly_as_the_nested_layers() {
    differential(None, None).await;
}

/// The same with the limits and the lockout in Redis: every shared check defers, one after the
/// other in one request (per-IP limit, lockout, Basic password check, per-subject limit).
#[cfg(feature = "redis")]
#[tokio::test]
async fn the_same_with_every_shared_check_in_redis() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let run = portcullis::auth::ApiKey::generate("t").unwrap();
    let prefix = format!("fused-{}", &run.expose()[2..14]);
    differential(
        Some((url.clone(), format!("{prefix}-a"))),
        Some((url, format!("{prefix}-b"))),
    )
    .await;
}

async fn differential(fused_shared: Shared, nested_shared: Shared) {
    let phc = phc();
    let (fused_events, nested_events) = (RecentEvents::new(200), RecentEvents::new(200));
    let fused_handle = {
        let layers = layers(&fused_events, &phc, &fused_shared).await;
        let handle = layers.audit.handle();
        (fused(layers), handle)
    };
    let nested_handle = {
        let layers = layers(&nested_events, &phc, &nested_shared).await;
        let handle = layers.audit.handle();
        (nested(layers), handle)
    };
    let (fused_app, fused_audit) = fused_handle;
    let (nested_app, nested_audit) = nested_handle;

    let bearer = |token: &str| vec![("authorization", format!("Bearer {token}"))];
    let reader = Signer::hs256().sign(&claims("reader", "read:items"));
    let writer = Signer::hs256().sign(&claims("writer", "read:items write:items"));
    let forged = Signer::es256_foreign().sign(&claims("mallory", "read:items"));
    let mut expired_claims = claims("late", "read:items");
    expired_claims["exp"] = json!(1);
    let expired = Signer::hs256().sign(&expired_claims);
    let basic = |user: &str, password: &str| {
        use base64::Engine as _;
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        vec![("authorization", format!("Basic {encoded}"))]
    };
    let none = Vec::new;

    let mut corpus: Vec<Case> = vec![
        // Allowed, with redaction and rate-limit headers.
        (Method::GET, 1, true, bearer(&reader), ""),
        (Method::POST, 1, true, bearer(&writer), "{}"),
        // Anonymous: optional auth lets it through, RBAC refuses.
        (Method::GET, 2, true, none(), ""),
        // Transport: plain HTTP, with and without a credential.
        (Method::GET, 3, false, none(), ""),
        (Method::GET, 3, false, bearer(&reader), ""),
        // Validation: a GET with a body; a method nobody serves.
        (Method::GET, 4, true, bearer(&reader), "x"),
        (Method::DELETE, 4, true, bearer(&reader), ""),
        // Auth: expired, forged, two credentials, a broken header.
        (Method::GET, 5, true, bearer(&expired), ""),
        (Method::GET, 5, true, bearer(&forged), ""),
        (
            Method::GET,
            5,
            true,
            vec![
                ("authorization", format!("Bearer {reader}")),
                (
                    "x-api-key",
                    "pcl_0123456789abcdefghijklmnopqrstuvwxyz".into(),
                ),
            ],
            "",
        ),
        (Method::GET, 5, true, bearer("a b"), ""),
        // RBAC: a reader writing.
        (Method::POST, 6, true, bearer(&reader), "{}"),
        // Basic: a right password (the deferred path), a wrong one.
        (Method::GET, 7, true, basic("ops", "correct horse"), ""),
        (Method::GET, 7, true, basic("ops", "wrong"), ""),
        // Hostile headers.
        (
            Method::GET,
            8,
            true,
            vec![("authorization", format!("Bearer {}", "A".repeat(20_000)))],
            "",
        ),
        (
            Method::GET,
            8,
            true,
            vec![("authorization", "Bearer a\tb".into())],
            "",
        ),
    ];
    // Lockout: wrong passwords from one address until it is locked out, then the right one.
    for _ in 0..4 {
        corpus.push((Method::GET, 9, true, basic("ops", "guess"), ""));
    }
    corpus.push((Method::GET, 9, true, basic("ops", "correct horse"), ""));
    // The per-subject limit (burst 3), then the per-IP limit (burst 6).
    for ip in 10..14 {
        corpus.push((Method::GET, ip, true, bearer(&reader), ""));
    }
    for _ in 0..8 {
        corpus.push((Method::GET, 20, true, none(), ""));
    }

    let mut statuses = Vec::new();
    for (i, (method, ip, tls, headers, body)) in corpus.into_iter().enumerate() {
        let from_fused = answer(&fused_app, request(method.clone(), ip, tls, &headers, body)).await;
        let from_nested = answer(&nested_app, request(method, ip, tls, &headers, body)).await;
        assert_eq!(from_fused, from_nested, "request {i}");
        statuses.push(from_fused.0);
    }
    // The corpus reaches every layer's refusal.
    for status in [200, 400, 401, 403, 405, 429, 431] {
        assert!(statuses.contains(&status), "no {status} in {statuses:?}");
    }

    fused_audit.flush().await;
    nested_audit.flush().await;
    let fused_records: Vec<String> = request_events(&fused_events)
        .iter()
        .map(comparable)
        .collect();
    let nested_records: Vec<String> = request_events(&nested_events)
        .iter()
        .map(comparable)
        .collect();
    assert_eq!(fused_records.len(), statuses.len());
    assert_eq!(fused_records, nested_records);
    // ... and every layer's refusal, as the audit trail records them.
    let refused: std::collections::BTreeSet<(String, String)> = request_events(&fused_events)
        .into_iter()
        .filter(|event| event.status >= 400)
        .map(|event| {
            (
                event.layer.unwrap_or_default().into_owned(),
                event.reason.unwrap_or_default().into_owned(),
            )
        })
        .collect();
    for (layer, reason) in [
        ("transport", "https_required"),
        ("transport", "credentials_over_http"),
        ("validate", "body_not_allowed"),
        ("rbac", "method_not_listed"),
        ("validate", "header_fields_too_large"),
        ("auth", "expired"),
        ("auth", "unknown_kid"),
        ("auth", "malformed_authorization"),
        ("auth", "several_credentials"),
        ("auth", "wrong_password"),
        ("lockout", "locked_out"),
        ("rate_limit", "rate_limited"),
        ("rbac", "missing_scope"),
    ] {
        assert!(
            refused.contains(&(layer.to_owned(), reason.to_owned())),
            "no {layer} {reason} in {refused:?}"
        );
    }
}
