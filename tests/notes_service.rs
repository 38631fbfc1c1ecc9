//! A small team notes API wired the way a new user wires it, from the public API only: JWT and
//! one CI API key, scopes, an admin-only delete, validated JSON, a per-IP limit and a lockout,
//! `author_email` hidden from everyone but admins and its author, the audit trail in a file,
//! HTTPS behind one trusted proxy, and a health probe over plain HTTP. Each test shows that one
//! trap a user hit (issue 19) is gone.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path};
use axum::{Json, Router};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use portcullis::audit::{AuditKey, AuditLayer, JsonLinesFile};
use portcullis::auth::{ApiKeyAuthenticator, ApiKeyGrant, InMemoryKeyStore};
use portcullis::rbac::{any_role, public, require_scope};
use portcullis::redact::Email;
use portcullis::test_util::TestIssuer;
use portcullis::validate::WithProblem;
use portcullis::{
    AuthLayer, Identity, KeyBy, LockoutLayer, PolicyRouter, Portcullis, Quota, RateLimitLayer,
    RbacLayer, RedactLayer, Rule, TransportSecurityLayer, TrustedProxies, Valid, ValidateLayer,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;
use validator::Validate;

const PROXY: [u8; 4] = [10, 0, 0, 2];
const CI_KEY: &str = "pcl_ci_key_for_the_notes_service_0123456789";

#[derive(Deserialize, Validate)]
struct NewNote {
    #[validate(length(min = 1, max = 200))]
    title: String,
    #[validate(length(max = 10_000))]
    body: String,
}

async fn list() -> Json<Value> {
    Json(json!([{
        "id": 1,
        "title": "release",
        "body": "ping carol@team.example about the release",
        "author_email": "bob@team.example",
    }]))
}

async fn create(identity: Identity, Valid(Json(note)): Valid<Json<NewNote>>) -> Json<Value> {
    Json(json!({ "id": 2, "title": note.title, "author": identity.subject() }))
}

async fn delete(WithProblem(Path(id)): WithProblem<Path<u64>>) -> String {
    format!("deleted {id}")
}

struct Service {
    app: Router,
    issuer: TestIssuer,
    audit_path: std::path::PathBuf,
    audit_key: AuditKey,
    audit: portcullis::audit::AuditHandle,
}

fn service(name: &str) -> Service {
    let issuer = TestIssuer::new();
    let keys = InMemoryKeyStore::new();
    keys.insert(
        CI_KEY,
        ApiKeyGrant::new("ci", "ci-bot").scopes(["notes:read"]),
    )
    .unwrap();
    let (router, table) = PolicyRouter::new()
        .get("/health", || async { "ok" }, public())
        .get("/notes", list, require_scope("notes:read"))
        .post("/notes", create, require_scope("notes:write"))
        .delete(
            "/notes/{id}",
            delete,
            require_scope("notes:write").and(any_role(["admin"])),
        )
        .build()
        .unwrap();
    let audit_path = std::env::temp_dir().join(format!(
        "portcullis-notes-{name}-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&audit_path);
    let audit_key = AuditKey::new(b"the notes service audit key, 32+ bytes").unwrap();
    let audit = AuditLayer::builder(audit_key.clone())
        .sink(JsonLinesFile::builder(&audit_path).open().unwrap())
        .build()
        .unwrap();
    let handle = audit.handle();
    let security = Portcullis::builder()
        .audit(audit)
        .client_ip(TrustedProxies::new(["10.0.0.0/8"]).unwrap())
        .transport(
            TransportSecurityLayer::builder()
                .allow_http_on_paths(["/health"])
                .build()
                .unwrap(),
        )
        .rate_limit_per_ip(
            RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_second(50))
                .build()
                .unwrap(),
        )
        .lockout(
            LockoutLayer::builder()
                .max_failures(3)
                .lockout(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .validate(ValidateLayer::new())
        .auth(
            AuthLayer::optional()
                .with(issuer.authenticator().unwrap())
                .with(ApiKeyAuthenticator::new(keys)),
        )
        .rbac(RbacLayer::table(table))
        .redact(
            RedactLayer::new()
                .rule(
                    Rule::field("author_email")
                        .except_roles(["admin"])
                        .visible_to_owner("email"),
                )
                .rule(Rule::detector(Email).except_fields(["body"])),
        )
        .build()
        .unwrap();
    Service {
        app: router.layer(security),
        issuer,
        audit_path,
        audit_key,
        audit: handle,
    }
}

/// A request through the proxy, for `client`, over HTTPS unless `proto` says otherwise.
fn via_proxy(method: Method, uri: &str, client: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("x-forwarded-for", client);
    if !headers.iter().any(|(name, _)| *name == "x-forwarded-proto") {
        builder = builder.header("x-forwarded-proto", "https");
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = headers
        .iter()
        .find(|(name, _)| *name == "x-test-body")
        .map_or(Body::empty(), |(_, body)| Body::from(body.to_string()));
    let mut request = builder.body(body).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((PROXY, 4000))));
    request
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, headers, body)
}

#[tokio::test]
async fn the_notes_service_behaves_as_its_author_meant() {
    let Service {
        app,
        issuer,
        audit_path,
        audit_key,
        audit,
    } = service("main");
    let bearer = |token: http::HeaderValue| token.to_str().unwrap().to_owned();
    let reader = bearer(issuer.token("alice").scopes(["notes:read"]).bearer());
    let author = bearer(
        issuer
            .token("bob")
            .scopes(["notes:read", "notes:write"])
            .claim("email", json!("bob@team.example"))
            .bearer(),
    );
    let admin = bearer(
        issuer
            .token("root")
            .scopes(["notes:read", "notes:write"])
            .roles(["admin"])
            .bearer(),
    );
    let client = "203.0.113.5";

    // A health probe over plain HTTP through the proxy (no proto header) is answered.
    let probe = via_proxy(
        Method::GET,
        "/health",
        client,
        &[("x-forwarded-proto", "http")],
    );
    assert_eq!(send(&app, probe).await.0, StatusCode::OK);
    // Every other plain request is refused, and the body says why.
    let plain = via_proxy(
        Method::GET,
        "/notes",
        client,
        &[("x-forwarded-proto", "http")],
    );
    let (status, _, body) = send(&app, plain).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (StatusCode::FORBIDDEN, Some("https_required"))
    );

    // The trusted proxy's proto header is believed (the proxies were given once).
    let listed = via_proxy(Method::GET, "/notes", client, &[("authorization", &reader)]);
    let (status, headers, body) = send(&app, listed).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"per-ip\""),
        "the limit's name says what it counts"
    );
    // Free text keeps the addresses its author wrote; the author's address is hidden.
    assert_eq!(body[0]["body"], "ping carol@team.example about the release");
    assert_eq!(body[0]["author_email"], "[REDACTED]");
    // The author sees their own address, and so does an admin.
    for token in [&author, &admin] {
        let listed = via_proxy(Method::GET, "/notes", client, &[("authorization", token)]);
        assert_eq!(
            send(&app, listed).await.2[0]["author_email"],
            "bob@team.example"
        );
    }
    // The CI key reads.
    let ci = via_proxy(Method::GET, "/notes", client, &[("x-api-key", CI_KEY)]);
    assert_eq!(send(&app, ci).await.0, StatusCode::OK);

    // Everything wrong with a body, in one 422 list.
    let bad = via_proxy(
        Method::POST,
        "/notes",
        client,
        &[
            ("authorization", &author),
            ("content-type", "application/json"),
            ("x-test-body", r#"{"body":"x","pinned":true}"#),
        ],
    );
    let (status, _, body) = send(&app, bad).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["/pinned", "/title"]);
    let good = via_proxy(
        Method::POST,
        "/notes",
        client,
        &[
            ("authorization", &author),
            ("content-type", "application/json"),
            ("x-test-body", r#"{"title":"t","body":"b"}"#),
        ],
    );
    assert_eq!(send(&app, good).await.2["author"], "bob");

    // Only admins delete; a malformed id is problem+json, not axum's text.
    let delete = |token: &str, id: &str| {
        via_proxy(
            Method::DELETE,
            &format!("/notes/{id}"),
            client,
            &[("authorization", token)],
        )
    };
    assert_eq!(
        send(&app, delete(&author, "1")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(send(&app, delete(&admin, "1")).await.2, "deleted 1");
    let (status, headers, body) = send(&app, delete(&admin, "one")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["reason"], "malformed_input");

    // Guessing tokens locks the address out; the 429 carries only the lockout's timing.
    let guesser = "198.51.100.9";
    for _ in 0..3 {
        let guess = via_proxy(
            Method::GET,
            "/notes",
            guesser,
            &[("authorization", "Bearer not.a.token")],
        );
        assert_eq!(send(&app, guess).await.0, StatusCode::UNAUTHORIZED);
    }
    let locked = via_proxy(
        Method::GET,
        "/notes",
        guesser,
        &[("authorization", &reader)],
    );
    let (status, headers, _) = send(&app, locked).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "60");
    assert!(!headers.contains_key("ratelimit"));
    // Other clients behind the same proxy are not affected.
    let other = via_proxy(Method::GET, "/notes", client, &[("authorization", &reader)]);
    assert_eq!(send(&app, other).await.0, StatusCode::OK);

    // The audit trail in its file verifies.
    audit.shutdown().await;
    let summary = portcullis::audit::verify_files(&audit_key, &[&audit_path]).unwrap();
    assert!(summary.records >= 14, "{summary:?}");
    let _ = std::fs::remove_file(&audit_path);
}

/// The combinations that built cleanly and failed at run time are build errors now.
#[test]
fn the_traps_that_built_cleanly_are_build_errors() {
    let issuer = TestIssuer::new();
    let (_, table) = PolicyRouter::<()>::new()
        .get("/health", || async { "ok" }, public())
        .get("/notes", || async { "[]" }, require_scope("notes:read"))
        .build()
        .unwrap();
    // Required authentication would answer 401 on the public health route.
    let required = Portcullis::builder()
        .auth(AuthLayer::required().with(issuer.authenticator().unwrap()))
        .rbac(RbacLayer::table(table))
        .build();
    assert!(required.is_err());
    // Two different lists of trusted proxies.
    let two_lists = Portcullis::builder()
        .client_ip(TrustedProxies::new(["10.0.0.0/8"]).unwrap())
        .transport(
            TransportSecurityLayer::builder()
                .trusted_proxies(TrustedProxies::new(["192.0.2.0/24"]).unwrap())
                .build()
                .unwrap(),
        )
        .build();
    assert!(two_lists.is_err());
    // A route declared twice.
    let twice = PolicyRouter::<()>::new()
        .get("/notes", || async { "[]" }, public())
        .get("/notes", || async { "[]" }, public())
        .build();
    assert!(twice.is_err());
}
