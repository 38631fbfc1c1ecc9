//! `Portcullis::builder()`: the layers in the recommended order, and configuration mistakes
//! refused at build time.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use common::*;
use http::{Method, Request};
use http_body_util::BodyExt;
use portcullis::audit::{AlertRules, AuditHandle, AuditKey, AuditLayer, RecentEvents};
use portcullis::client_ip::{ClientIpLayer, ProxyHeader, TrustedProxies};
use portcullis::rate_limit::{KeyBy, LockoutLayer, Quota, RateLimitLayer};
use portcullis::rbac::{RbacLayer, RouteTable, public, require_scope};
use portcullis::redact::{Email, Rule};
use portcullis::transport::TransportSecurityLayer;
use portcullis::{AuthLayer, Portcullis, RedactLayer, ValidateLayer};
use serde_json::{Value, json};
use tower::ServiceExt;

fn auth() -> AuthLayer {
    AuthLayer::optional().with(hs256_jwt())
}

fn table() -> RbacLayer {
    RbacLayer::table(
        RouteTable::builder()
            .route(Method::GET, "/items", require_scope("read:items"))
            .build()
            .unwrap(),
    )
}

fn limit(key: KeyBy, burst: u32) -> RateLimitLayer {
    RateLimitLayer::builder(key, Quota::per_second(1).burst(burst))
        .build()
        .unwrap()
}

#[test]
fn mistakes_are_refused_at_build_time() {
    let cases = [
        ("rbac without auth", Portcullis::builder().rbac(table())),
        (
            "lockout without auth",
            Portcullis::builder().lockout(LockoutLayer::builder().build().unwrap()),
        ),
        (
            "per-subject limit without auth",
            Portcullis::builder().rate_limit_per_subject(limit(KeyBy::Subject, 5)),
        ),
        (
            "per-ip limit keyed by subject",
            Portcullis::builder()
                .auth(auth())
                .rate_limit_per_ip(limit(KeyBy::Subject, 5)),
        ),
        (
            "per-subject limit keyed by ip",
            Portcullis::builder()
                .auth(auth())
                .rate_limit_per_subject(limit(KeyBy::ClientIp, 5)),
        ),
        (
            "per-ip limit keyed by a header",
            Portcullis::builder().rate_limit_per_ip(limit(
                KeyBy::Header(http::HeaderName::from_static("x-tenant")),
                5,
            )),
        ),
        (
            "transport and client_ip trusting different proxies",
            Portcullis::builder()
                .client_ip(proxies(&["10.0.0.0/8"]))
                .transport(
                    TransportSecurityLayer::builder()
                        .trusted_proxies(proxies(&["192.0.2.0/24"]))
                        .build()
                        .unwrap(),
                ),
        ),
        (
            "transport trusting proxies, client_ip trusting none",
            Portcullis::builder()
                .client_ip(TrustedProxies::none())
                .transport(
                    TransportSecurityLayer::builder()
                        .trusted_proxies(proxies(&["10.0.0.0/8"]))
                        .build()
                        .unwrap(),
                ),
        ),
        (
            "required authentication in front of public rows",
            Portcullis::builder()
                .auth(AuthLayer::required().with(hs256_jwt()))
                .rbac(RbacLayer::table(
                    RouteTable::builder()
                        .route(Method::GET, "/health", public())
                        .route(Method::GET, "/items", require_scope("read:items"))
                        .build()
                        .unwrap(),
                )),
        ),
        ("nothing", Portcullis::builder()),
    ];
    for (what, builder) in cases {
        assert!(builder.build().is_err(), "{what} was accepted");
    }
    // The same networks in another order, each layer reading its own header: accepted. So is a
    // client-IP layer behind proxies with a transport layer that sees TLS itself (re-encrypting
    // proxies), and a transport layer behind proxies with nothing that keys by address.
    let accepted = [
        Portcullis::builder()
            .client_ip(proxies(&["10.0.0.0/8", "192.0.2.7"]))
            .transport(
                TransportSecurityLayer::builder()
                    .trusted_proxies(
                        proxies(&["192.0.2.7", "10.0.0.0/8"]).header(ProxyHeader::Forwarded),
                    )
                    .build()
                    .unwrap(),
            )
            .rate_limit_per_ip(limit(KeyBy::ClientIp, 5)),
        Portcullis::builder()
            .client_ip(proxies(&["10.0.0.0/8"]))
            .transport(TransportSecurityLayer::new()),
        // A network written with host bits set is the same network.
        Portcullis::builder()
            .client_ip(proxies(&["10.0.0.1/8"]))
            .transport(
                TransportSecurityLayer::builder()
                    .trusted_proxies(proxies(&["10.0.0.0/8"]))
                    .build()
                    .unwrap(),
            ),
        Portcullis::builder().transport(
            TransportSecurityLayer::builder()
                .trusted_proxies(proxies(&["10.0.0.0/8"]))
                .build()
                .unwrap(),
        ),
        // Proxies given to the transport layer only: every layer believes them.
        Portcullis::builder()
            .transport(
                TransportSecurityLayer::builder()
                    .trusted_proxies(proxies(&["10.0.0.0/8"]))
                    .build()
                    .unwrap(),
            )
            .auth(auth())
            .rate_limit_per_subject(limit(KeyBy::Subject, 5)),
        // Required authentication with a table that has no public row.
        Portcullis::builder()
            .auth(AuthLayer::required().with(hs256_jwt()))
            .rbac(table()),
    ];
    for (i, builder) in accepted.into_iter().enumerate() {
        if let Err(error) = builder.build() {
            panic!("accepted case {i} was refused: {error}");
        }
    }
    let stack = Portcullis::builder()
        .auth(auth())
        .rbac(table())
        .build()
        .unwrap();
    assert_eq!(
        format!("{stack:?}"),
        r#"Portcullis { layers: ["auth", "rbac"] }"#
    );
}

