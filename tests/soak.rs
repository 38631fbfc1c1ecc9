//! Soak test (bounded in time): a mix of valid, invalid and hostile requests through the whole
//! stack (`Portcullis::builder()` with every layer), checking that no answer is a 5xx and that
//! memory stays flat once the bounded structures (token cache, rate-limit keys, alert tables,
//! audit queue) are full. `SOAK_SECONDS` sets the length (default 20; the test script's value).
//! Its own test binary, so the resident set it measures is its own.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use common::*;
use http::{Method, Request};
use portcullis::audit::{AuditKey, AuditLayer, JsonLinesFile, Overflow};
use portcullis::auth::JwtAuthenticator;
use portcullis::rate_limit::{KeyBy, LockoutLayer, Quota, RateLimitLayer};
use portcullis::rbac::{RbacLayer, RouteTable, public, require_scope};
use portcullis::transport::TlsConnection;
use portcullis::{
    AuthLayer, Portcullis, RedactLayer, TransportSecurityLayer, Valid, ValidateLayer,
};
use serde::Deserialize;
use serde_json::json;
use tower::ServiceExt;
use validator::Validate;

#[derive(Deserialize, Validate)]
struct NewItem {
    #[validate(length(min = 1, max = 100))]
    name: String,
}

/// Resident set size in KiB (Linux), or 0 where /proc is unavailable.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

fn app(audit_path: &std::path::Path) -> Router {
    let jwt = JwtAuthenticator::builder()
        .key(all_keys().remove(3))
        .issuer(ISSUER)
        .audience([AUDIENCE])
        .cache_max_bytes(4 << 20)
        .build()
        .unwrap();
    let audit =
        AuditLayer::builder(AuditKey::new(b"soak test audit key, 32 bytes or more").unwrap())
            .sink(
                JsonLinesFile::builder(audit_path)
                    .max_bytes(8 << 20)
                    .keep(1)
                    .open()
                    .unwrap(),
            )
            .queue_capacity(4096)
            .overflow(Overflow::Drop)
            .build()
            .unwrap();
    let table = RouteTable::builder()
        .route(Method::GET, "/items", require_scope("read:items"))
        .route(Method::POST, "/items", require_scope("read:items"))
        .route(Method::GET, "/health", public())
        .build()
        .unwrap();
    let security = Portcullis::builder()
        .audit(audit)
        .transport(TransportSecurityLayer::new())
        .rate_limit_per_ip(
            RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_second(50).burst(100))
                .build()
                .unwrap(),
        )
        .lockout(LockoutLayer::builder().max_entries(10_000).build().unwrap())
        .validate(
            ValidateLayer::builder()
                .max_body_bytes(64 << 10)
                .build()
                .unwrap(),
        )
        .auth(AuthLayer::optional().with(jwt))
        .rate_limit_per_subject(
            RateLimitLayer::builder(KeyBy::Subject, Quota::per_second(1000).burst(1000))
                .build()
                .unwrap(),
        )
        .rbac(RbacLayer::table(table))
        .redact(RedactLayer::new())
        .build()
        .unwrap();
    Router::new()
        .route(
            "/items",
            get(|| async { axum::Json(json!({ "items": [{ "owner": "a@example.com", "card": "4111 1111 1111 1111" }] })) })
                .post(|Valid(axum::Json(item)): Valid<axum::Json<NewItem>>| async move { item.name }),
        )
        .route("/health", get(|| async { "ok" }))
        .layer(security)
}

