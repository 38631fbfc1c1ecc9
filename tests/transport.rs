//! TransportSecurityLayer through a real Router: which requests count as HTTPS (and which forged
//! ones do not), refusals and redirects of plain HTTP, the security headers on every response,
//! and the TLS example served end to end with rustls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use axum::response::Response;
use axum::routing::get;
use http_body_util::BodyExt;
use portcullis::auth::{ApiKey, ApiKeyAuthenticator, ApiKeyGrant, InMemoryKeyStore};
use portcullis::client_ip::{ProxyHeader, TrustedProxies};
use portcullis::transport::{Hsts, TlsConnection, TransportSecurityLayer};
use portcullis::{AuthLayer, AuthMethod, Decision, Identity, ValidateLayer};
use serde_json::Value;
use tower::ServiceExt;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/tls.rs"]
mod tls_example;

const PROXY: &str = "10.0.0.2:4711";
const CLIENT: &str = "203.0.113.9:4711";
const HSTS: &str = "strict-transport-security";

fn proxies(header: ProxyHeader) -> TrustedProxies {
    TrustedProxies::new(["10.0.0.0/8"]).unwrap().header(header)
}

fn behind_proxies(header: ProxyHeader) -> TransportSecurityLayer {
    TransportSecurityLayer::builder()
        .trusted_proxies(proxies(header))
        .build()
        .unwrap()
}

fn app(layer: TransportSecurityLayer) -> Router {
    Router::new()
        .route(
            "/items",
            get(|| async { "[]" }).post(|| async { "created" }),
        )
        .route(
            "/custom",
            get(|| async {
                (
                    [
                        ("content-security-policy", "default-src 'self'"),
                        ("cache-control", "private, max-age=60"),
                        ("referrer-policy", "same-origin"),
                        (HSTS, "max-age=1"),
                        ("server", "nginx/1.2.3"),
                        ("x-content-type-options", "sniff-away"),
                    ],
                    "custom",
                )
            }),
        )
        .layer(layer)
}

/// A request from `peer` with these headers, and optionally the TLS marker.
fn request(method: Method, uri: &str, peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .extension(ConnectInfo(peer.parse::<SocketAddr>().unwrap()))
        .body(Body::empty())
        .unwrap()
}

fn get_from(peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
    request(Method::GET, "/items", peer, headers)
}

fn tls(mut request: Request<Body>) -> Request<Body> {
    request.extensions_mut().insert(TlsConnection::new());
    request
}

async fn send(app: &Router, request: Request<Body>) -> Response {
    app.clone().oneshot(request).await.unwrap()
}

async fn problem(response: Response) -> Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

/// The answer to a plain HTTP request: 403 problem+json, the API headers, no HSTS.
async fn assert_refused(response: Response, reason: &str) {
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(!response.headers().contains_key(HSTS));
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let decision = response.extensions().get::<Decision>().unwrap();
    assert_eq!(
        (decision.layer, decision.allowed),
        (portcullis::LayerKind::Transport, false)
    );
    assert_eq!(decision.reason, reason);
    let problem = problem(response).await;
    assert_eq!(problem["type"], "urn:portcullis:problem:forbidden");
    // The reason the README documents is in the body, not only in the audit record.
    assert_eq!(problem["reason"], reason);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("This API is served over HTTPS only")
    );
}

fn assert_served_over_https(response: &Response) {
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[HSTS],
        "max-age=31536000; includeSubDomains"
    );
}

#[tokio::test]
async fn plain_http_is_refused() {
    let app = app(TransportSecurityLayer::new());
    assert_refused(send(&app, get_from(CLIENT, &[])).await, "https_required").await;
    // Without ConnectInfo at all (the peer counts as 0.0.0.0).
    let bare = Request::get("/items").body(Body::empty()).unwrap();
    assert_refused(send(&app, bare).await, "https_required").await;
    // Credentials already crossed the network in clear: say so.
    let response = send(&app, get_from(CLIENT, &[("authorization", "Bearer x")])).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_refused(response, "credentials_over_http").await;
}

#[tokio::test]
async fn tls_terminated_here_is_https() {
    let app = app(TransportSecurityLayer::new());
    assert_served_over_https(&send(&app, tls(get_from(CLIENT, &[]))).await);
}

