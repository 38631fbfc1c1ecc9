//! Arbitrary `Host`, `X-Forwarded-Proto` and `Forwarded` values from trusted and untrusted peers
//! through `TransportSecurityLayer`: it always answers at once, never with a 5xx, lets a request
//! through only as HTTPS from a trusted proxy, and redirects only to an `https://` location that
//! holds no byte an attacker could use to split or smuggle a header.
#![no_main]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::body::Body;
use axum::extract::ConnectInfo;
use futures_util::FutureExt;
use http::{Request, Response};
use libfuzzer_sys::fuzz_target;
use portcullis::TransportSecurityLayer;
use portcullis::client_ip::{ProxyHeader, TrustedProxies};
use tower::{Layer, ServiceExt, service_fn};

static LAYERS: LazyLock<Vec<TransportSecurityLayer>> = LazyLock::new(|| {
    let proxies = |header| {
        TrustedProxies::new(["10.0.0.0/8"])
            .expect("valid networks")
            .header(header)
    };
    vec![
        TransportSecurityLayer::builder()
            .trusted_proxies(proxies(ProxyHeader::XForwardedFor))
            .build()
            .expect("valid settings"),
        TransportSecurityLayer::builder()
            .trusted_proxies(proxies(ProxyHeader::Forwarded))
            .redirect()
            .build()
            .expect("valid settings"),
    ]
});

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == b'\n');
    let method = match parts.next().and_then(|m| m.first()) {
        Some(b) if b % 2 == 0 => http::Method::GET,
        _ => http::Method::POST,
    };
    let values: Vec<http::HeaderValue> = parts
        .take(6)
        .filter_map(|v| http::HeaderValue::from_bytes(v).ok())
        .collect();
    for layer in LAYERS.iter() {
        for peer in ["10.0.0.1:4000", "203.0.113.9:4000"] {
            let mut request = Request::builder().method(method.clone()).uri("/items");
            for (i, value) in values.iter().enumerate() {
                let name = ["host", "x-forwarded-proto", "forwarded"][i % 3];
                request = request.header(name, value.clone());
            }
            let Ok(mut request) = request.body(Body::empty()) else {
                continue;
            };
            let peer: SocketAddr = peer.parse().expect("a literal address");
            request.extensions_mut().insert(ConnectInfo(peer));
            let service = layer.layer(service_fn(|_: Request<Body>| async {
                Ok::<_, Infallible>(Response::new(Body::empty()))
            }));
            let response = service
                .oneshot(request)
                .now_or_never()
                .expect("the layer answers at once")
                .expect("infallible");
            let status = response.status().as_u16();
            assert!(status < 500, "a {status}");
            if status == 200 {
                assert!(
                    peer.to_string().starts_with("10."),
                    "HTTPS believed from an untrusted peer"
                );
            }
            if let Some(location) = response.headers().get("location") {
                let location = location.as_bytes();
                assert!(location.starts_with(b"https://"), "redirect off https");
                assert!(
                    location.iter().all(|b| b.is_ascii_graphic()),
                    "redirect location with a control or space byte"
                );
            }
        }
    }
});
