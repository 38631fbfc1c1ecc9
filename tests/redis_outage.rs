//! An outage of Redis is logged once when it starts and once when it ends, however many
//! requests meet it. Alone in its binary: it installs the process-wide log subscriber.
#![cfg(feature = "redis")]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use common::redis_server::RedisServer;
use http::{Request, StatusCode};
use portcullis::rate_limit::{KeyBy, Quota, RateLimitLayer, RedisBackend, RedisFailure};
use tower::ServiceExt;

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn status(app: &Router) -> StatusCode {
    let mut request = Request::get("/").body(Body::empty()).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 50], 4000))));
    tokio::time::timeout(Duration::from_secs(3), app.clone().oneshot(request))
        .await
        .expect("a request hung on the rate limiter")
        .unwrap()
        .status()
}

#[tokio::test]
async fn an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() {
    let logs = Logs::default();
    let writer = logs.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    let mut server = RedisServer::start();
    let port = server.port;
    let backend = RedisBackend::connect(&server.url()).await.unwrap();
    // A start-up check: Redis answers.
    backend.ping(Duration::from_secs(2)).await.unwrap();
    let layer = RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_second(100))
        .redis(backend.clone().on_failure(RedisFailure::FallbackToLocal))
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);
    assert_eq!(status(&app).await, StatusCode::OK);

    server.kill();
    let started = Instant::now();
    assert!(backend.ping(Duration::from_millis(500)).await.is_err());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "ping waited too long"
    );
    for _ in 0..20 {
        // This replica's own limiter decides meanwhile.
        assert_eq!(status(&app).await, StatusCode::OK);
    }

    let _server = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while backend.ping(Duration::from_millis(500)).await.is_err() {
        assert!(Instant::now() < deadline, "Redis never answered again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..5 {
        assert_eq!(status(&app).await, StatusCode::OK);
    }
    let text = logs.text();
    assert_eq!(
        text.matches("the failure policy applies").count(),
        1,
        "{text}"
    );
    assert_eq!(text.matches("Redis answers again").count(), 1, "{text}");
}