fn proxies(networks: &[&str]) -> TrustedProxies {
    TrustedProxies::new(networks).unwrap()
}

/// An audit layer recording into `recent`, without alerts.
fn audit_to(recent: &RecentEvents) -> AuditLayer {
    AuditLayer::builder(AuditKey::new(b"the audit key for tests, 32+ bytes long").unwrap())
        .sink(recent.clone())
        .alerts(AlertRules::none())
        .build()
        .unwrap()
}

fn app(recent: &RecentEvents) -> (Router, AuditHandle) {
    let audit = audit_to(recent);
    let handle = audit.handle();
    let security = Portcullis::builder()
        .audit(audit)
        .client_ip(TrustedProxies::new(["10.0.0.0/8"]).unwrap())
        .rate_limit_per_ip(limit(KeyBy::ClientIp, 4))
        .lockout(LockoutLayer::builder().build().unwrap())
        .validate(
            ValidateLayer::builder()
                .deny_body_on([Method::GET])
                .build()
                .unwrap(),
        )
        .auth(auth())
        .rate_limit_per_subject(limit(KeyBy::Subject, 2))
        .rbac(table())
        .redact(RedactLayer::new().rule(Rule::detector(Email).except_roles(["admin"])))
        .build()
        .unwrap();
    let router = Router::new()
        .route(
            "/items",
            get(|| async { axum::Json(json!({ "owner": "keeper@castle.example" })) }),
        )
        .layer(security);
    (router, handle)
}

fn items(ip: [u8; 4], token: Option<&str>, body: &'static str) -> Request<Body> {
    let mut builder = Request::get("/items");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let mut request = builder.body(Body::from(body)).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 5000))));
    request
}