#[tokio::test]
async fn the_request_target_scheme_proves_nothing() {
    // `GET https://api.example.com/items HTTP/1.1` (absolute form) or h2c's `:scheme`: client-written.
    let app = app(behind_proxies(ProxyHeader::XForwardedFor));
    let absolute = request(Method::GET, "https://api.example.com/items", CLIENT, &[]);
    assert_eq!(absolute.uri().scheme_str(), Some("https"));
    assert_refused(send(&app, absolute).await, "https_required").await;
}

#[tokio::test]
async fn proto_headers_from_untrusted_peers_are_ignored() {
    for layer in [
        TransportSecurityLayer::new(),
        behind_proxies(ProxyHeader::XForwardedFor),
        behind_proxies(ProxyHeader::Forwarded),
    ] {
        let app = app(layer);
        for spoof in [
            ("x-forwarded-proto", "https"),
            ("forwarded", "for=198.51.100.7;proto=https"),
            ("x-forwarded-ssl", "on"),
            ("front-end-https", "on"),
        ] {
            let response = send(&app, get_from(CLIENT, &[spoof])).await;
            assert_refused(response, "https_required").await;
        }
    }
}

#[tokio::test]
async fn x_forwarded_proto_from_a_trusted_proxy() {
    let app = app(behind_proxies(ProxyHeader::XForwardedFor));
    for value in ["https", "HTTPS", " https "] {
        let response = send(&app, get_from(PROXY, &[("x-forwarded-proto", value)])).await;
        assert_served_over_https(&response);
    }
    // X-Real-IP proxies (nginx) set X-Forwarded-Proto too.
    let real_ip = self::app(behind_proxies(ProxyHeader::XRealIp));
    let response = send(&real_ip, get_from(PROXY, &[("x-forwarded-proto", "https")])).await;
    assert_served_over_https(&response);
    // IPv4-mapped IPv6 peers are their IPv4 address.
    let response = send(
        &app,
        get_from("[::ffff:10.0.0.2]:4711", &[("x-forwarded-proto", "https")]),
    )
    .await;
    assert_served_over_https(&response);

    for hostile in [
        vec![("x-forwarded-proto", "http")],
        vec![("x-forwarded-proto", "https, http")],
        vec![("x-forwarded-proto", "https,https")],
        vec![("x-forwarded-proto", "http, https")],
        vec![
            ("x-forwarded-proto", "https"),
            ("x-forwarded-proto", "https"),
        ],
        vec![
            ("x-forwarded-proto", "https"),
            ("x-forwarded-proto", "http"),
        ],
        vec![("x-forwarded-proto", "")],
        vec![("x-forwarded-proto", "https;")],
        vec![("x-forwarded-proto", "\"https\"")],
        vec![("x-forwarded-proto", "httpsx")],
        // The proxy writes X-Forwarded-Proto; a client's Forwarded passes through it untouched.
        vec![("forwarded", "proto=https")],
    ] {
        let response = send(&app, get_from(PROXY, &hostile)).await;
        assert_refused(response, "https_required").await;
    }

    let huge = "https".repeat(20_000);
    let response = send(&app, get_from(PROXY, &[("x-forwarded-proto", &huge)])).await;
    assert_refused(response, "https_required").await;
    let mut dirty = get_from(PROXY, &[]);
    dirty.headers_mut().insert(
        "x-forwarded-proto",
        HeaderValue::from_bytes(b"https\xff").unwrap(),
    );
    assert_refused(send(&app, dirty).await, "https_required").await;
}

#[tokio::test]
async fn a_trusted_proxy_is_believed_over_the_connection() {
    // A re-encrypting proxy that received plain HTTP from the client says so.
    let app = app(behind_proxies(ProxyHeader::XForwardedFor));
    let request = tls(get_from(PROXY, &[("x-forwarded-proto", "http")]));
    assert_refused(send(&app, request).await, "https_required").await;
    // Without a proto header, the TLS connection itself counts.
    assert_served_over_https(&send(&app, tls(get_from(PROXY, &[]))).await);
    // And a trusted proxy that says nothing over plain TCP is plain HTTP.
    assert_refused(send(&app, get_from(PROXY, &[])).await, "https_required").await;
}

