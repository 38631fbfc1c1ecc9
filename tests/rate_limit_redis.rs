//! The Redis backend against real Redis servers: the shared one from `REDIS_URL` (started by
//! `scripts/test.sh` when none is listening) and private ones these tests start and kill.
#![cfg(feature = "redis")]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use common::redis_server::RedisServer;
use common::*;
use http::Request;
use portcullis::AuthLayer;
use portcullis::rate_limit::{
    KeyBy, LockoutLayer, Quota, RateLimitLayer, RedisBackend, RedisFailure,
};

/// The shared Redis of the test run: `REDIS_URL`, or one started here when run by hand.
fn shared_redis() -> (String, Option<RedisServer>) {
    match std::env::var("REDIS_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            assert!(
                std::env::var("CI").is_err(),
                "CI must run these tests against REDIS_URL"
            );
            let server = RedisServer::start();
            (server.url(), Some(server))
        }
    }
}

fn unique_prefix() -> String {
    format!(
        "test-{}",
        portcullis::auth::ApiKey::generate("p").unwrap().expose()[2..14].to_owned()
    )
}

fn from(ip: &str, path: &str, headers: &[(&str, &str)]) -> Request<axum::body::Body> {
    let mut request = get_with(path, headers);
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 40000)));
    request
}

async fn replica(url: &str, prefix: &str, quota: Quota, on_failure: RedisFailure) -> Router {
    replica_with(url, prefix, quota, on_failure, 1).await
}

async fn replica_with(
    url: &str,
    prefix: &str,
    quota: Quota,
    on_failure: RedisFailure,
    batch: u32,
) -> Router {
    let redis = RedisBackend::connect(url)
        .await
        .unwrap()
        .prefix(prefix)
        .on_failure(on_failure)
        .batch(batch);
    let layer = RateLimitLayer::builder(KeyBy::ClientIp, quota)
        .redis(redis)
        .build()
        .unwrap();
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer)
}

/// Sends with a deadline: the backend must never hang a request.
async fn send_timely(app: &Router, request: Request<axum::body::Body>) -> Answer {
    tokio::time::timeout(Duration::from_secs(3), send(app, request))
        .await
        .expect("a request hung on the rate limiter")
}

#[tokio::test]
async fn two_replicas_share_one_quota() {
    let (url, _server) = shared_redis();
    let prefix = unique_prefix();
    let quota = Quota::per_minute(5);
    let a = replica(&url, &prefix, quota, RedisFailure::FailClosed).await;
    let b = replica(&url, &prefix, quota, RedisFailure::FailClosed).await;
    let mut allowed = 0;
    let mut remaining = Vec::new();
    for i in 0..10 {
        let app = if i % 2 == 0 { &a } else { &b };
        let answer = send_timely(app, from("192.0.2.10", "/", &[])).await;
        if answer.status == 200 {
            allowed += 1;
            remaining.push(answer.headers["ratelimit"].to_str().unwrap().to_owned());
        } else {
            answer.problem(429, "too-many-requests");
            assert!(answer.headers.contains_key("retry-after"));
        }
    }
    assert_eq!(allowed, 5, "one quota across both replicas");
    assert_eq!(remaining[0], r#""per-ip";r=4;t=12"#);
    assert_eq!(remaining[4], r#""per-ip";r=0;t=60"#);
    // Other clients are counted apart.
    assert_eq!(
        send_timely(&a, from("192.0.2.11", "/", &[])).await.status,
        200
    );
}

#[tokio::test]
async fn keys_expire_and_scripts_survive_a_flush() {
    let (url, _server) = shared_redis();
    let prefix = unique_prefix();
    let app = replica(
        &url,
        &prefix,
        Quota::per_second(10),
        RedisFailure::FailClosed,
    )
    .await;
    assert_eq!(
        send_timely(&app, from("192.0.2.20", "/", &[])).await.status,
        200
    );
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].contains(":{") && keys[0].contains("}:rl:per-ip"),
        "hash-tagged: {}",
        keys[0]
    );
    assert!(
        !keys[0].contains("192.0.2.20"),
        "client text never reaches key names"
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= 1_001,
        "the key lives only while its bucket is not full: {ttl}"
    );
    // After SCRIPT FLUSH, EVALSHA answers NOSCRIPT and the script is loaded again.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut connection)
        .await
        .unwrap();
    let answer = send_timely(&app, from("192.0.2.20", "/", &[])).await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.headers.contains_key("ratelimit"),
        "answered by Redis, not a fallback"
    );
}

