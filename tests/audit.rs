//! AuditLayer through a real stack: one event per request, whatever the outcome; no secret in
//! any record; the hash chain catches tampering; slow sinks never slow requests; shutdown loses
//! nothing.

mod common;

use std::collections::HashMap;
use std::io::{self, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use http::{Method, Request, StatusCode};
use portcullis::audit::{
    AlertKind, AlertRules, AuditEntry, AuditEvent, AuditHandle, AuditKey, AuditLayer, AuditRecord,
    AuditSink, JsonLinesFile, Outcome, Overflow, Problem, RecentEvents, RequestId, SecurityAlert,
    Threshold, verify, verify_files, verify_replicas,
};
use portcullis::auth::JwtAuthenticator;
use portcullis::rate_limit::{KeyBy, LockoutLayer, Quota, RateLimitLayer};
use portcullis::rbac::{RbacLayer, RouteTable, authenticated, require_scope};
use portcullis::{AuthLayer, ValidateLayer};
use proptest::prelude::*;
use serde_json::json;
use tower::ServiceExt;

const KEY: &[u8] = b"the audit key for tests, 32+ bytes long";

fn key() -> AuditKey {
    AuditKey::new(KEY).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "portcullis-audit-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn token(sub: &str, scope: &str) -> String {
    Signer::hs256().sign(&claims(sub, scope))
}

/// The recommended order, as in the demo: validate → per-IP limit → lockout → auth → RBAC.
fn stack(audit: AuditLayer, burst: u32) -> Router {
    let mut jwt = JwtAuthenticator::builder();
    for key in all_keys() {
        jwt = jwt.key(key);
    }
    let jwt = jwt.issuer(ISSUER).audience([AUDIENCE]).build().unwrap();
    let table = RouteTable::builder()
        .route(Method::GET, "/items", require_scope("read:items"))
        .route(Method::GET, "/admin", require_scope("admin"))
        .route(Method::GET, "/boom", authenticated())
        .route(Method::GET, "/slow", authenticated())
        .route(Method::GET, "/id", authenticated())
        .build()
        .unwrap();
    Router::new()
        .route(
            "/items",
            get(|| async { axum::Json(json!({ "items": [] })) }),
        )
        .route("/admin", get(|| async { "admin" }))
        .route("/boom", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "late"
            }),
        )
        .route("/id", get(|id: RequestId| async move { id.to_string() }))
        .layer(RbacLayer::table(table))
        .layer(AuthLayer::optional().with(jwt))
        .layer(
            LockoutLayer::builder()
                .max_failures(3)
                .window(Duration::from_secs(60))
                .build()
                .unwrap(),
        )
        .layer(
            RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_second(1).burst(burst))
                .build()
                .unwrap(),
        )
        .layer(
            ValidateLayer::builder()
                .deny_body_on([Method::GET])
                .build()
                .unwrap(),
        )
        .layer(audit)
}

fn request(path: &str, id: &str, ip: [u8; 4], headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(path).header("x-request-id", id);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Body::empty()).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
    request
}

fn with_body(request: Request<Body>, body: &'static str) -> Request<Body> {
    let (parts, _) = request.into_parts();
    Request::from_parts(parts, Body::from(body))
}

/// An audit layer with default settings recording into a fresh `RecentEvents` of `capacity`.
fn recorded(capacity: usize) -> (RecentEvents, AuditLayer, AuditHandle) {
    let recent = RecentEvents::new(capacity);
    let audit = AuditLayer::builder(key())
        .sink(recent.clone())
        .build()
        .unwrap();
    let handle = audit.handle();
    (recent, audit, handle)
}

fn alerts(recent: &RecentEvents) -> Vec<SecurityAlert> {
    recent
        .records()
        .into_iter()
        .filter_map(|r| match r.entry() {
            AuditEntry::Alert(alert) => Some(alert.clone()),
            _ => None,
        })
        .collect()
}

async fn call(app: &Router, request: Request<Body>) -> http::Response<Body> {
    app.clone().oneshot(request).await.unwrap()
}