async fn send(app: &Router, request: Request<Body>) -> (u16, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn layers_run_in_the_recommended_order() {
    let recent = RecentEvents::new(100);
    let (app, handle) = app(&recent);
    let reader = Signer::hs256().sign(&claims("reader", "read:items"));
    let mut admin_claims = claims("admin", "read:items");
    admin_claims["roles"] = json!(["admin"]);
    let admin = Signer::hs256().sign(&admin_claims);
    let forged = Signer::es256_foreign().sign(&claims("mallory", "read:items"));

    // Validation before authentication: a GET with a body and a forged token is a 400.
    assert_eq!(
        send(&app, items([192, 0, 2, 1], Some(&forged), "x"))
            .await
            .0,
        400
    );
    // Redaction inside authentication: the role rule sees the caller.
    let (status, body) = send(&app, items([192, 0, 2, 2], Some(&reader), "")).await;
    assert_eq!((status, body["owner"].as_str()), (200, Some("[REDACTED]")));
    let (status, body) = send(&app, items([192, 0, 2, 3], Some(&admin), "")).await;
    assert_eq!(
        (status, body["owner"].as_str()),
        (200, Some("keeper@castle.example"))
    );
    // The per-subject limit (burst 2) counts the subject, across addresses.
    assert_eq!(
        send(&app, items([192, 0, 2, 4], Some(&reader), "")).await.0,
        200
    );
    assert_eq!(
        send(&app, items([192, 0, 2, 5], Some(&reader), "")).await.0,
        429
    );
    // The per-IP limit (burst 4) runs before authentication: forged tokens from one address
    // are throttled (or locked out) without reaching the verifier after the budget is spent.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            send(&app, items([198, 51, 100, 1], Some(&forged), ""))
                .await
                .0,
        );
    }
    assert_eq!(&statuses[..4], [401, 401, 401, 401], "{statuses:?}");
    assert_eq!(&statuses[4..], [429, 429], "{statuses:?}");

    // The audit layer, outermost, saw every request and who refused it.
    handle.flush().await;
    let layers: Vec<String> = request_events(&recent)
        .into_iter()
        .map(|e| e.layer.unwrap_or_default().into_owned())
        .collect();
    assert_eq!(
        layers,
        [
            "validate",
            "rbac",
            "rbac",
            "rbac",
            "rate_limit",
            "auth",
            "auth",
            "auth",
            "auth",
            "rate_limit",
            "rate_limit"
        ]
    );
}

/// Behind a proxy, a request the client abandons is recorded with the client's address, not the
/// proxy's: the builder has the audit layer resolve it, since no answer will carry it back up.
#[tokio::test]
async fn an_abandoned_request_is_recorded_with_the_client_address_behind_a_proxy() {
    let recent = RecentEvents::new(10);
    let audit = audit_to(&recent);
    let handle = audit.handle();
    let security = Portcullis::builder()
        .audit(audit)
        .client_ip(proxies(&["10.0.0.0/8"]))
        .build()
        .unwrap();
    let app = Router::new()
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                "late"
            }),
        )
        .route("/fast", get(|| async { "now" }))
        .layer(security)
        // An outer client-IP layer that trusts no proxy: the stack's own proxies still decide.
        .layer(ClientIpLayer::new(TrustedProxies::none()));
    let from_proxy = |path: &str| {
        let mut request = Request::get(path)
            .header("x-forwarded-for", "203.0.113.7")
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 5000))));
        request
    };
    let abandoned = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        app.clone().oneshot(from_proxy("/slow")),
    )
    .await;
    assert!(abandoned.is_err(), "the slow handler answered");
    assert_eq!(send(&app, from_proxy("/fast")).await.0, 200);
    handle.flush().await;
    let events = request_events(&recent);
    assert_eq!(events.len(), 2, "{events:?}");
    for event in &events {
        assert_eq!(
            event.client_ip,
            Some([203, 0, 113, 7].into()),
            "{}: {event:?}",
            event.path
        );
    }
    assert!(
        events.iter().any(|e| e.path == "/slow" && e.status == 499),
        "{events:?}"
    );
}