#[tokio::test]
async fn when_redis_dies_each_failure_policy_does_what_it_says() {
    for policy in [
        RedisFailure::FailOpen,
        RedisFailure::FailClosed,
        RedisFailure::FallbackToLocal,
    ] {
        let mut server = RedisServer::start();
        let app = replica(&server.url(), "kill", Quota::per_minute(2), policy).await;
        let answer = send_timely(&app, from("192.0.2.30", "/", &[])).await;
        assert_eq!(answer.status, 200, "{policy:?}");
        assert!(answer.headers.contains_key("ratelimit"));
        server.kill();
        let mut statuses = Vec::new();
        for _ in 0..4 {
            let answer = send_timely(&app, from("192.0.2.30", "/", &[])).await;
            assert!(
                answer.status == 200 || answer.status == 429,
                "{policy:?}: never a 5xx"
            );
            statuses.push(answer.status.as_u16());
            if policy == RedisFailure::FailClosed {
                answer.problem(429, "too-many-requests");
                assert_eq!(answer.headers["retry-after"], "1");
            }
        }
        match policy {
            RedisFailure::FailOpen => assert_eq!(statuses, [200, 200, 200, 200]),
            RedisFailure::FailClosed => assert_eq!(statuses, [429, 429, 429, 429]),
            // The local limiter takes over with the same quota (2 per minute).
            _ => assert_eq!(statuses, [200, 200, 429, 429]),
        }
    }
}