#[tokio::test]
async fn every_outcome_gives_exactly_one_event_with_the_right_fields() {
    let recent = RecentEvents::new(1000);
    let audit = AuditLayer::builder(key())
        .sink(recent.clone())
        .alerts(AlertRules::none())
        .build()
        .unwrap();
    let handle = audit.handle();
    let app = stack(audit, 2);
    let reader = format!("Bearer {}", token("alice", "read:items"));
    let bad = format!(
        "Bearer {}",
        Signer::es256_foreign().sign(&claims("mallory", "admin"))
    );

    let cases: Vec<(&str, Request<Body>, u16)> = vec![
        (
            "allowed",
            request(
                "/items",
                "t-allowed",
                [10, 0, 0, 1],
                &[("authorization", &reader)],
            ),
            200,
        ),
        (
            "bad-token",
            request(
                "/items",
                "t-bad-token",
                [10, 0, 0, 2],
                &[("authorization", &bad)],
            ),
            401,
        ),
        (
            "anonymous",
            request("/items", "t-anonymous", [10, 0, 0, 3], &[]),
            401,
        ),
        (
            "forbidden",
            request(
                "/admin",
                "t-forbidden",
                [10, 0, 0, 4],
                &[("authorization", &reader)],
            ),
            403,
        ),
        (
            "invalid",
            with_body(request("/items", "t-invalid", [10, 0, 0, 5], &[]), "hello"),
            400,
        ),
        (
            "error",
            request(
                "/boom",
                "t-error",
                [10, 0, 0, 6],
                &[("authorization", &reader)],
            ),
            500,
        ),
        (
            "limited-1",
            request(
                "/items",
                "t-limited-1",
                [10, 0, 0, 7],
                &[("authorization", &reader)],
            ),
            200,
        ),
        (
            "limited-2",
            request(
                "/items",
                "t-limited-2",
                [10, 0, 0, 7],
                &[("authorization", &reader)],
            ),
            200,
        ),
        (
            "limited-3",
            request(
                "/items",
                "t-limited-3",
                [10, 0, 0, 7],
                &[("authorization", &reader)],
            ),
            429,
        ),
    ];
    let sent = cases.len() + 1;
    for (name, request, status) in cases {
        let response = call(&app, request).await;
        assert_eq!(response.status().as_u16(), status, "{name}");
        assert_eq!(response.headers()["x-request-id"], format!("t-{name}"));
    }
    // Abandoned: the client goes away while the handler is still working.
    let slow = request(
        "/slow",
        "t-cancelled",
        [10, 0, 0, 8],
        &[("authorization", &reader)],
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(100), call(&app, slow))
            .await
            .is_err()
    );

    handle.flush().await;
    let events = request_events(&recent);
    assert_eq!(events.len(), sent, "one event per request");
    let by_id: HashMap<&str, &AuditEvent> =
        events.iter().map(|e| (e.request_id.as_str(), e)).collect();
    assert_eq!(by_id.len(), sent, "request ids are distinct");
    let check = |id: &str, outcome: Outcome, status: u16, layer: &str| {
        let event = by_id[id];
        assert_eq!(event.outcome, outcome, "{id}: {event:?}");
        assert_eq!(event.status, status, "{id}");
        assert_eq!(event.layer.as_deref(), Some(layer), "{id}: {event:?}");
        assert!(event.reason.is_some() || id == "t-error", "{id}: a reason");
        assert_eq!(event.method, "GET");
        event
    };
    let allowed = check("t-allowed", Outcome::Allowed, 200, "rbac");
    let principal = allowed.principal.as_ref().expect("the caller is recorded");
    assert_eq!(principal.subject, "alice");
    assert_eq!(principal.issuer.as_deref(), Some(ISSUER));
    assert_eq!(principal.method, "jwt");
    assert_eq!(allowed.route.as_deref(), Some("/items"));
    assert_eq!(allowed.path, "/items");
    assert_eq!(allowed.client_ip, Some([10, 0, 0, 1].into()));
    check("t-bad-token", Outcome::Unauthenticated, 401, "auth");
    assert!(by_id["t-bad-token"].principal.is_none());
    check("t-anonymous", Outcome::Unauthenticated, 401, "rbac");
    let forbidden = check("t-forbidden", Outcome::Forbidden, 403, "rbac");
    assert_eq!(forbidden.principal.as_ref().unwrap().subject, "alice");
    check("t-invalid", Outcome::Invalid, 400, "validate");
    check("t-error", Outcome::Error, 500, "handler");
    check("t-limited-2", Outcome::Allowed, 200, "rbac");
    check("t-limited-3", Outcome::RateLimited, 429, "rate_limit");
    let cancelled = by_id["t-cancelled"];
    assert_eq!(
        (cancelled.outcome, cancelled.status),
        (Outcome::Cancelled, 499)
    );
    assert_eq!(cancelled.reason.as_deref(), Some("cancelled"));
    let stats = handle.stats();
    assert_eq!((stats.accepted, stats.dropped), (sent as u64, 0));
}

/// A handler that panics is recorded as an error (500, reason `panicked`), whether the panic
/// unwinds through the whole stack or a `CatchPanicLayer` outside the audit layer stops it
/// (which drops the audit layer's future only after the panic is over).
#[tokio::test]
async fn a_panicking_handler_is_recorded_as_an_error_with_or_without_catch_panic_outside() {
    let (recent, audit, handle) = recorded(10);
    let app = Router::new()
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("a handler bug");
                }
                "unreachable"
            }),
        )
        .layer(audit);
    let caught = app
        .clone()
        .layer(tower_http::catch_panic::CatchPanicLayer::new());
    let response = call(&caught, request("/panic", "t-caught", [10, 0, 0, 1], &[])).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let unwound = tokio::spawn(call_owned(
        app,
        request("/panic", "t-unwound", [10, 0, 0, 2], &[]),
    ))
    .await;
    assert!(unwound.unwrap_err().is_panic());

    handle.flush().await;
    let events = request_events(&recent);
    assert_eq!(events.len(), 2, "one event per request: {events:?}");
    for event in &events {
        assert_eq!(
            (event.outcome, event.status, event.reason.as_deref()),
            (Outcome::Error, 500, Some("panicked")),
            "{event:?}"
        );
    }
    let mut ids: Vec<&str> = events.iter().map(|e| e.request_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["t-caught", "t-unwound"]);
}

async fn call_owned(app: Router, request: Request<Body>) -> http::Response<Body> {
    app.oneshot(request).await.unwrap()
}