#[tokio::test]
async fn forwarded_from_trusted_proxies() {
    let app = app(behind_proxies(ProxyHeader::Forwarded));
    for served in [
        vec!["for=198.51.100.7;proto=https"],
        vec![r#"For="[2001:db8::17]:4711";Proto="HTTPS";by=10.0.0.2"#],
        // The client's hop decides; the hops between our proxies may be plain.
        vec!["for=198.51.100.7;proto=https, for=10.1.1.1;proto=http"],
        vec!["for=198.51.100.7;proto=https", "for=10.1.1.1;proto=http"],
        // What the client wrote to the left of its hop is never read.
        vec!["for=6.6.6.6;proto=http;proto=nonsense, for=198.51.100.7;proto=https"],
        vec!["garbage, for=198.51.100.7;proto=https"],
        // An obfuscated client, described by our proxy.
        vec!["for=_hidden;proto=https"],
        // Only proxies: the left-most one's connection counts.
        vec!["for=10.9.9.9;proto=https, for=10.1.1.1;proto=http"],
        // No `for`: still our proxy's element, describing the connection it received.
        vec!["proto=https"],
    ] {
        let headers: Vec<_> = served.iter().map(|v| ("forwarded", *v)).collect();
        let response = send(&app, get_from(PROXY, &headers)).await;
        assert_served_over_https(&response);
    }
    for refused in [
        vec!["for=198.51.100.7;proto=http"],
        vec!["for=198.51.100.7"],
        // A client that wrote `https` before our proxy appended the truth.
        vec!["for=6.6.6.6;proto=https, for=198.51.100.7;proto=http"],
        vec!["for=6.6.6.6;proto=https", "for=198.51.100.7;proto=http"],
        // Conflicting or unreadable elements on our side of the chain.
        vec!["for=198.51.100.7;proto=https;proto=http"],
        vec!["for=198.51.100.7;proto=https;proto=https"],
        vec!["for=198.51.100.7;proto=https, for=10.1.1.1;proto=https;proto=http"],
        vec!["for=198.51.100.7;proto=https, garbage"],
        vec!["for=198.51.100.7;proto=https,"],
        vec![""],
    ] {
        let headers: Vec<_> = refused.iter().map(|v| ("forwarded", *v)).collect();
        let response = send(&app, get_from(PROXY, &headers)).await;
        assert_refused(response, "https_required").await;
    }
    // The proxy writes Forwarded; a client's X-Forwarded-Proto passes through it and is not read.
    let response = send(&app, get_from(PROXY, &[("x-forwarded-proto", "https")])).await;
    assert_refused(response, "https_required").await;
}

#[tokio::test]
async fn huge_forwarded_chains_are_not_walked() {
    let app = app(behind_proxies(ProxyHeader::Forwarded));
    // 40 trusted hops: past the 32-hop limit, so nothing is believed.
    let chain = vec!["for=10.1.1.1;proto=https"; 40].join(", ");
    let response = send(&app, get_from(PROXY, &[("forwarded", &chain)])).await;
    assert_refused(response, "https_required").await;
    // A long client-written prefix costs nothing: the walk stops at the client's hop.
    let prefix = vec!["for=6.6.6.6;proto=http"; 5_000].join(", ");
    let line = format!("{prefix}, for=198.51.100.7;proto=https");
    let response = send(&app, get_from(PROXY, &[("forwarded", &line)])).await;
    assert_served_over_https(&response);
    // One huge element.
    let huge = format!("for=198.51.100.7;proto={}", "s".repeat(100_000));
    let response = send(&app, get_from(PROXY, &[("forwarded", &huge)])).await;
    assert_refused(response, "https_required").await;
}

#[tokio::test]
async fn redirects_are_for_plain_gets_and_heads_without_credentials() {
    let app = app(TransportSecurityLayer::builder()
        .redirect()
        .build()
        .unwrap());
    for method in [Method::GET, Method::HEAD] {
        let request = request(
            method,
            "/items?page=2&q=a%20b",
            CLIENT,
            &[("host", "API.example.com:8080")],
        );
        let response = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            response.headers()["location"],
            "https://api.example.com/items?page=2&q=a%20b"
        );
        assert!(!response.headers().contains_key(HSTS));
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        assert_eq!(response.headers()["cache-control"], "no-store");
        let decision = response.extensions().get::<Decision>().unwrap();
        assert_eq!(decision.reason, "redirect_to_https");
    }
    let post = request(
        Method::POST,
        "/items",
        CLIENT,
        &[("host", "api.example.com")],
    );
    assert_refused(send(&app, post).await, "https_required").await;
    for credential in [
        ("authorization", "Bearer x"),
        ("cookie", "session=1"),
        ("x-api-key", "pcl_x"),
    ] {
        let request = get_from(CLIENT, &[("host", "api.example.com"), credential]);
        assert_refused(send(&app, request).await, "credentials_over_http").await;
    }
    // Over HTTPS nothing is redirected.
    let request = tls(get_from(CLIENT, &[("host", "api.example.com")]));
    assert_served_over_https(&send(&app, request).await);
}