#[tokio::test]
async fn the_connection_comes_back_when_redis_does() {
    let mut server = RedisServer::start();
    let port = server.port;
    let app = replica(
        &server.url(),
        "back",
        Quota::per_second(100),
        RedisFailure::FailClosed,
    )
    .await;
    assert_eq!(
        send_timely(&app, from("192.0.2.40", "/", &[])).await.status,
        200
    );
    server.kill();
    assert_eq!(
        send_timely(&app, from("192.0.2.40", "/", &[])).await.status,
        429
    );
    let _server = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = send_timely(&app, from("192.0.2.40", "/", &[])).await;
        if answer.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the connection manager never reconnected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn lockouts_are_shared_between_replicas() {
    let (url, _server) = shared_redis();
    let prefix = unique_prefix();
    let replica = |redis: RedisBackend| {
        let lockout = LockoutLayer::builder()
            .max_failures(3)
            .redis(redis)
            .build()
            .unwrap();
        app(AuthLayer::required().with(es256_jwt())).layer(lockout)
    };
    let redis = RedisBackend::connect(&url).await.unwrap().prefix(&prefix);
    let (a, b) = (replica(redis.clone()), replica(redis));
    for _ in 0..3 {
        send_timely(
            &a,
            from(
                "192.0.2.50",
                "/me",
                &[("authorization", "Bearer bad.token.value")],
            ),
        )
        .await
        .problem(401, "invalid-token");
    }
    // The failures are recorded off the request path; give them a moment to land.
    let token = Signer::es256().sign(&claims("alice", ""));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = send_timely(
            &b,
            from(
                "192.0.2.50",
                "/me",
                &[("authorization", &format!("Bearer {token}"))],
            ),
        )
        .await;
        if answer.status == 429 {
            answer.problem(429, "too-many-requests");
            let retry: u64 = answer.headers["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
            break;
        }
        assert_eq!(answer.status, 200);
        assert!(Instant::now() < deadline, "replica b never saw the lockout");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue #16: the shared count follows the same rule as the local one: refusals that are not
/// guesses (a key not yet known during a rotation, a revoked token) are never recorded in Redis.
/// The guesses sent afterwards from another address show when the recording has landed.
#[tokio::test]
async fn refusals_that_are_not_guesses_are_not_shared() {
    let (url, _server) = shared_redis();
    let prefix = unique_prefix();
    let deny = std::sync::Arc::new(portcullis::auth::InMemoryDenyList::new(16));
    assert!(deny.deny(
        Some(ISSUER),
        "t-1",
        std::time::SystemTime::now() + Duration::from_secs(3600),
    ));
    let replica = |redis: RedisBackend| {
        let jwt = portcullis::auth::JwtAuthenticator::builder()
            .key(all_keys().remove(0))
            .issuer(ISSUER)
            .audience([AUDIENCE])
            .deny_list(deny.clone())
            .build()
            .unwrap();
        let lockout = LockoutLayer::builder()
            .max_failures(2)
            .redis(redis)
            .build()
            .unwrap();
        app(AuthLayer::required().with(jwt)).layer(lockout)
    };
    let redis = RedisBackend::connect(&url).await.unwrap().prefix(&prefix);
    let (a, b) = (replica(redis.clone()), replica(redis));
    let mut rotated = Signer::es256();
    rotated.kid = Some("next");
    let unknown_kid = format!("Bearer {}", rotated.sign(&claims("alice", "")));
    let mut revoked = claims("alice", "");
    revoked["jti"] = serde_json::json!("t-1");
    let revoked = format!("Bearer {}", Signer::es256().sign(&revoked));
    for bearer in [&unknown_kid, &revoked] {
        for _ in 0..3 {
            send_timely(&a, from("192.0.2.70", "/me", &[("authorization", bearer)]))
                .await
                .problem(401, "invalid-token");
        }
    }
    // Guesses from another address, until replica b sees that address locked out: by then the
    // recordings sent before them have had as long to land.
    let bad = [("authorization", "Bearer bad.token.value")];
    for _ in 0..2 {
        send_timely(&a, from("192.0.2.71", "/me", &bad)).await;
    }
    let good = format!("Bearer {}", Signer::es256().sign(&claims("alice", "")));
    let deadline = Instant::now() + Duration::from_secs(5);
    while send_timely(&b, from("192.0.2.71", "/me", &[("authorization", &good)]))
        .await
        .status
        != 429
    {
        assert!(Instant::now() < deadline, "replica b never saw the guesses");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        send_timely(&b, from("192.0.2.70", "/me", &[("authorization", &good)]))
            .await
            .status,
        200,
        "not guesses, not counted"
    );
}

/// Each replica keeps its own count beside the shared one: the attempt right after the last
/// allowed failure is refused at once (the shared count learns of failures only after their
/// answers), and while Redis is down the replica still locks guessers out, and only them.
#[tokio::test]
async fn a_replica_counts_failures_itself_at_once_and_while_redis_is_down() {
    let mut server = RedisServer::start();
    let redis = RedisBackend::connect(&server.url())
        .await
        .unwrap()
        .prefix(&unique_prefix());
    let jwt = es256_jwt();
    let lockout = LockoutLayer::builder()
        .max_failures(3)
        .redis(redis)
        .build()
        .unwrap();
    let app = app(AuthLayer::required().with(jwt)).layer(lockout);
    let good = format!("Bearer {}", Signer::es256().sign(&claims("alice", "")));
    let bad = [("authorization", "Bearer bad.token.value")];
    let guess = |ip: &'static str| send_timely(&app, from(ip, "/me", &bad));
    let login = |ip: &'static str| {
        let good = good.clone();
        let app = app.clone();
        async move { send_timely(&app, from(ip, "/me", &[("authorization", &good)])).await }
    };

    for _ in 0..3 {
        guess("192.0.2.60").await.problem(401, "invalid-token");
    }
    let locked = login("192.0.2.60").await;
    locked.problem(429, "too-many-requests");
    assert!(locked.text.contains("failed attempts"), "{}", locked.text);

    server.kill();
    // Concurrent logins from one busy address while every Redis lookup runs into its deadline:
    // the wait for Redis is not an attempt in flight, so none is refused.
    let logins: Vec<_> = (0..12).map(|_| tokio::spawn(login("192.0.2.63"))).collect();
    for answer in logins {
        assert_eq!(
            answer.await.unwrap().status,
            200,
            "refused without a failure"
        );
    }
    assert_eq!(
        login("192.0.2.61").await.status,
        200,
        "no lockout of its own"
    );
    for _ in 0..3 {
        guess("192.0.2.61").await.problem(401, "invalid-token");
    }
    login("192.0.2.61").await.problem(429, "too-many-requests");
    // Only the guesser: a failing Redis does not lock anyone else out.
    assert_eq!(login("192.0.2.62").await.status, 200);
}

/// A three-node Redis Cluster of our own (no replicas), torn down on drop.
struct RedisCluster {
    nodes: Vec<RedisServer>,
    _dir: TempDir,
}

/// A scratch folder for the nodes' cluster configuration files, removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl RedisCluster {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("portcullis-cluster-{}", unique_prefix()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            // A node's cluster bus listens on its port + 10000, which must be a port too.
            let port = std::iter::repeat_with(|| {
                TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            })
            .find(|port| *port <= 55_000)
            .unwrap();
            let config = format!("nodes-{port}.conf");
            nodes.push(RedisServer::start_with(
                port,
                &dir,
                &["--cluster-enabled", "yes", "--cluster-config-file", &config],
            ));
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status =
            Command::new(std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into()))
                .args(["--cluster", "create"])
                .args(&addresses)
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("redis-cli must be installed with redis-server");
        assert!(status.success(), "redis-cli --cluster create failed");
        // Wait until every node sees every slot served: a node whose own view is not yet
        // complete answers CLUSTERDOWN even for the slots it owns.
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let output =
                    Command::new(std::env::var("REDIS_CLI").unwrap_or_else(|_| "redis-cli".into()))
                        .args(["-p", &node.port.to_string(), "cluster", "info"])
                        .output()
                        .unwrap();
                if String::from_utf8_lossy(&output.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster never became ready");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Self {
            nodes,
            _dir: TempDir(dir),
        }
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_quota_on_a_redis_cluster() {
    let cluster = RedisCluster::start();
    let replica = |redis: RedisBackend| {
        let layer = RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_minute(3))
            .redis(
                redis
                    .on_failure(RedisFailure::FailClosed)
                    .timeout(Duration::from_secs(1)),
            )
            .build()
            .unwrap();
        Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(layer)
    };
    let a = replica(RedisBackend::connect_cluster(cluster.urls()).await.unwrap());
    let b = replica(RedisBackend::connect_cluster(cluster.urls()).await.unwrap());
    // Many clients, so their keys land in slots on every node.
    for client in 0..12 {
        let ip = format!("192.0.2.{}", 100 + client);
        let mut statuses = Vec::new();
        for i in 0..5 {
            let app = if i % 2 == 0 { &a } else { &b };
            let answer = send_timely(app, from(&ip, "/", &[])).await;
            if answer.status == 200 {
                assert!(
                    answer.headers.contains_key("ratelimit"),
                    "answered by the cluster"
                );
            }
            statuses.push(answer.status.as_u16());
        }
        assert_eq!(statuses, [200, 200, 200, 429, 429], "client {ip}");
    }
    // And the lockout works on the cluster too (keys of one client in different slots).
    let lockout = LockoutLayer::builder()
        .max_failures(2)
        .redis(
            RedisBackend::connect_cluster(cluster.urls())
                .await
                .unwrap()
                .timeout(Duration::from_secs(1)),
        )
        .build()
        .unwrap();
    let jwt = es256_jwt();
    let app = app(AuthLayer::required().with(jwt)).layer(lockout);
    for _ in 0..2 {
        send_timely(
            &app,
            from(
                "192.0.2.60",
                "/me",
                &[("authorization", "Bearer bad.token.value")],
            ),
        )
        .await
        .problem(401, "invalid-token");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while send_timely(
        &app,
        from(
            "192.0.2.60",
            "/me",
            &[("authorization", "Bearer bad.token.value")],
        ),
    )
    .await
    .status
        != 429
    {
        assert!(
            Instant::now() < deadline,
            "the cluster lockout never took effect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn batched_replica(url: &str, prefix: &str, quota: Quota, batch: u32) -> Router {
    replica_with(url, prefix, quota, RedisFailure::FailClosed, batch).await
}

/// The `r=` member of a `RateLimit` header.
fn remaining_of(answer: &Answer) -> u32 {
    let header = answer.headers["ratelimit"].to_str().unwrap();
    let r = header
        .split(';')
        .find_map(|p| p.strip_prefix("r="))
        .unwrap();
    r.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_replicas_never_admit_more_than_the_shared_quota() {
    let (url, _server) = shared_redis();
    let prefix = unique_prefix();
    let quota = Quota::per_minute(40);
    let batch = 5;
    let replicas = [
        batched_replica(&url, &prefix, quota, batch).await,
        batched_replica(&url, &prefix, quota, batch).await,
    ];
    let mut allowed = [0u32; 2];
    for i in 0..120 {
        let answer = send_timely(&replicas[i % 2], from("192.0.2.20", "/", &[])).await;
        match answer.status.as_u16() {
            200 => allowed[i % 2] += 1,
            _ => {
                answer.problem(429, "too-many-requests");
            }
        }
    }
    let total = allowed[0] + allowed[1];
    // Every admission was granted by Redis first, so the quota holds exactly...
    assert!(total <= 40, "{allowed:?} admitted, quota 40");
    // ...and what a replica holds unspent is at most a batch and a half (a grant, and the next
    // one asked for when half of it was spent).
    assert!(
        total >= 40 - 2 * (batch + batch / 2),
        "{allowed:?} admitted"
    );
    assert!(allowed[0] > 0 && allowed[1] > 0, "{allowed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_spares_round_trips() {
    // A private server: its command counts are this test's alone.
    let server = RedisServer::start();
    let url = server.url();
    let app = batched_replica(&url, "batch", Quota::per_second(100_000), 50).await;
    let calls = || async {
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut connection)
            .await
            .unwrap();
        info.lines()
            .filter(|line| {
                line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:")
            })
            .filter_map(|line| {
                line.split("calls=")
                    .nth(1)?
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum::<u64>()
    };
    // The connection is up (another client, so the one below holds no grant yet).
    assert_eq!(
        send_timely(&app, from("192.0.2.99", "/", &[])).await.status,
        200
    );
    // Requests dropped while Redis answers (a client gone, a timeout further out) must not
    // leave their client without batches. Redis holds every command for a moment, so each
    // request is surely in flight when it is polled once and dropped.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(300)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .unwrap();
    let mut dropped = 0;
    for _ in 0..20 {
        let mut request = Box::pin(send(&app, from("192.0.2.21", "/", &[])));
        std::future::poll_fn(|cx| {
            dropped += usize::from(request.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
    }
    assert_eq!(dropped, 20, "every request was in flight when dropped");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = calls().await;
    for _ in 0..1000 {
        assert_eq!(
            send_timely(&app, from("192.0.2.21", "/", &[])).await.status,
            200
        );
    }
    let round_trips = calls().await - before;
    // One grant of 50 at first, then one more each time half of the grant is spent (about 40
    // on an idle machine); a request that finds the grant spent while the next batch is on its
    // way asks for itself, which a loaded machine makes more frequent. Without batches: 1 000.
    assert!(
        (1000 / 50 - 1..=200).contains(&round_trips),
        "{round_trips} round trips for 1000 requests in batches of 50"
    );
}

#[tokio::test]
async fn an_unspent_grant_lapses_once_the_quota_would_have_regenerated_it() {
    let (url, _server) = shared_redis();
    let prefix = unique_prefix();
    // 10 a second: a request's worth comes back every 100 ms.
    let app = batched_replica(&url, &prefix, Quota::per_second(10), 5).await;
    // Takes 5 from Redis (5 left there), spends 1 here: 4 held for a second (the quota would
    // regenerate them in 400 ms; a grant lives a second at least).
    let first = send_timely(&app, from("192.0.2.22", "/", &[])).await;
    assert_eq!(remaining_of(&first), 9);
    let second = send_timely(&app, from("192.0.2.22", "/", &[])).await;
    assert_eq!(
        remaining_of(&second),
        8,
        "spent from the grant, no round trip"
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // The 3 held lapsed and Redis is full again: a new grant of 5, one spent.
    let later = send_timely(&app, from("192.0.2.22", "/", &[])).await;
    assert_eq!(remaining_of(&later), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_take_one_batch_at_a_time() {
    let (url, _server) = shared_redis();
    let prefix = unique_prefix();
    let quota = Quota::per_minute(1000);
    let batched = batched_replica(&url, &prefix, quota, 10).await;
    let exact = replica(&url, &prefix, quota, RedisFailure::FailClosed).await;
    // Eight requests at once on a replica that holds nothing yet.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = batched.clone();
        tasks.push(tokio::spawn(async move {
            send_timely(&app, from("192.0.2.23", "/", &[])).await.status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    // What Redis gave away: the 8 spent, plus at most one batch and a half held (eight batches
    // of 10 before one batch at a time).
    let answer = send_timely(&exact, from("192.0.2.23", "/", &[])).await;
    let remaining = remaining_of(&answer);
    assert!(
        remaining >= 1000 - 8 - 15 - 1,
        "the batched replica took {} from Redis",
        1000 - 1 - remaining
    );
}