/// The trusted proxies are given once, to either layer that reads forwarding headers, and
/// every layer believes them: the transport layer the proxy's proto header, the per-IP limit
/// the client address behind the proxy.
#[tokio::test]
async fn trusted_proxies_given_once_are_believed_by_every_layer() {
    let given_to_client_ip = Portcullis::builder()
        .client_ip(proxies(&["10.0.0.0/8"]))
        .transport(TransportSecurityLayer::new())
        .rate_limit_per_ip(limit(KeyBy::ClientIp, 1));
    let given_to_transport = Portcullis::builder()
        .transport(
            TransportSecurityLayer::builder()
                .trusted_proxies(proxies(&["10.0.0.0/8"]))
                .build()
                .unwrap(),
        )
        .rate_limit_per_ip(limit(KeyBy::ClientIp, 1));
    for builder in [given_to_client_ip, given_to_transport] {
        let app = items_behind(builder.build().unwrap());
        let via_proxy = |client: &str, proto: &str| {
            let mut request = Request::get("/items")
                .header("x-forwarded-for", client)
                .header("x-forwarded-proto", proto)
                .body(Body::empty())
                .unwrap();
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 5000))));
            request
        };
        assert_eq!(send(&app, via_proxy("203.0.113.1", "https")).await.0, 200);
        // Counted by the client behind the proxy, not by the proxy.
        assert_eq!(send(&app, via_proxy("203.0.113.2", "https")).await.0, 200);
        assert_eq!(send(&app, via_proxy("203.0.113.1", "https")).await.0, 429);
        // The proxy says the client came over plain HTTP.
        let (status, body) = send(&app, via_proxy("203.0.113.3", "http")).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (403, Some("https_required"))
        );
    }
}

/// `GET /items` answering `[]`, behind `security`.
fn items_behind(security: Portcullis) -> Router {
    Router::new()
        .route("/items", get(|| async { "[]" }))
        .layer(security)
}

/// Authentication by an API key in a header of its own (`x-service-key`), and that key.
fn service_key_auth() -> (AuthLayer, &'static str) {
    use http::HeaderName;
    use portcullis::auth::{ApiKeyAuthenticator, ApiKeyGrant, InMemoryKeyStore};

    let store = InMemoryKeyStore::new();
    let key = "pcl_custom_header_key_0123456789abcdefghij";
    store.insert(key, ApiKeyGrant::new("k", "svc")).unwrap();
    let auth = AuthLayer::required()
        .with(ApiKeyAuthenticator::new(store).header(HeaderName::from_static("x-service-key")));
    (auth, key)
}

/// `GET /items` with `key` in `x-service-key`, from `client`.
fn with_service_key(key: &str, client: [u8; 4]) -> Request<Body> {
    let mut request = Request::get("/items")
        .header("x-service-key", key)
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((client, 5000))));
    request
}

/// The builder tells the lockout where its authenticators read credentials: guesses in a custom
/// API key header lock the address out like guessed tokens do.
#[tokio::test]
async fn the_lockout_watches_the_authenticators_own_headers() {
    let (auth, key) = service_key_auth();
    let security = Portcullis::builder()
        .lockout(LockoutLayer::builder().max_failures(3).build().unwrap())
        .auth(auth)
        .build()
        .unwrap();
    let app = items_behind(security);
    let with_key = |key: &str| with_service_key(key, [192, 0, 2, 91]);
    for _ in 0..3 {
        let (status, _) = send(&app, with_key("pcl_wrong_key_0123456789abcdefghijklmnop")).await;
        assert_eq!(status, 401);
    }
    let (status, body) = send(&app, with_key(key)).await;
    assert_eq!(status, 429, "{body}");
}

/// The builder tells the transport layer where the authenticators read credentials too: an
/// answer to a request that carried a key in a custom header is credentialed, so it gets
/// `Cache-Control: no-store` like one to a bearer token.
#[tokio::test]
async fn the_transport_layer_treats_the_authenticators_own_headers_as_credentials() {
    use portcullis::transport::TlsConnection;

    let (auth, key) = service_key_auth();
    let security = Portcullis::builder()
        .transport(TransportSecurityLayer::new())
        .auth(auth)
        .build()
        .unwrap();
    let app = items_behind(security);
    let mut request = with_service_key(key, [192, 0, 2, 92]);
    request.extensions_mut().insert(TlsConnection::new());
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
}

portcullis::scope!(AdminScope = "admin");

/// Claims the test tokens do not carry.
#[derive(serde::Deserialize)]
struct Tenant {
    #[allow(dead_code)]
    tenant: String,
}