#[tokio::test]
async fn redirect_hosts_are_never_echoed_unchecked() {
    let app = app(TransportSecurityLayer::builder()
        .redirect()
        .build()
        .unwrap());
    for hostile in [
        vec![],
        vec![("host", "evil.example/")],
        vec![("host", "evil.example/@api.example.com")],
        vec![("host", "api.example.com@evil.example")],
        vec![("host", "evil.example\\api.example.com")],
        vec![("host", "evil.example?.api.example.com")],
        vec![("host", "evil.example#")],
        vec![("host", "api.example.com:8080:1")],
        vec![("host", "api.example.com:99999")],
        vec![("host", "127.1")],
        vec![("host", "0x7f.0.0.1")],
        vec![("host", "under_score.example")],
        vec![("host", "")],
        vec![("host", "a\"b")],
        vec![("host", "api.example.com"), ("host", "evil.example")],
    ] {
        let response = send(&app, get_from(CLIENT, &hostile)).await;
        assert!(!response.headers().contains_key("location"), "{hostile:?}");
        assert_refused(response, "redirect_host_invalid").await;
    }
    let mut dirty = get_from(CLIENT, &[]);
    dirty.headers_mut().insert(
        "host",
        HeaderValue::from_bytes(b"api.example.com\xff").unwrap(),
    );
    assert_refused(send(&app, dirty).await, "redirect_host_invalid").await;
    // The target's authority (HTTP/2, absolute form) and Host must agree.
    let split = request(
        Method::GET,
        "http://evil.example/items",
        CLIENT,
        &[("host", "api.example.com")],
    );
    assert_refused(send(&app, split).await, "redirect_host_invalid").await;
    let absolute = request(Method::GET, "http://api.example.com/items", CLIENT, &[]);
    let response = send(&app, absolute).await;
    assert_eq!(
        response.headers()["location"],
        "https://api.example.com/items"
    );
    // A path that looks like an authority stays a path.
    let request = request(
        Method::GET,
        "//evil.example/x",
        CLIENT,
        &[("host", "api.example.com")],
    );
    let response = send(&app, request).await;
    assert_eq!(
        response.headers()["location"],
        "https://api.example.com//evil.example/x"
    );
}

#[tokio::test]
async fn a_canonical_host_ignores_the_request_host() {
    let app = app(TransportSecurityLayer::builder()
        .redirect_to("api.example.com:8443")
        .build()
        .unwrap());
    for host in [
        vec![("host", "evil.example")],
        vec![],
        vec![("host", "x/y")],
    ] {
        let response = send(&app, get_from(CLIENT, &host)).await;
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            response.headers()["location"],
            "https://api.example.com:8443/items"
        );
    }
}

