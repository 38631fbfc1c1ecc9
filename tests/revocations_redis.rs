//! Revocations shared by replicas through a real Redis (`RedisDenyList`): every replica refuses a
//! revoked token within a bounded delay, without a round trip per request, and the mirrors
//! recover from lost announcements and from a Redis that lost its data.
#![cfg(feature = "redis")]

mod common;

use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::redis_server::RedisServer;
use portcullis::auth::{JtiDenyList, RedisDenyList};
use portcullis::test_util::TestIssuer;
use portcullis::{AuthLayer, Identity};
use serde_json::json;
use tower::ServiceExt;

const ISSUER: &str = "https://issuer.test";

fn later() -> SystemTime {
    SystemTime::now() + Duration::from_secs(600)
}

fn shared_url() -> (String, Option<RedisServer>) {
    match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let server = RedisServer::start();
            (server.url(), Some(server))
        }
    }
}

fn unique_prefix() -> String {
    format!(
        "revocations-{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

async fn replica(url: &str, prefix: &str, resync: Duration) -> RedisDenyList {
    RedisDenyList::builder(url)
        .prefix(prefix)
        .resync_interval(resync)
        .build()
        .await
        .unwrap()
}

/// How long until `list` refuses `jti`, or `None` after `limit`.
async fn until_denied(list: &RedisDenyList, jti: &str, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if list.is_denied(Some(ISSUER), jti) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_replica_is_refused_by_the_others_within_a_second() {
    let (url, _server) = shared_url();
    let prefix = unique_prefix();
    // Resynchronisation far away: only the announcement can carry it in time.
    let a = replica(&url, &prefix, Duration::from_secs(60)).await;
    let b = replica(&url, &prefix, Duration::from_secs(60)).await;
    // Through the real stack on replica b.
    let issuer = TestIssuer::new();
    let app = Router::new()
        .route(
            "/me",
            get(|identity: Identity| async move { identity.subject().to_owned() }),
        )
        .layer(
            AuthLayer::required().with(
                issuer
                    .authenticator_builder()
                    .deny_list(b.clone())
                    .build()
                    .unwrap(),
            ),
        );
    let token = issuer.token("alice").claim("jti", json!("t-1")).bearer();
    let status = |app: Router, token: http::HeaderValue| async move {
        let request = http::Request::get("/me")
            .header("authorization", token)
            .body(Body::empty())
            .unwrap();
        app.oneshot(request).await.unwrap().status()
    };
    assert_eq!(status(app.clone(), token.clone()).await, 200);
    // Give the subscriptions a moment to be in place before announcing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.deny(Some(ISSUER), "t-1", later()).await.unwrap();
    assert!(
        a.is_denied(Some(ISSUER), "t-1"),
        "at once on the replica that revoked"
    );
    let delay = until_denied(&b, "t-1", Duration::from_secs(1)).await;
    assert!(delay.is_some(), "replica b never heard of the revocation");
    assert_eq!(status(app, token).await, 401);
    // Another issuer's token with the same id is not revoked.
    assert!(!b.is_denied(Some("https://other.example"), "t-1"));
    // A replica that starts later loads it at start-up.
    let c = replica(&url, &prefix, Duration::from_secs(60)).await;
    assert!(c.is_denied(Some(ISSUER), "t-1"));
    // Revocations of tokens that have expired are not loaded.
    a.deny(
        Some(ISSUER),
        "old",
        SystemTime::now() - Duration::from_secs(600),
    )
    .await
    .unwrap();
    let d = replica(&url, &prefix, Duration::from_secs(60)).await;
    assert!(!d.is_denied(Some(ISSUER), "old"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirrors_recover_from_lost_announcements_and_a_redis_that_lost_its_data() {
    let mut server = RedisServer::start();
    let port = server.port;
    let url = server.url();
    let prefix = unique_prefix();
    let a = replica(&url, &prefix, Duration::from_millis(200)).await;
    let b = replica(&url, &prefix, Duration::from_millis(200)).await;
    // A revocation whose announcement was lost (stored and counted, never published): the
    // periodic resynchronisation sees the version it skipped and reads it. Wait until both
    // replicas are subscribed and in step first, so only the version can tell them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let expiry = later()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let _: () = redis::pipe()
        .cmd("INCR")
        .arg(format!("{prefix}:revoked-jti:version"))
        .ignore()
        .cmd("ZADD")
        .arg(format!("{prefix}:revoked-jti"))
        .arg(expiry)
        .arg(serde_json::to_string(&(Some(ISSUER), "silent")).unwrap())
        .ignore()
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        until_denied(&b, "silent", Duration::from_secs(3))
            .await
            .is_some()
    );
    a.deny(Some(ISSUER), "kept", later()).await.unwrap();
    assert!(
        until_denied(&b, "kept", Duration::from_secs(1))
            .await
            .is_some()
    );
    // Redis restarts empty (no persistence): the replicas keep refusing, and write their
    // revocations back, so a replica started afterwards knows them too.
    server.kill();
    assert!(a.is_denied(Some(ISSUER), "kept") && b.is_denied(Some(ISSUER), "kept"));
    let _server = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    let c = loop {
        if let Ok(c) = RedisDenyList::builder(&url).prefix(&prefix).build().await
            && c.is_denied(Some(ISSUER), "kept")
        {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the revocations were never written back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(c.is_denied(Some(ISSUER), "silent"));
    // And announcements flow again after the reconnection.
    c.deny(Some(ISSUER), "after", later()).await.unwrap();
    assert!(
        until_denied(&a, "after", Duration::from_secs(3))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn an_unreachable_redis_at_start_up_is_an_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let result = RedisDenyList::builder(format!("redis://127.0.0.1:{port}/"))
        .build()
        .await;
    assert!(result.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_revoked_on_one_replica_is_refused_by_the_others() {
    use portcullis::auth::{ApiKeyAuthenticator, ApiKeyGrant, InMemoryKeyStore};

    let (url, _server) = shared_url();
    let prefix = unique_prefix();
    let a = replica(&url, &prefix, Duration::from_secs(60)).await;
    let b = replica(&url, &prefix, Duration::from_secs(60)).await;
    // Each replica has its own copy of the keys, as from a config file.
    let store = InMemoryKeyStore::new();
    let (ci, other) = (
        "pcl_ci_key_revoked_in_redis_0123456789abcdef",
        "pcl_other_key_still_valid_0123456789abcdef",
    );
    store.insert(ci, ApiKeyGrant::new("ci", "ci-bot")).unwrap();
    store
        .insert(other, ApiKeyGrant::new("other", "svc"))
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(AuthLayer::required().with(ApiKeyAuthenticator::new(store).deny_list(b.clone())));
    let status = |key: &'static str| {
        let app = app.clone();
        async move {
            let request = http::Request::get("/")
                .header("x-api-key", key)
                .body(Body::empty())
                .unwrap();
            app.oneshot(request).await.unwrap().status()
        }
    };
    assert_eq!(status(ci).await, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.revoke_api_key("ci").await.unwrap();
    let started = Instant::now();
    while status(ci).await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "never refused on b"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(status(other).await, 200);
    // A token whose `jti` is the key's id is not revoked by it.
    assert!(!b.is_denied(Some(ISSUER), "ci"));
}

/// A replica that starts reads every current revocation, however many pages of the set that
/// takes, and skips the expired ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starting_replica_reads_every_page_of_revocations() {
    let (url, _server) = shared_url();
    let prefix = unique_prefix();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut pipe = redis::pipe();
    for i in 0..25_000u32 {
        // One in five expired (its score, expiry plus margin, already past).
        let score = if i % 5 == 0 { now - 1_000 } else { now + 3_600 };
        pipe.zadd(
            format!("{prefix}:revoked-jti"),
            serde_json::to_string(&(Some(ISSUER), format!("bulk-{i}"))).unwrap(),
            score,
        )
        .ignore();
    }
    pipe.incr(format!("{prefix}:revoked-jti:version"), 1)
        .ignore();
    let _: () = pipe.query_async(&mut connection).await.unwrap();
    let list = replica(&url, &prefix, Duration::from_secs(60)).await;
    assert_eq!(list.len(), 20_000);
    for i in [1u32, 9_999, 24_999] {
        assert!(
            list.is_denied(Some(ISSUER), &format!("bulk-{i}")),
            "bulk-{i}"
        );
    }
    assert!(!list.is_denied(Some(ISSUER), "bulk-5"), "expired");
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}:revoked-jti"))
        .query_async(&mut connection)
        .await
        .unwrap();
}