#[derive(serde::Deserialize, validator::Validate)]
struct Note {
    #[validate(length(min = 1))]
    #[allow(dead_code)]
    text: String,
}

/// Issue #16: a refusal made after the RBAC layer let the request through (the redaction
/// layer withholding a response, an extractor guard in the handler) was recorded under the
/// RBAC layer's allow, or as the handler's. Each is recorded under the layer that made it.
#[tokio::test]
async fn refusals_after_an_allow_are_recorded_under_the_layer_that_made_them() {
    use axum::response::IntoResponse;
    use axum::routing::post;
    use portcullis::audit::Outcome;
    use portcullis::rbac::{RequireScope, authenticated};

    let recent = RecentEvents::new(100);
    let audit = audit_to(&recent);
    let handle = audit.handle();
    let mut routes = RouteTable::builder();
    for path in ["/items", "/invalid", "/gzipped", "/guarded", "/tenant"] {
        routes = routes.route(Method::GET, path, authenticated());
    }
    let routes = routes
        .route(Method::POST, "/notes", authenticated())
        .build()
        .unwrap();
    let security = Portcullis::builder()
        .audit(audit)
        .validate(
            ValidateLayer::builder()
                .deny_body_on([Method::GET])
                .build()
                .unwrap(),
        )
        .auth(auth())
        .rbac(RbacLayer::table(routes))
        .redact(RedactLayer::new())
        .build()
        .unwrap();
    let json = || [(http::header::CONTENT_TYPE, "application/json")];
    let app = Router::new()
        .route(
            "/items",
            get(|| async { axum::Json(json!({ "items": [] })) }),
        )
        .route(
            "/invalid",
            get(move || async move { (json(), r#"{"card":"4111111111111111""#).into_response() }),
        )
        .route(
            "/gzipped",
            get(move || async move {
                let encoding = [(http::header::CONTENT_ENCODING, "gzip")];
                (json(), encoding, "{}").into_response()
            }),
        )
        .route(
            "/guarded",
            get(|_: RequireScope<AdminScope>| async { "ok" }),
        )
        .route(
            "/tenant",
            get(|_: portcullis::Claims<Tenant>| async { "ok" }),
        )
        .route(
            "/notes",
            post(
                |portcullis::Valid(axum::Json(_)): portcullis::Valid<axum::Json<Note>>| async {
                    "stored"
                },
            ),
        )
        .layer(security);
    let reader = Signer::hs256().sign(&claims("reader", "read:items"));
    let call = |method: Method, path: &str, body: &'static str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {reader}"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    for (request, status) in [
        (call(Method::GET, "/items", ""), 200),
        (call(Method::GET, "/invalid", ""), 406),
        (call(Method::GET, "/gzipped", ""), 406),
        (call(Method::GET, "/guarded", ""), 403),
        (call(Method::GET, "/tenant", ""), 403),
        (call(Method::POST, "/notes", r#"{"text":""}"#), 422),
        (call(Method::POST, "/notes", "{"), 400),
    ] {
        assert_eq!(send(&app, request).await.0, status);
    }
    handle.flush().await;
    let recorded: Vec<(Outcome, String, String)> = request_events(&recent)
        .into_iter()
        .map(|e| {
            (
                e.outcome,
                e.layer.unwrap_or_default().into_owned(),
                e.reason.unwrap_or_default().into_owned(),
            )
        })
        .collect();
    let row = |outcome, layer: &str, reason: &str| (outcome, layer.to_owned(), reason.to_owned());
    assert_eq!(
        recorded,
        [
            row(Outcome::Allowed, "rbac", "policy"),
            row(Outcome::Error, "redact", "invalid_json"),
            row(Outcome::Error, "redact", "encoded_response"),
            row(Outcome::Forbidden, "rbac", "missing_scope"),
            row(Outcome::Forbidden, "auth", "claims_shape"),
            row(Outcome::Invalid, "validate", "validation_failed"),
            row(Outcome::Invalid, "validate", "malformed_input"),
        ]
    );
}