/// A load balancer probes `/health` over plain HTTP without a proto header: with the path
/// exempted, the probe gets its answer (and the service is not marked down), while every other
/// plain request, a credential on the probe path and a write to it are still refused.
#[tokio::test]
async fn health_probes_over_plain_http_are_an_explicit_per_path_opt_in() {
    let app = app(TransportSecurityLayer::builder()
        .trusted_proxies(proxies(ProxyHeader::XForwardedFor))
        .allow_http_on_paths(["/custom"])
        .build()
        .unwrap());
    let probe =
        |method: Method, uri: &str, headers: &[(&str, &str)]| request(method, uri, PROXY, headers);
    let answer = send(&app, probe(Method::GET, "/custom", &[])).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(
        !answer.headers().contains_key(HSTS),
        "never over plain HTTP"
    );
    assert_eq!(answer.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        send(&app, probe(Method::HEAD, "/custom?verbose=1", &[]))
            .await
            .status(),
        StatusCode::OK
    );
    assert_refused(
        send(&app, probe(Method::GET, "/items", &[])).await,
        "https_required",
    )
    .await;
    assert_refused(
        send(&app, probe(Method::GET, "/custom/", &[])).await,
        "https_required",
    )
    .await;
    assert_refused(
        send(&app, probe(Method::POST, "/custom", &[])).await,
        "https_required",
    )
    .await;
    assert_refused(
        send(
            &app,
            probe(Method::GET, "/custom", &[("authorization", "Bearer x")]),
        )
        .await,
        "credentials_over_http",
    )
    .await;
    for bad in ["health", "/health?x", ""] {
        assert!(
            TransportSecurityLayer::builder()
                .allow_http_on_paths([bad])
                .build()
                .is_err(),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn loopback_http_is_an_explicit_opt_in() {
    let local = [("host", "localhost:3000")];
    let off = app(TransportSecurityLayer::new());
    assert_refused(
        send(&off, get_from("127.0.0.1:5000", &local)).await,
        "https_required",
    )
    .await;

    let on = app(TransportSecurityLayer::builder()
        .trusted_proxies(
            TrustedProxies::new(["127.0.0.2"])
                .unwrap()
                .header(ProxyHeader::XForwardedFor),
        )
        .allow_http_on_loopback()
        .build()
        .unwrap());
    for (peer, host) in [
        ("127.0.0.1:5000", "localhost:3000"),
        ("[::1]:5000", "[::1]:3000"),
        ("[::ffff:127.0.0.1]:5000", "127.0.0.1"),
    ] {
        let response = send(&on, get_from(peer, &[("host", host)])).await;
        assert_eq!(response.status(), StatusCode::OK, "{peer} {host}");
        assert!(!response.headers().contains_key(HSTS));
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
    // A handler's HSTS never goes out over plain HTTP.
    let custom = request(
        Method::GET,
        "/custom",
        "127.0.0.1:5000",
        &[("host", "localhost")],
    );
    assert!(!send(&on, custom).await.headers().contains_key(HSTS));
    // A loopback peer that forwards for someone else is a local proxy relaying the internet.
    for forwarding in [
        ("x-forwarded-for", "198.51.100.7"),
        ("x-real-ip", "198.51.100.7"),
        ("forwarded", "for=198.51.100.7"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "api.example.com"),
        ("via", "1.1 nginx"),
    ] {
        let request = get_from("127.0.0.1:5000", &[("host", "127.0.0.1:3000"), forwarding]);
        assert_refused(send(&on, request).await, "https_required").await;
    }
    // A loopback peer asking for a public host is a local proxy forwarding the internet.
    let response = send(
        &on,
        get_from("127.0.0.1:5000", &[("host", "api.example.com")]),
    )
    .await;
    assert_refused(response, "https_required").await;
    // Not from elsewhere, and not from a trusted proxy (its proto header decides).
    let response = send(&on, get_from(CLIENT, &[("host", "localhost")])).await;
    assert_refused(response, "https_required").await;
    let response = send(&on, get_from("127.0.0.2:5000", &[("host", "localhost")])).await;
    assert_refused(response, "https_required").await;
    let proxied = get_from(
        "127.0.0.2:5000",
        &[("host", "localhost"), ("x-forwarded-proto", "https")],
    );
    assert_served_over_https(&send(&on, proxied).await);
}

#[tokio::test]
async fn api_headers_by_default() {
    let app = app(TransportSecurityLayer::new());
    let response = send(&app, tls(get_from(CLIENT, &[]))).await;
    assert_served_over_https(&response);
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(headers["referrer-policy"], "no-referrer");
    // No credentials, nothing private to keep out of caches.
    assert!(!headers.contains_key("cache-control"));
    assert!(!headers.contains_key("server"));

    for credential in [
        ("authorization", "Bearer x"),
        ("cookie", "session=1"),
        ("x-api-key", "pcl_x"),
    ] {
        let response = send(&app, tls(get_from(CLIENT, &[credential]))).await;
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    // An Identity put in by a layer outside this one counts too.
    let mut request = tls(get_from(CLIENT, &[]));
    request
        .extensions_mut()
        .insert(Identity::builder("alice", AuthMethod::ApiKey).build());
    let response = send(&app, request).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn handler_values_and_site_wide_headers() {
    let app = app(TransportSecurityLayer::new());
    let request = tls(request(
        Method::GET,
        "/custom",
        CLIENT,
        &[("authorization", "Bearer x")],
    ));
    let response = send(&app, request).await;
    let headers = response.headers();
    // Per-response headers: the handler knows better.
    assert_eq!(headers["content-security-policy"], "default-src 'self'");
    assert_eq!(headers["cache-control"], "private, max-age=60");
    assert_eq!(headers["referrer-policy"], "same-origin");
    // Site-wide ones are the layer's, and Server goes.
    assert_eq!(headers[HSTS], "max-age=31536000; includeSubDomains");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers.get_all("x-content-type-options").iter().count(), 1);
    assert!(!headers.contains_key("server"));
}

#[tokio::test]
async fn every_header_can_be_changed_or_switched_off() {
    let changed = app(TransportSecurityLayer::builder()
        .hsts(Hsts::max_age(Duration::from_secs(600)).include_subdomains(false))
        .content_security_policy("default-src 'none'; sandbox")
        .referrer_policy("strict-origin-when-cross-origin")
        .cache_control("no-store, max-age=0")
        .credential_header("x-session".parse().unwrap())
        .build()
        .unwrap());
    let response = send(&changed, tls(get_from(CLIENT, &[("x-session", "1")]))).await;
    let headers = response.headers();
    assert_eq!(headers[HSTS], "max-age=600");
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; sandbox"
    );
    assert_eq!(
        headers["referrer-policy"],
        "strict-origin-when-cross-origin"
    );
    assert_eq!(headers["cache-control"], "no-store, max-age=0");

    let preload = app(TransportSecurityLayer::builder()
        .hsts(Hsts::default().preload())
        .build()
        .unwrap());
    let response = send(&preload, tls(get_from(CLIENT, &[]))).await;
    assert_eq!(
        response.headers()[HSTS],
        "max-age=31536000; includeSubDomains; preload"
    );

    let off = app(TransportSecurityLayer::builder()
        .without_hsts()
        .without_nosniff()
        .without_content_security_policy()
        .without_referrer_policy()
        .without_cache_control()
        .allow_server_header()
        .build()
        .unwrap());
    let request = tls(get_from(CLIENT, &[("authorization", "Bearer x")]));
    let response = send(&off, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    for name in [
        HSTS,
        "x-content-type-options",
        "content-security-policy",
        "referrer-policy",
        "cache-control",
    ] {
        assert!(!response.headers().contains_key(name), "{name}");
    }
    let response = send(&off, tls(request_custom())).await;
    assert_eq!(response.headers()["server"], "nginx/1.2.3");
    // Without HSTS of its own, the layer leaves a handler's HSTS alone over HTTPS.
    assert_eq!(response.headers()[HSTS], "max-age=1");
}

fn request_custom() -> Request<Body> {
    request(Method::GET, "/custom", CLIENT, &[])
}

#[tokio::test]
async fn server_headers_are_stripped() {
    let app = app(TransportSecurityLayer::new());
    let response = send(&app, tls(request_custom())).await;
    assert!(!response.headers().contains_key("server"));
    // From plain HTTP answers too (the handler is not reached, but inner layers may add one).
    let response = send(&app, request_custom()).await;
    assert!(!response.headers().contains_key("server"));
}

#[tokio::test]
async fn inner_rejections_get_the_headers_too() {
    let keys = InMemoryKeyStore::new();
    let key = ApiKey::generate("pcl_test").unwrap();
    keys.insert_hash(key.hash(), ApiKeyGrant::new("k1", "alice"));
    let app = Router::new()
        .route(
            "/me",
            get(|identity: Identity| async move { identity.subject().to_owned() }),
        )
        .route_layer(AuthLayer::required().with(ApiKeyAuthenticator::new(keys)))
        .layer(ValidateLayer::new())
        .layer(TransportSecurityLayer::new());

    let check = |response: &Response, status: StatusCode| {
        assert_eq!(response.status(), status);
        let headers = response.headers();
        assert_eq!(headers[HSTS], "max-age=31536000; includeSubDomains");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(
            headers["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
        assert_eq!(headers["referrer-policy"], "no-referrer");
    };
    // 401 from the AuthLayer, for a request with a (wrong) credential: not cacheable either.
    let wrong = tls(request(
        Method::GET,
        "/me",
        CLIENT,
        &[("x-api-key", "pcl_test_wrong-wrong-wrong-wrong-wrong-wrong")],
    ));
    let response = send(&app, wrong).await;
    check(&response, StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["cache-control"], "no-store");
    // 405 from the ValidateLayer.
    let trace = tls(request(Method::TRACE, "/me", CLIENT, &[]));
    check(&send(&app, trace).await, StatusCode::METHOD_NOT_ALLOWED);
    // 404 from the router.
    let missing = tls(request(Method::GET, "/nowhere", CLIENT, &[]));
    check(&send(&app, missing).await, StatusCode::NOT_FOUND);
    // And the 2xx.
    let me = tls(request(
        Method::GET,
        "/me",
        CLIENT,
        &[("x-api-key", key.expose())],
    ));
    let response = send(&app, me).await;
    check(&response, StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
}

#[tokio::test]
async fn inner_errors_pass_through() {
    // The layer is transparent to an inner service's errors.
    let service = tower::service_fn(|_: Request<Body>| async {
        Err::<Response, _>(std::io::Error::other("inner"))
    });
    let service = tower::Layer::layer(&TransportSecurityLayer::new(), service);
    let error = service
        .oneshot(tls(get_from(CLIENT, &[])))
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "inner");
}

// ----- end to end: the TLS example's server, a rustls client -----

mod end_to_end {
    use super::*;
    use http_body_util::Empty;
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConfig, ProtocolVersion, RootCertStore};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    struct Server {
        addr: SocketAddr,
        roots: RootCertStore,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start() -> Server {
        let (cert, key, _pem) = tls_example::dev_certificate().unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(cert.clone()).unwrap();
        let config = Arc::new(tls_example::server_config(vec![cert], key).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(tls_example::serve(
            listener,
            TlsAcceptor::from(config),
            tls_example::app(InMemoryKeyStore::new()),
        ));
        Server { addr, roots, task }
    }

    fn client(
        roots: RootCertStore,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> TlsConnector {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(config))
    }

    async fn get(
        connector: &TlsConnector,
        addr: SocketAddr,
        name: &'static str,
    ) -> (Option<ProtocolVersion>, Response<hyper::body::Incoming>) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = connector
            .connect(ServerName::try_from(name).unwrap(), tcp)
            .await
            .unwrap();
        let version = tls.get_ref().1.protocol_version();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::get("/health")
            .header("host", name)
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        (version, sender.send_request(request).await.unwrap())
    }

    type Response<B> = http::Response<B>;

    #[tokio::test]
    async fn the_tls_example_serves_tls13_with_hsts() {
        let server = start().await;
        let tls13 = client(server.roots.clone(), &[&rustls::version::TLS13]);
        let (version, response) = get(&tls13, server.addr, "localhost").await;
        assert_eq!(version, Some(ProtocolVersion::TLSv1_3));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[HSTS],
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");

        // A client offering both gets 1.3; one offering 1.2 only still connects.
        let both = client(
            server.roots.clone(),
            &[&rustls::version::TLS12, &rustls::version::TLS13],
        );
        let (version, _) = get(&both, server.addr, "127.0.0.1").await;
        assert_eq!(version, Some(ProtocolVersion::TLSv1_3));
        let tls12 = client(server.roots.clone(), &[&rustls::version::TLS12]);
        let (version, response) = get(&tls12, server.addr, "localhost").await;
        assert_eq!(version, Some(ProtocolVersion::TLSv1_2));
        assert_eq!(response.status(), StatusCode::OK);
        server.task.abort();
    }

    #[test]
    fn only_aead_suites_with_forward_secrecy() {
        let (cert, key, _pem) = tls_example::dev_certificate().unwrap();
        let config = tls_example::server_config(vec![cert], key).unwrap();
        let suites = &config.crypto_provider().cipher_suites;
        assert!(!suites.is_empty());
        for suite in suites {
            let name = format!("{:?}", suite.suite());
            assert!(
                name.contains("_GCM_") || name.contains("CHACHA20_POLY1305"),
                "{name}"
            );
            assert!(
                name.starts_with("TLS13_") || name.starts_with("TLS_ECDHE_"),
                "{name}"
            );
        }
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }

    #[tokio::test]
    async fn plain_http_to_the_tls_port_gets_no_http_answer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let server = start().await;
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
        assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
        server.task.abort();
    }
}