#[tokio::test]
async fn the_request_id_reaches_the_handler_and_is_generated_when_unusable() {
    let recent = RecentEvents::new(10);
    let audit = AuditLayer::builder(key())
        .sink(recent.clone())
        .build()
        .unwrap();
    let app = stack(audit, 100);
    let reader = format!("Bearer {}", token("alice", "read:items"));
    let response = call(
        &app,
        request(
            "/id",
            "abc-123",
            [10, 1, 0, 1],
            &[("authorization", &reader)],
        ),
    )
    .await;
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"abc-123");

    let hostile = format!("{}\"}}{{\"outcome\":\"allowed", "x".repeat(10));
    let response = call(
        &app,
        request(
            "/id",
            &hostile,
            [10, 1, 0, 2],
            &[("authorization", &reader)],
        ),
    )
    .await;
    let echoed = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(echoed, hostile);
    assert_eq!(echoed.len(), 32);
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], echoed.as_bytes());
}

#[tokio::test]
async fn no_record_holds_a_credential_password_or_detected_secret() {
    let dir = temp_dir("secrets");
    let path = dir.join("audit.jsonl");
    let recent = RecentEvents::new(100);
    let audit = AuditLayer::builder(key())
        .sink(JsonLinesFile::builder(&path).open().unwrap())
        .sink(recent.clone())
        .alerts(
            AlertRules::default()
                .auth_failures_per_user(Some(Threshold::new(2, Duration::from_secs(60)))),
        )
        .build()
        .unwrap();
    let handle = audit.handle();
    let app = stack(audit, 100);
    let jwt = token("alice", "read:items");
    let card = "4111111111111111";
    let github = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
    let aws = "AKIAIOSFODNN7EXAMPLE";
    let password = "hunter2-Sup3rSecret";
    let user = "alice.smith@example.com";
    let basic = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    let secrets = [
        jwt.as_str(),
        card,
        github,
        aws,
        password,
        user,
        &basic[6..],
        "query-secret",
    ];

    let requests = [
        request(
            "/items",
            "s-1",
            [10, 2, 0, 1],
            &[("authorization", &format!("Bearer {jwt}"))],
        ),
        request("/items", "s-2", [10, 2, 0, 2], &[("authorization", &basic)]),
        request("/items", "s-3", [10, 2, 0, 3], &[("authorization", &basic)]),
        request(
            &format!("/items/{card}?access_token=query-secret"),
            "s-4",
            [10, 2, 0, 4],
            &[],
        ),
        request(&format!("/tokens/{jwt}"), "s-5", [10, 2, 0, 5], &[]),
        request(
            "/items",
            "s-6",
            [10, 2, 0, 6],
            &[("user-agent", &format!("curl/8 {github} {aws}"))],
        ),
    ];
    for request in requests {
        let response = call(&app, request).await;
        assert!(response.status().as_u16() < 500);
    }
    handle.shutdown().await;
    let file = std::fs::read_to_string(&path).unwrap();
    assert_eq!(file.lines().count() as u64, handle.stats().written);
    for secret in secrets {
        assert!(!file.contains(secret), "{secret} leaked into the audit log");
    }
    let events = request_events(&recent);
    let s2 = events.iter().find(|e| e.request_id == "s-2").unwrap();
    let fingerprint = s2
        .attempted_user
        .clone()
        .expect("a refused Basic login is correlated");
    assert!(fingerprint.starts_with("hmac:"));
    let s3 = events.iter().find(|e| e.request_id == "s-3").unwrap();
    assert_eq!(s3.attempted_user.as_ref(), Some(&fingerprint));
    let user_alerts: Vec<_> = alerts(&recent)
        .into_iter()
        .filter(|a| a.alert == AlertKind::AuthFailuresForUser)
        .collect();
    assert_eq!(user_alerts.len(), 1);
    assert_eq!(user_alerts[0].key, fingerprint);
    let s4 = events.iter().find(|e| e.request_id == "s-4").unwrap();
    assert!(s4.path.starts_with("/items/"), "{}", s4.path);
    assert!(!s4.path.contains('?'));
    let s6 = events.iter().find(|e| e.request_id == "s-6").unwrap();
    assert!(s6.user_agent.as_deref().unwrap().starts_with("curl/8 "));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Writes `n` sealed records to a file and returns its lines.
async fn sealed_lines(n: usize) -> Vec<String> {
    let dir = temp_dir("lines");
    let path = dir.join("audit.jsonl");
    let audit = AuditLayer::builder(key())
        .sink(JsonLinesFile::builder(&path).open().unwrap())
        .alerts(AlertRules::none())
        .build()
        .unwrap();
    let handle = audit.handle();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(audit);
    for i in 0..n {
        let request = Request::get(format!("/?n={i}"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&app, request).await.status(), 200);
    }
    handle.shutdown().await;
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
    text.lines().map(str::to_owned).collect()
}

fn check(
    lines: &[String],
) -> Result<portcullis::audit::ChainSummary, portcullis::audit::ChainBreak> {
    let mut text = lines.join("\n");
    text.push('\n');
    verify(&key(), BufReader::new(text.as_bytes()))
}

#[tokio::test]
async fn removing_inserting_reordering_or_rekeying_lines_is_detected() {
    let lines = sealed_lines(12).await;
    let summary = check(&lines).unwrap();
    assert_eq!(
        (summary.records, summary.first_seq, summary.last_seq),
        (12, 1, 12)
    );
    assert_eq!(summary.last_hash.len(), 64);

    for i in 0..11 {
        let mut removed = lines.clone();
        removed.remove(i);
        if i == 0 {
            // Without the first record the log reads as one continuing an older (rotated)
            // file: the summary says so.
            assert!(check(&removed).unwrap().starts_mid_chain());
        } else {
            let broken = check(&removed).unwrap_err();
            assert_eq!(broken.line, i as u64 + 1, "removing line {}", i + 1);
            assert!(
                matches!(broken.problem, Problem::Gap { expected, found } if found == expected + 1)
            );
        }

        let mut swapped = lines.clone();
        swapped.swap(i, i + 1);
        // Swapping the first two reads as a log starting at record 2, broken at line 2.
        let expected = if i == 0 { 2 } else { i as u64 + 1 };
        assert_eq!(check(&swapped).unwrap_err().line, expected);

        let mut duplicated = lines.clone();
        duplicated.insert(i + 1, lines[i].clone());
        assert_eq!(check(&duplicated).unwrap_err().line, i as u64 + 2);
    }
    // Cutting the tail cannot be seen in the log itself, only in the summary.
    assert_eq!(check(&lines[..11]).unwrap().last_seq, 11);
    // A line cut mid-write.
    let mut text = lines.join("\n");
    text.push_str("\n{\"seq\":13,");
    assert_eq!(
        verify(&key(), BufReader::new(text.as_bytes()))
            .unwrap_err()
            .line,
        13
    );
    // Another key: nothing verifies.
    let other = AuditKey::new(b"another audit key, also 32 bytes long").unwrap();
    let text = lines.join("\n") + "\n";
    let broken = verify(&other, BufReader::new(text.as_bytes())).unwrap_err();
    assert!(matches!(broken.problem, Problem::BadHash));
    assert_eq!(broken.line, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Changing any byte of any line is caught at that line.
    #[test]
    fn changing_any_byte_is_detected_at_its_line(line in 0usize..8, at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        static LINES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let lines = LINES.get_or_init(|| {
            tokio::runtime::Runtime::new().unwrap().block_on(sealed_lines(8))
        });
        let mut bytes = lines[line].clone().into_bytes();
        let at = at.index(bytes.len());
        prop_assume!(bytes[at] != byte);
        bytes[at] = byte;
        let mut text = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            text.extend_from_slice(if i == line { &bytes } else { l.as_bytes() });
            text.push(b'\n');
        }
        let broken = verify(&key(), BufReader::new(&text[..])).unwrap_err();
        prop_assert_eq!(broken.line, line as u64 + 1);
    }
}

#[tokio::test]
async fn the_chain_continues_across_restarts_and_rotation() {
    let dir = temp_dir("rotation");
    let path = dir.join("audit.jsonl");
    for run in 0..3 {
        let audit = AuditLayer::builder(key())
            .sink(
                JsonLinesFile::builder(&path)
                    .max_bytes(4096)
                    .keep(100)
                    .open()
                    .unwrap(),
            )
            .alerts(AlertRules::none())
            .build()
            .unwrap();
        let handle = audit.handle();
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(audit);
        for _ in 0..20 {
            call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
        }
        handle.shutdown().await;
        let files = JsonLinesFile::rotated_files(&path);
        assert!(files.len() > run + 1, "rotated: {files:?}");
        let summary = verify_files(&key(), &files).unwrap();
        assert_eq!(
            (summary.first_seq, summary.last_seq),
            (1, 20 * (run as u64 + 1))
        );
    }
    let files = JsonLinesFile::rotated_files(&path);
    for file in &files {
        assert!(std::fs::metadata(file).unwrap().len() <= 4096);
    }
    // Verifying from a middle file on: the chain is intact but starts mid-way.
    let tail = verify_files(&key(), &files[files.len() - 2..]).unwrap();
    assert!(tail.starts_mid_chain());
    // A rotated file gone missing is a gap.
    let mut gapped = files.clone();
    gapped.remove(1);
    let broken = verify_files(&key(), &gapped).unwrap_err();
    assert!(matches!(broken.problem, Problem::Gap { .. }), "{broken}");
    assert_eq!(
        broken.file.as_deref(),
        Some(&*files[2].display().to_string())
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// A sink that does not return until its sender is dropped.
struct Stuck(std::sync::mpsc::Receiver<()>);

impl AuditSink for Stuck {
    fn write(&mut self, _: &[AuditRecord]) -> io::Result<()> {
        let _ = self.0.recv();
        Ok(())
    }
}

#[tokio::test]
async fn a_sink_that_blocks_does_not_block_requests() {
    for overflow in [Overflow::Drop, Overflow::Wait(Duration::from_millis(20))] {
        let (held, gate) = std::sync::mpsc::channel();
        let audit = AuditLayer::builder(key())
            .sink(Stuck(gate))
            .queue_capacity(4)
            .overflow(overflow)
            .build()
            .unwrap();
        let handle = audit.handle();
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(audit);
        // A liveness bound, not a speed measurement: with the sink stuck, this must finish.
        let all = async {
            for _ in 0..50 {
                let response = call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
                assert_eq!(response.status(), 200);
            }
        };
        tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .expect("requests were held up");
        let stats = handle.stats();
        assert_eq!(
            stats.accepted + stats.dropped,
            50,
            "{overflow:?}: {stats:?}"
        );
        assert!(stats.dropped >= 40, "{overflow:?}: {stats:?}");
        assert!(handle.queue_depth() <= 4);
        drop(held);
        handle.shutdown().await;
        // Each record accepted, and one gap record per batch that saw drops.
        let after = handle.stats();
        assert!(after.written > after.accepted, "{after:?}");
    }
}

/// A sink that takes its time, so events are still queued when shutdown starts.
struct Slow(RecentEvents);

impl AuditSink for Slow {
    fn write(&mut self, records: &[AuditRecord]) -> io::Result<()> {
        std::thread::sleep(Duration::from_millis(5));
        self.0.write(records)
    }
}

/// A sink that holds its first write until released, then writes to `RecentEvents`.
struct Gated(std::sync::mpsc::Receiver<()>, RecentEvents);

impl AuditSink for Gated {
    fn write(&mut self, records: &[AuditRecord]) -> io::Result<()> {
        let _ = self.0.recv();
        self.1.write(records)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_every_accepted_event() {
    let recent = RecentEvents::new(10_000);
    let (release, gate) = std::sync::mpsc::channel();
    let audit = AuditLayer::builder(key())
        .sink(Gated(gate, recent.clone()))
        .queue_capacity(10_000)
        .alerts(AlertRules::none())
        .build()
        .unwrap();
    let handle: AuditHandle = audit.handle();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(audit);
    let tasks: Vec<_> = (0..2000)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                call(&app, Request::get("/").body(Body::empty()).unwrap())
                    .await
                    .status()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    // The sink holds its first batch: the rest is still queued when shutdown starts.
    assert!(handle.queue_depth() > 0);
    let shutdown = tokio::spawn({
        let handle = handle.clone();
        async move { handle.shutdown().await }
    });
    drop(release);
    shutdown.await.unwrap();
    let stats = handle.stats();
    assert_eq!((stats.accepted, stats.dropped), (2000, 0));
    assert_eq!(request_events(&recent).len(), 2000);
    // After shutdown new events are dropped and counted, not lost silently.
    call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(handle.stats().dropped, 1);
}

#[tokio::test]
async fn alerts_reach_the_sinks_and_the_callback() {
    let recent = RecentEvents::new(1000);
    let raised = Arc::new(Mutex::new(Vec::<SecurityAlert>::new()));
    let seen = raised.clone();
    let minute = Duration::from_secs(60);
    let audit = AuditLayer::builder(key())
        .sink(recent.clone())
        .alerts(
            AlertRules::default()
                .auth_failures_per_ip(Some(Threshold::new(2, minute)))
                .forbidden_per_subject(Some(Threshold::new(3, minute))),
        )
        .on_alert(move |alert| seen.lock().unwrap().push(alert.clone()))
        .build()
        .unwrap();
    let handle = audit.handle();
    let app = stack(audit, 100);
    // Expired tokens are not guesses (nor is a provider that is down): no alert, no lockout.
    let mut stale = claims("carol", "read:items");
    stale["exp"] = serde_json::json!(common::now() - 120);
    let stale = format!("Bearer {}", Signer::hs256().sign(&stale));
    for i in 0..4 {
        let id = format!("s-{i}");
        let response = call(
            &app,
            request("/items", &id, [10, 3, 2, 1], &[("authorization", &stale)]),
        )
        .await;
        assert_eq!(response.status(), 401);
    }
    let bad = format!(
        "Bearer {}",
        Signer::es256_foreign().sign(&claims("mallory", "admin"))
    );
    // Failed logins from one address: an alert at the 2nd, then the lockout (after 3) refuses.
    for i in 0..5 {
        let id = format!("a-{i}");
        call(
            &app,
            request("/items", &id, [10, 3, 0, 1], &[("authorization", &bad)]),
        )
        .await;
    }
    // An authenticated caller probing admin routes.
    let reader = format!("Bearer {}", token("bob", "read:items"));
    for i in 0..4 {
        let id = format!("f-{i}");
        let ip = [10, 3, 1, i as u8];
        let response = call(
            &app,
            request("/admin", &id, ip, &[("authorization", &reader)]),
        )
        .await;
        assert_eq!(response.status(), 403);
    }
    handle.flush().await;
    let raised = raised.lock().unwrap().clone();
    let kinds: Vec<AlertKind> = raised.iter().map(|a| a.alert).collect();
    assert_eq!(
        kinds,
        [
            AlertKind::AuthFailuresFromIp,
            AlertKind::Lockout,
            AlertKind::ForbiddenSpike
        ],
        "{raised:?}"
    );
    assert_eq!(raised[0].key, "10.3.0.1");
    assert_eq!(raised[0].request_id, "a-1");
    assert_eq!(
        raised[2].key,
        serde_json::json!(["jwt", common::ISSUER, "bob"]).to_string()
    );
    assert_eq!(raised[2].count, 3);
    let recorded: Vec<AlertKind> = alerts(&recent).iter().map(|a| a.alert).collect();
    assert_eq!(recorded, kinds, "alerts are records in the chain too");
    assert_eq!(handle.stats().alerts, 3);
}

/// One file sink run: `n` requests, then shutdown.
async fn run_file(path: &std::path::Path, n: usize) {
    run_replica_file(path, n, None).await;
}

/// One file sink run of a replica with this id (if any): `n` requests, then shutdown.
async fn run_replica_file(path: &std::path::Path, n: usize, replica: Option<&str>) {
    let mut builder = AuditLayer::builder(key())
        .sink(
            JsonLinesFile::builder(path)
                .max_bytes(1 << 20)
                .open()
                .unwrap(),
        )
        .alerts(AlertRules::none());
    if let Some(replica) = replica {
        builder = builder.replica(replica);
    }
    let audit = builder.build().unwrap();
    let handle = audit.handle();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(audit);
    for _ in 0..n {
        call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    }
    handle.shutdown().await;
}

#[tokio::test]
async fn a_crash_cut_line_or_an_empty_new_file_does_not_break_the_chain() {
    let dir = temp_dir("resume");
    let path = dir.join("audit.jsonl");
    run_file(&path, 3).await;
    // A crash mid-write leaves a cut record at the end.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"seq\":4,\"type\":\"requ")
        .unwrap();
    run_file(&path, 2).await;
    let summary = verify_files(&key(), &[&path]).unwrap();
    assert_eq!(
        (summary.first_seq, summary.last_seq, summary.records),
        (1, 5, 5)
    );
    // Rotated by hand, leaving an empty current file: the chain goes on from the old one.
    std::fs::rename(&path, dir.join("audit.jsonl.1")).unwrap();
    std::fs::File::create(&path).unwrap();
    run_file(&path, 2).await;
    let summary = verify_files(&key(), &JsonLinesFile::rotated_files(&path)).unwrap();
    assert_eq!((summary.first_seq, summary.last_seq), (1, 7));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_second_writer_on_the_same_file_is_refused() {
    let dir = temp_dir("lock");
    let path = dir.join("audit.jsonl");
    let first = JsonLinesFile::builder(&path).open().unwrap();
    assert!(JsonLinesFile::builder(&path).open().is_err());
    drop(first);
    assert!(JsonLinesFile::builder(&path).open().is_ok());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn refusals_without_a_rejection_are_not_recorded_as_allowed() {
    let (recent, audit, handle) = recorded(10);
    let app = Router::new()
        .route("/other-users-item", get(|| async { StatusCode::FORBIDDEN }))
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }))
        .route("/moved", get(|| async { StatusCode::PERMANENT_REDIRECT }))
        .layer(audit);
    for path in ["/other-users-item", "/missing", "/moved", "/no-such-route"] {
        call(&app, Request::get(path).body(Body::empty()).unwrap()).await;
    }
    handle.flush().await;
    let outcomes: Vec<(Outcome, Option<String>)> = request_events(&recent)
        .iter()
        .map(|e| (e.outcome, e.layer.as_deref().map(str::to_owned)))
        .collect();
    let handler = Some("handler".to_owned());
    assert_eq!(
        outcomes,
        [
            (Outcome::Forbidden, handler.clone()),
            (Outcome::Invalid, handler.clone()),
            (Outcome::Allowed, None),
            (Outcome::Invalid, handler),
        ]
    );
}

#[tokio::test]
async fn encoded_and_cut_secrets_in_paths_are_scrubbed() {
    let (recent, audit, handle) = recorded(10);
    let app = Router::new().layer(audit);
    let github = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB";
    // A token straddling the 1 KiB cut, and an e-mail address percent-encoded.
    let long = format!("/{}{github}", "a".repeat(1000));
    for path in [long.as_str(), "/users/alice.smith%40example.com/orders"] {
        call(&app, Request::get(path).body(Body::empty()).unwrap()).await;
    }
    handle.flush().await;
    for event in request_events(&recent) {
        assert!(!event.path.contains("ghp_0123456789abcd"), "{}", event.path);
        assert!(!event.path.contains("alice.smith"), "{}", event.path);
        assert!(event.path.len() <= 1024);
    }
}

#[tokio::test]
async fn concurrent_shutdowns_all_wait_for_the_flush_and_panicking_sinks_cost_nothing_else() {
    struct Panics;
    impl AuditSink for Panics {
        fn write(&mut self, _: &[AuditRecord]) -> io::Result<()> {
            panic!("a broken sink");
        }
    }
    let recent = RecentEvents::new(1000);
    let audit = AuditLayer::builder(key())
        .sink(Panics)
        .sink(Slow(recent.clone()))
        .build()
        .unwrap();
    let handle = audit.handle();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(audit);
    for _ in 0..50 {
        call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    }
    let (a, b) = (handle.clone(), handle.clone());
    tokio::join!(a.shutdown(), b.shutdown());
    assert_eq!(
        request_events(&recent).len(),
        50,
        "both shutdowns returned after everything was written"
    );
    let stats = handle.stats();
    assert!(stats.sink_errors > 0);
    assert_eq!(stats.last_seq, 50);
}

#[tokio::test]
async fn a_response_abandoned_while_waiting_for_room_is_counted() {
    let (held, gate) = std::sync::mpsc::channel::<()>();
    let audit = AuditLayer::builder(key())
        .sink(Stuck(gate))
        .queue_capacity(1)
        .overflow(Overflow::Wait(Duration::from_secs(30)))
        .build()
        .unwrap();
    let handle = audit.handle();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(audit);
    // Fill the sink and the queue, then give up on a request that waits for room. The audit
    // thread may take more than one event before its sink blocks (it drains whatever is queued
    // when it looks), so send until one has to wait; the queue holds one, so that comes soon.
    let mut sent = 0;
    // Up to 50: on a loaded machine the audit thread can take a few events before its sink
    // blocks.
    while sent < 50 && handle.stats().dropped == 0 {
        let _ = tokio::time::timeout(
            Duration::from_millis(200),
            call(&app, Request::get("/").body(Body::empty()).unwrap()),
        )
        .await;
        sent += 1;
    }
    let stats = handle.stats();
    assert_eq!(stats.accepted + stats.dropped, sent, "{stats:?}");
    assert_eq!(stats.dropped, 1, "{stats:?}");
    assert!(sent >= 3, "{stats:?}");
    drop(held);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_layer_without_shutdown_still_writes_what_was_queued() {
    let recent = RecentEvents::new(10_000);
    let (release, gate) = std::sync::mpsc::channel();
    let audit = AuditLayer::builder(key())
        .sink(Gated(gate, recent.clone()))
        .queue_capacity(10_000)
        .alerts(AlertRules::none())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(audit);
    for _ in 0..1000 {
        call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    }
    // Every sender goes away while most events are still queued behind the held sink.
    drop(app);
    drop(release);
    let written = async {
        while request_events(&recent).len() < 1000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), written)
        .await
        .expect("the queued events were written");
}

/// A sink whose every write waits for a permit (or for the permits' sender to be dropped).
struct Metered(std::sync::mpsc::Receiver<()>, RecentEvents);

impl AuditSink for Metered {
    fn write(&mut self, records: &[AuditRecord]) -> io::Result<()> {
        let _ = self.0.recv();
        self.1.write(records)
    }
}

/// Events dropped at a full queue leave a sealed gap record (how many, between which times)
/// after the records accepted before them, and `verify` counts the loss.
#[tokio::test]
async fn dropped_events_are_sealed_as_gap_records_that_verify_reports() {
    let recent = RecentEvents::new(10_000);
    let (permits, gate) = std::sync::mpsc::channel();
    let audit = AuditLayer::builder(key())
        .sink(Metered(gate, recent.clone()))
        .alerts(AlertRules::none())
        .queue_capacity(4)
        .build()
        .unwrap();
    let handle = audit.handle();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(audit);
    let before = std::time::SystemTime::now();
    // The sink holds its first write: the queue fills and the rest is dropped.
    for _ in 0..50 {
        call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    }
    let stats = handle.stats();
    assert!(stats.dropped >= 40, "{stats:?}");
    drop(permits);
    handle.flush().await;
    let records = recent.records();
    let gaps: Vec<_> = records
        .iter()
        .filter_map(|r| match r.entry() {
            AuditEntry::Gap(gap) => Some((r.seq(), gap.clone())),
            _ => None,
        })
        .collect();
    assert!(!gaps.is_empty());
    assert_eq!(
        gaps.iter().map(|(_, g)| g.dropped).sum::<u64>(),
        stats.dropped
    );
    for (_, gap) in &gaps {
        assert!(before <= gap.first && gap.first <= gap.last, "{gap:?}");
    }
    // Every accepted event is there too, and the sink wrote each record once.
    assert_eq!(request_events(&recent).len() as u64, stats.accepted);
    assert_eq!(handle.stats().written, stats.accepted + gaps.len() as u64);
    let log: String = records.iter().map(|r| format!("{}\n", r.json())).collect();
    assert!(log.contains("\"type\":\"gap\""), "{log}");
    let summary = verify(&key(), log.as_bytes()).unwrap();
    assert_eq!(
        (summary.gaps, summary.dropped),
        (gaps.len() as u64, stats.dropped)
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_shutdown_or_flush_waits_for_the_first_to_finish() {
    let recent = RecentEvents::new(10_000);
    let (permits, gate) = std::sync::mpsc::channel();
    let audit = AuditLayer::builder(key())
        .sink(Metered(gate, recent.clone()))
        .alerts(AlertRules::none())
        .build()
        .unwrap();
    let handle = audit.handle();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(audit);
    for _ in 0..500 {
        call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    }
    let first = tokio::spawn({
        let handle = handle.clone();
        async move { handle.shutdown().await }
    });
    // Writes go through one permit at a time until the shutdown has closed the queue (a new
    // request is then dropped, not accepted).
    while handle.stats().dropped == 0 {
        let _ = permits.send(());
        call(&app, Request::get("/").body(Body::empty()).unwrap()).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let second = tokio::spawn({
        let handle = handle.clone();
        async move {
            handle.flush().await;
            handle.shutdown().await;
        }
    });
    drop(permits);
    second.await.unwrap();
    // Checked before the first shutdown is awaited: the second returned only once all was written.
    assert_eq!(
        request_events(&recent).len() as u64,
        handle.stats().accepted
    );
    first.await.unwrap();
}

/// Events are recycled between requests (the audit thread hands their buffers back): nothing of
/// one request may show up in the next one's event.
#[tokio::test]
async fn a_recycled_event_carries_nothing_of_the_request_before() {
    let recent = RecentEvents::new(10_000);
    let audit = AuditLayer::builder(key())
        .sink(recent.clone())
        .build()
        .unwrap();
    let handle = audit.handle();
    let app = stack(audit, 10_000);
    let reader = format!("Bearer {}", token("alice", "read:items"));
    let long_agent = format!("agent/{}", "x".repeat(3000));
    for round in 0..600u32 {
        // A rich request (identity, long User-Agent, Basic user), then a bare one; with the
        // audit thread recycling between rounds, bare requests reuse rich requests' buffers.
        let rich_path = format!("/items/{}", "p".repeat(round as usize % 700));
        let rich = if round % 2 == 0 {
            request(
                "/items",
                &format!("rich-{round}"),
                [10, 7, 0, 1],
                &[("authorization", &reader), ("user-agent", &long_agent)],
            )
        } else {
            request(
                &rich_path,
                &format!("rich-{round}"),
                [10, 7, 0, 1],
                &[
                    ("authorization", "Basic YWxpY2U6d3Jvbmc="),
                    ("user-agent", &long_agent),
                ],
            )
        };
        call(&app, rich).await;
        call(
            &app,
            request("/", &format!("bare-{round}"), [10, 7, 0, 2], &[]),
        )
        .await;
        if round % 50 == 0 {
            handle.flush().await;
        }
    }
    handle.shutdown().await;
    let events = request_events(&recent);
    assert_eq!(events.len(), 1200);
    let bare: Vec<_> = events
        .iter()
        .filter(|e| e.request_id.starts_with("bare-"))
        .collect();
    assert_eq!(bare.len(), 600);
    for event in bare {
        assert_eq!(event.path, "/", "{event:?}");
        assert!(event.user_agent.is_none(), "{event:?}");
        assert!(event.principal.is_none(), "{event:?}");
        assert!(event.attempted_user.is_none(), "{event:?}");
        assert!(event.route.is_none(), "{event:?}");
        assert_eq!(event.redacted, 0);
        assert_eq!(event.client_ip, Some([10, 7, 0, 2].into()));
    }
    let rich_with_identity = events
        .iter()
        .filter(|e| e.request_id.starts_with("rich-") && e.principal.is_some())
        .count();
    assert_eq!(rich_with_identity, 300);
    // The User-Agent is kept cut (256 bytes) whatever buffer it was copied through.
    assert!(
        events
            .iter()
            .filter_map(|e| e.user_agent.as_ref())
            .all(|ua| ua.len() == 256 && ua.starts_with("agent/"))
    );
}

/// `shutdown()` returns once the sinks are closed: the same log file can be opened again at once
/// (the file sink holds an exclusive lock while open).
#[tokio::test]
async fn a_log_can_be_reopened_as_soon_as_shutdown_returns() {
    let dir = temp_dir("reopen");
    let path = dir.join("audit.jsonl");
    for _ in 0..40 {
        run_file(&path, 1).await;
    }
    let summary = verify_files(&key(), &[&path]).unwrap();
    assert_eq!((summary.first_seq, summary.last_seq), (1, 40));
    std::fs::remove_dir_all(dir).unwrap();
}

/// Several replicas, each with its id in every record and a file of its own: their files, or a
/// collector's merged stream of them, verify replica by replica, and a break names its replica.
#[tokio::test]
async fn the_records_of_several_replicas_verify_replica_by_replica() {
    let dir = temp_dir("replicas");
    let mut files = Vec::new();
    for (replica, requests) in [("a", 5), ("b", 7)] {
        let path = dir.join(format!("{replica}.jsonl"));
        run_replica_file(&path, requests, Some(replica)).await;
        files.push(path);
    }
    let lines = |path: &PathBuf| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let (a, b) = (lines(&files[0]), lines(&files[1]));
    assert!(a[0].starts_with(r#"{"seq":1,"replica":"a","#), "{}", a[0]);
    // Each file alone is one chain.
    assert_eq!(verify_files(&key(), &files[..1]).unwrap().last_seq, 5);
    // Both files, or one stream with their lines interleaved.
    let mut merged = Vec::new();
    for i in 0..a.len().max(b.len()) {
        merged.extend(a.get(i).cloned());
        merged.extend(b.get(i).cloned());
    }
    let merged_path = dir.join("merged.jsonl");
    std::fs::write(&merged_path, merged.join("\n") + "\n").unwrap();
    for paths in [files.clone(), vec![merged_path.clone()]] {
        let summaries = verify_replicas(&key(), &paths).unwrap();
        let seen: Vec<(Option<&str>, u64, u64)> = summaries
            .iter()
            .map(|s| (s.replica.as_deref(), s.first_seq, s.last_seq))
            .collect();
        assert_eq!(seen, [(Some("a"), 1, 5), (Some("b"), 1, 7)]);
        // As one chain, they are refused: they are two.
        let several = verify_files(&key(), &paths).unwrap_err();
        assert!(
            matches!(several.problem, Problem::SeveralReplicas),
            "{several}"
        );
    }
    // A record of replica b removed from the merged stream: the break names b.
    let mut cut = merged.clone();
    let index = cut
        .iter()
        .position(|l| l.contains(r#""seq":3,"replica":"b""#))
        .unwrap();
    cut.remove(index);
    std::fs::write(&merged_path, cut.join("\n") + "\n").unwrap();
    let broken = verify_replicas(&key(), &[&merged_path]).unwrap_err();
    assert_eq!(broken.replica.as_deref(), Some("b"));
    assert!(
        matches!(
            broken.problem,
            Problem::Gap {
                expected: 3,
                found: 4
            }
        ),
        "{broken}"
    );
    assert!(broken.to_string().contains("replica b"), "{broken}");
    // A record moved from one replica's chain into the other's place is not accepted either:
    // the replica id is part of what is signed.
    let forged = a[1].replace(r#""replica":"a""#, r#""replica":"b""#);
    let mut swapped = b.clone();
    swapped[1] = forged;
    std::fs::write(&merged_path, swapped.join("\n") + "\n").unwrap();
    let broken = verify_replicas(&key(), &[&merged_path]).unwrap_err();
    assert!(matches!(broken.problem, Problem::BadHash), "{broken}");
    // Ids that would need escaping are refused at build time.
    for bad in ["", "a b", "a\"b", &"x".repeat(65)] {
        assert!(
            AuditLayer::builder(key()).replica(bad).build().is_err(),
            "{bad:?}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}