/// One request of the mix; `n` picks the kind and varies the values.
fn request(n: u64, tokens: &[String]) -> Request<Body> {
    let ip: IpAddr = match n % 3 {
        0 => IpAddr::V4(Ipv4Addr::from(fastrand::u32(..))),
        1 => IpAddr::V6(Ipv6Addr::from(fastrand::u128(..))),
        _ => IpAddr::V4(Ipv4Addr::new(10, 0, 0, (n % 8) as u8)),
    };
    let valid = &tokens[(n as usize) % tokens.len()];
    let mut builder = Request::builder().method(Method::GET).uri("/items");
    let mut body = Body::empty();
    match n % 16 {
        0..=5 => builder = builder.header("authorization", format!("Bearer {valid}")),
        6 => builder = builder.header("authorization", format!("Bearer {}x", valid)),
        7 => {
            let garbage: String = (0..fastrand::usize(0..4000))
                .map(|_| fastrand::char(..))
                .collect();
            builder = builder.header("authorization", garbage.escape_default().to_string());
        }
        8 => {
            builder = builder
                .header("authorization", format!("Bearer {valid}"))
                .header("authorization", "Basic YTpi");
        }
        9 => builder = builder.uri(format!("/tokens/{valid}/{}", fastrand::u64(..))),
        10 => builder = builder.method(Method::from_bytes(b"BREW").unwrap()),
        11 => {
            builder = builder
                .method(Method::POST)
                .header("authorization", format!("Bearer {valid}"))
                .header("content-type", "application/json");
            body = Body::from("[".repeat(100_000));
        }
        12 => {
            builder = builder
                .method(Method::POST)
                .header("authorization", format!("Bearer {valid}"))
                .header("content-type", "application/json");
            body = Body::from(vec![0xff; 200_000]);
        }
        13 => {
            builder = builder
                .method(Method::POST)
                .header("authorization", format!("Bearer {valid}"))
                .header("content-type", "application/json");
            body = Body::from(r#"{"name":"gate","extra":1}"#);
        }
        14 => {
            let id: String = (0..fastrand::usize(0..300))
                .map(|_| fastrand::alphanumeric())
                .collect();
            builder = builder.uri("/health").header("x-request-id", id);
        }
        _ => {
            builder = builder
                .header("authorization", "Basic YWxpY2U6d3Jvbmc=")
                .header("user-agent", "x".repeat(10_000))
        }
    }
    let mut request = builder.body(body).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
    request.extensions_mut().insert(TlsConnection::new());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_hostile_traffic_never_gets_a_5xx_and_memory_stays_flat() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let dir = std::env::temp_dir().join(format!("portcullis-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let app = app(&dir.join("audit.jsonl"));
    // Many distinct subjects: the verified-token cache fills up to its byte budget and evicts.
    let tokens: Vec<String> = (0..5000)
        .map(|i| Signer::hs256().sign(&claims(&format!("user-{i}"), "read:items")))
        .collect();
    let tokens = std::sync::Arc::new(tokens);
    let start = Instant::now();
    let total = Duration::from_secs(seconds);
    let mut warm_rss = 0;
    let mut peak_after_warm = 0;
    let mut sent = 0u64;
    let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
    while start.elapsed() < total {
        let batch: Vec<_> = (0..256)
            .map(|i| {
                let app = app.clone();
                let tokens = tokens.clone();
                let n = sent + i;
                tokio::spawn(async move {
                    app.oneshot(request(n, &tokens))
                        .await
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        for task in batch {
            let status = task.await.unwrap();
            assert!(status < 500, "a {status} under the soak mix");
            *statuses.entry(status).or_default() += 1;
        }
        sent += 256;
        let elapsed = start.elapsed();
        if warm_rss == 0 && elapsed > total / 3 {
            warm_rss = rss_kib();
        } else if warm_rss > 0 {
            peak_after_warm = peak_after_warm.max(rss_kib());
        }
    }
    eprintln!(
        "soak: {sent} requests in {:?}, statuses {statuses:?}, RSS after warm-up {} MiB, peak later {} MiB",
        start.elapsed(),
        warm_rss / 1024,
        peak_after_warm / 1024
    );
    assert!(
        sent > 10_000,
        "the soak ran too few requests to mean anything: {sent}"
    );
    assert!(
        statuses.contains_key(&200) && statuses.len() >= 5,
        "the mix reached every kind of answer: {statuses:?}"
    );
    if warm_rss > 0 {
        assert!(
            peak_after_warm <= warm_rss + 48 * 1024,
            "memory grew from {} MiB to {} MiB after warm-up",
            warm_rss / 1024,
            peak_after_warm / 1024
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
