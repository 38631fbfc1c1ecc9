//! What `TransportSecurityLayer` costs per request, through a real `Router` (in process,
//! `oneshot`), against the same router without it, on the same requests: TLS terminated here
//! (the `TlsConnection` marker), behind a trusted proxy (`X-Forwarded-Proto`, and a three-element
//! `Forwarded` walked right to left), credentialed (adds `Cache-Control`), and the two answers to
//! plain HTTP (403 refusal, 308 redirect).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portcullis::TransportSecurityLayer;
use portcullis::client_ip::{ProxyHeader, TrustedProxies};
use portcullis::transport::TlsConnection;
use tower::ServiceExt;

const PROXY: &str = "10.0.0.2:4711";
const CLIENT: &str = "203.0.113.9:4711";

fn request(case: &str) -> Request<Body> {
    let mut builder = Request::get("/items?page=2").header("host", "api.example.com");
    let peer = match case {
        "tls" | "tls_credentialed" | "plain_refused" | "plain_redirected" => CLIENT,
        _ => PROXY,
    };
    builder = match case {
        "tls" => builder.extension(TlsConnection::new()),
        "tls_credentialed" => builder
            .extension(TlsConnection::new())
            .header("authorization", "Bearer abc"),
        "proxy_x_forwarded_proto" => builder.header("x-forwarded-proto", "https"),
        "proxy_forwarded" => builder.header(
            "forwarded",
            "for=198.51.100.7;proto=https, for=10.1.1.1;proto=http, for=10.0.0.3;proto=http",
        ),
        _ => builder,
    };
    builder
        .extension(ConnectInfo(peer.parse::<SocketAddr>().unwrap()))
        .body(Body::empty())
        .unwrap()
}

fn router(layer: Option<TransportSecurityLayer>) -> Router {
    let router = Router::new().route("/items", get(|| async { "[]" }));
    match layer {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let proxies = |header| TrustedProxies::new(["10.0.0.0/8"]).unwrap().header(header);
    let bare = router(None);
    let xfp = router(Some(
        TransportSecurityLayer::builder()
            .trusted_proxies(proxies(ProxyHeader::XForwardedFor))
            .build()
            .unwrap(),
    ));
    let forwarded = router(Some(
        TransportSecurityLayer::builder()
            .trusted_proxies(proxies(ProxyHeader::Forwarded))
            .build()
            .unwrap(),
    ));
    let redirecting = router(Some(
        TransportSecurityLayer::builder()
            .redirect()
            .build()
            .unwrap(),
    ));
    let cases: [(&str, &Router, StatusCode); 6] = [
        ("tls", &xfp, StatusCode::OK),
        ("tls_credentialed", &xfp, StatusCode::OK),
        ("proxy_x_forwarded_proto", &xfp, StatusCode::OK),
        ("proxy_forwarded", &forwarded, StatusCode::OK),
        ("plain_refused", &xfp, StatusCode::FORBIDDEN),
        (
            "plain_redirected",
            &redirecting,
            StatusCode::PERMANENT_REDIRECT,
        ),
    ];

    let mut group = c.benchmark_group("transport");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    for (case, layered, expected) in cases {
        // Each variant must answer as intended, or we would be timing the wrong path.
        let response = runtime
            .block_on(layered.clone().oneshot(request(case)))
            .unwrap();
        assert_eq!(response.status(), expected, "{case}");
        for (name, router) in [("bare", &bare), ("layer", layered)] {
            group.bench_function(BenchmarkId::new(name, case), |b| {
                b.to_async(&runtime)
                    .iter(|| async { router.clone().oneshot(request(case)).await.unwrap() });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
