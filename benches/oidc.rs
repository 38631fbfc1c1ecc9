//! OIDC costs against an in-process JWKS server over loopback HTTP: the first request with a cold
//! JWKS cache (discovery-free issuer set-up: one JWKS fetch, then one ES256 verification) against
//! a warm one (keys present, signature verified) and the steady state (verified-token cache hit
//! through `OidcAuthenticator::verify`, jti deny-list consulted); and the number of JWKS fetches
//! caused by a burst of 10 000 requests with random unknown kids.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::oidc::{InMemoryDenyList, Issuer, OidcAuthenticator};
use serde_json::json;

const AUDIENCE: &str = "bench-api";

struct Server {
    base: String,
    fetches: Arc<AtomicU64>,
}

fn key() -> EncodingKey {
    EncodingKey::from_ec_pem(include_bytes!("../tests/fixtures/es256_private.pem")).unwrap()
}

async fn start() -> Server {
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(&key(), Algorithm::ES256).unwrap()).unwrap();
    jwk["kid"] = json!("k1");
    jwk["use"] = json!("sig");
    let body = json!({ "keys": [jwk] }).to_string();
    let fetches = Arc::new(AtomicU64::new(0));
    let counter = fetches.clone();
    let app = Router::new().route(
        "/jwks",
        get(move || {
            counter.fetch_add(1, Ordering::Relaxed);
            let body = body.clone();
            async move { body }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server { base, fetches }
}

async fn issuer(server: &Server, cooldown: Duration, cache: bool) -> Issuer {
    let mut builder = Issuer::builder(server.base.clone())
        .jwks_uri(format!("{}/jwks", server.base))
        .audience([AUDIENCE])
        .refresh_cooldown(cooldown)
        .allow_http_on_loopback();
    if !cache {
        builder = builder.cache_max_bytes(0);
    }
    builder.build().await.unwrap()
}

fn token(server: &Server, kid: &str, jti: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    let claims = json!({
        "iss": server.base, "aud": AUDIENCE, "sub": "bench", "scope": "read:items",
        "jti": format!("jti-{jti}"), "iat": now, "exp": now + 3600,
    });
    jsonwebtoken::encode(&header, &claims, &key()).unwrap()
}

fn authenticator(issuer: Issuer) -> OidcAuthenticator {
    OidcAuthenticator::builder()
        .issuer(issuer)
        .deny_list(InMemoryDenyList::new(1000))
        .build()
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(start());
    let valid = token(&server, "k1", 1);
    let mut group = c.benchmark_group("oidc");

    group.bench_function("first_request_cold_jwks", |b| {
        b.to_async(&rt).iter(|| async {
            let oidc = authenticator(issuer(&server, Duration::from_secs(30), true).await);
            black_box(oidc.verify(&valid).await.unwrap());
        });
    });
    let warm =
        rt.block_on(async { authenticator(issuer(&server, Duration::from_secs(30), false).await) });
    group.bench_function("first_request_warm_jwks", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(warm.verify(&valid).await.unwrap()) });
    });
    let cached =
        rt.block_on(async { authenticator(issuer(&server, Duration::from_secs(30), true).await) });
    group.bench_function("steady_state_cached", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cached.verify(&valid).await.unwrap()) });
    });
    group.finish();

    // 10 000 concurrent requests with random unknown kids, in three bursts: right after start-up
    // (within the cool-down of the initial fetch), after the cool-down, and again at once.
    rt.block_on(async {
        let cooldown = Duration::from_secs(1);
        let oidc = authenticator(issuer(&server, cooldown, true).await);
        let forged: Vec<String> = (0..10_000)
            .map(|i| token(&server, &format!("forged-{i}-{}", i * 7919 % 10007), i))
            .collect();
        let mut report = Vec::new();
        for (label, pause) in [
            ("within cool-down of start-up fetch", Duration::ZERO),
            ("after the cool-down", cooldown + Duration::from_millis(100)),
            ("again at once", Duration::ZERO),
        ] {
            tokio::time::sleep(pause).await;
            let before = server.fetches.load(Ordering::Relaxed);
            let started = Instant::now();
            let tasks: Vec<_> = forged
                .iter()
                .cloned()
                .map(|t| {
                    let oidc = oidc.clone();
                    tokio::spawn(async move { oidc.verify(&t).await.is_err() })
                })
                .collect();
            for task in tasks {
                assert!(task.await.unwrap(), "a forged kid was accepted");
            }
            let fetched = server.fetches.load(Ordering::Relaxed) - before;
            report.push(format!(
                "burst of 10000 unknown kids, {label}: {fetched} JWKS fetch(es), all 401, {:?}",
                started.elapsed()
            ));
        }
        for line in report {
            println!("{line}");
        }
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
