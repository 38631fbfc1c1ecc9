//! RateLimitLayer, ClientIpLayer and LockoutLayer through real routers, with a clock the test
//! moves by hand (no sleeping, no timing assumptions).

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use common::*;
use governor::clock::FakeRelativeClock;
use http::{HeaderValue, Request};
use portcullis::client_ip::{ClientIp, ClientIpLayer, ProxyHeader, TrustedProxies};
use portcullis::rate_limit::{KeyBy, LockoutLayer, Quota, RateLimitHeaders, RateLimitLayer};
use portcullis::{AuthLayer, AuthMethod, Identity};

fn from(ip: &str, path: &str, headers: &[(&str, &str)]) -> Request<axum::body::Body> {
    let mut request = get_with(path, headers);
    let addr = SocketAddr::new(ip.parse().unwrap(), 40000);
    request.extensions_mut().insert(ConnectInfo(addr));
    request
}

fn app_with(layer: RateLimitLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/ip",
            get(|ClientIp(ip): ClientIp| async move { ip.to_string() }),
        )
        .layer(layer)
}

#[tokio::test]
async fn gcra_allows_the_burst_then_one_per_emission_interval() {
    let clock = FakeRelativeClock::default();
    let layer = RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_second(2).burst(3))
        .clock(clock.clone())
        .build()
        .unwrap();
    let app = app_with(layer);
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let answer = send(&app, from("192.0.2.1", "/", &[])).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.headers["ratelimit-policy"], r#""per-ip";q=3;w=2"#);
        remaining.push(answer.headers["ratelimit"].to_str().unwrap().to_owned());
    }
    assert_eq!(
        remaining,
        [
            r#""per-ip";r=2;t=1"#,
            r#""per-ip";r=1;t=1"#,
            r#""per-ip";r=0;t=2"#
        ]
    );
    let answer = send(&app, from("192.0.2.1", "/", &[])).await;
    answer.problem(429, "too-many-requests");
    assert_eq!(answer.headers["retry-after"], "1");
    assert_eq!(answer.headers["ratelimit"], r#""per-ip";r=0;t=2"#);
    // Another client has its own budget.
    assert_eq!(send(&app, from("192.0.2.2", "/", &[])).await.status, 200);
    // One emission interval (500 ms) later exactly one more request fits.
    clock.advance(Duration::from_millis(500));
    assert_eq!(send(&app, from("192.0.2.1", "/", &[])).await.status, 200);
    assert_eq!(send(&app, from("192.0.2.1", "/", &[])).await.status, 429);
    // After the whole window the full burst is back.
    clock.advance(Duration::from_secs(2));
    for _ in 0..3 {
        assert_eq!(send(&app, from("192.0.2.1", "/", &[])).await.status, 200);
    }
}

#[tokio::test]
async fn cost_weighs_expensive_requests() {
    let clock = FakeRelativeClock::default();
    let layer = RateLimitLayer::builder(KeyBy::Global, Quota::per_second(1).burst(5))
        .cost(2)
        .clock(clock)
        .build()
        .unwrap();
    let app = app_with(layer);
    assert_eq!(
        send(&app, from("192.0.2.1", "/", &[])).await.headers["ratelimit"],
        r#""global";r=3;t=2"#
    );
    assert_eq!(send(&app, from("192.0.2.9", "/", &[])).await.status, 200);
    assert_eq!(
        send(&app, from("192.0.2.1", "/", &[])).await.status,
        429,
        "one unit left, cost 2"
    );
    assert!(
        RateLimitLayer::builder(KeyBy::Global, Quota::per_second(1))
            .cost(2)
            .build()
            .is_err()
    );
    assert!(
        RateLimitLayer::builder(KeyBy::Global, Quota::per_second(0))
            .build()
            .is_err()
    );
    assert!(
        RateLimitLayer::builder(KeyBy::Global, Quota::per_second(1))
            .name("bad name")
            .build()
            .is_err()
    );
}

fn as_user(subject: &str, request: Request<axum::body::Body>) -> Request<axum::body::Body> {
    let mut request = request;
    request
        .extensions_mut()
        .insert(Identity::builder(subject, AuthMethod::Jwt).build());
    request
}

#[tokio::test]
async fn anonymous_and_authenticated_callers_get_their_own_quotas() {
    let clock = FakeRelativeClock::default();
    let layer = RateLimitLayer::builder(KeyBy::Subject, Quota::per_minute(60).burst(3))
        .anonymous(Quota::per_minute(10).burst(1))
        .clock(clock)
        .build()
        .unwrap();
    let app = app_with(layer);
    assert_eq!(send(&app, from("192.0.2.1", "/", &[])).await.status, 200);
    assert_eq!(
        send(&app, from("192.0.2.1", "/", &[])).await.status,
        429,
        "anonymous burst is 1"
    );
    for _ in 0..3 {
        let answer = send(&app, as_user("alice", from("192.0.2.1", "/", &[]))).await;
        assert_eq!(
            answer.status, 200,
            "alice counts by subject, not by the exhausted address"
        );
    }
    assert_eq!(
        send(&app, as_user("alice", from("192.0.2.7", "/", &[])))
            .await
            .status,
        429,
        "same subject, other address"
    );
    assert_eq!(
        send(&app, as_user("bob", from("192.0.2.1", "/", &[])))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn keys_by_header_route_and_composites() {
    let clock = FakeRelativeClock::default();
    let build = |key_by: KeyBy| {
        RateLimitLayer::builder(key_by, Quota::per_minute(1))
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    // Header: each tenant header value has its own budget.
    let app = app_with(build(KeyBy::Header(http::HeaderName::from_static(
        "x-tenant",
    ))));
    assert_eq!(
        send(&app, from("192.0.2.1", "/", &[("x-tenant", "a")]))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&app, from("192.0.2.2", "/", &[("x-tenant", "a")]))
            .await
            .status,
        429
    );
    assert_eq!(
        send(&app, from("192.0.2.1", "/", &[("x-tenant", "b")]))
            .await
            .status,
        200
    );
    // Issue #16: the whole value counts, not a prefix of it.
    let long = "t".repeat(300);
    for suffix in ["1", "2"] {
        let value = format!("{long}{suffix}");
        assert_eq!(
            send(&app, from("192.0.2.1", "/", &[("x-tenant", &value)]))
                .await
                .status,
            200,
            "{suffix}"
        );
    }
    // Route: one budget per route pattern.
    let app = app_with(build(KeyBy::Route));
    assert_eq!(send(&app, from("192.0.2.1", "/", &[])).await.status, 200);
    assert_eq!(send(&app, from("192.0.2.2", "/", &[])).await.status, 429);
    assert_eq!(send(&app, from("192.0.2.1", "/ip", &[])).await.status, 200);
    // Route and subject.
    let app = app_with(build(KeyBy::RouteAndSubject));
    assert_eq!(
        send(&app, as_user("a", from("192.0.2.1", "/", &[])))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&app, as_user("a", from("192.0.2.1", "/ip", &[])))
            .await
            .status,
        200
    );
    assert_eq!(
        send(&app, as_user("a", from("192.0.2.9", "/", &[])))
            .await
            .status,
        429
    );
    assert_eq!(
        send(&app, as_user("b", from("192.0.2.1", "/", &[])))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn ipv6_clients_are_grouped_by_prefix() {
    let layer = RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_minute(1))
        .clock(FakeRelativeClock::default())
        .build()
        .unwrap();
    let app = app_with(layer);
    assert_eq!(
        send(&app, from("2001:db8:1:2::1", "/", &[])).await.status,
        200
    );
    assert_eq!(
        send(&app, from("2001:db8:1:2:ffff::9", "/", &[]))
            .await
            .status,
        429,
        "same /64"
    );
    assert_eq!(
        send(&app, from("2001:db8:1:3::1", "/", &[])).await.status,
        200,
        "other /64"
    );
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let layer = RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_minute(1))
        .clock(FakeRelativeClock::default())
        .build()
        .unwrap();
    let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
    let app = app_with(layer).layer(ClientIpLayer::new(proxies));
    // Through the proxy, two clients are two budgets.
    let via = |client: &str| from("10.0.0.5", "/", &[("x-forwarded-for", client)]);
    assert_eq!(send(&app, via("198.51.100.1")).await.status, 200);
    assert_eq!(send(&app, via("198.51.100.1")).await.status, 429);
    assert_eq!(send(&app, via("198.51.100.2")).await.status, 200);
    // Hops with the client's port (as some proxies write them) are the client, not the proxy:
    // otherwise every client behind the proxy would share one budget.
    assert_eq!(send(&app, via("198.51.100.3:51234")).await.status, 200);
    assert_eq!(send(&app, via("198.51.100.3:40000")).await.status, 429);
    assert_eq!(send(&app, via("[2001:db8::7]:443")).await.status, 200);
    assert_eq!(send(&app, via("[2001:db8::7]")).await.status, 429);
    assert_eq!(send(&app, via("198.51.100.4")).await.status, 200);
    // A malformed port is unreadable: the walk stops at the proxy (whose budget is still fresh).
    assert_eq!(send(&app, via("198.51.100.5:99999")).await.status, 200);
    assert_eq!(send(&app, via("198.51.100.6:x")).await.status, 429);
    // A client that is not a proxy cannot pretend to be someone else.
    let spoof = |fake: &str| from("203.0.113.9", "/", &[("x-forwarded-for", fake)]);
    assert_eq!(send(&app, spoof("1.1.1.1")).await.status, 200);
    assert_eq!(send(&app, spoof("2.2.2.2")).await.status, 429);
    // The ClientIp extractor sees the same address.
    let app = Router::new()
        .route(
            "/ip",
            get(|ClientIp(ip): ClientIp| async move { ip.to_string() }),
        )
        .layer(ClientIpLayer::new(
            TrustedProxies::new(["10.0.0.0/8"])
                .unwrap()
                .header(ProxyHeader::Forwarded),
        ));
    let answer = send(
        &app,
        from(
            "10.0.0.5",
            "/ip",
            &[("forwarded", "for=198.51.100.7;proto=https")],
        ),
    )
    .await;
    assert_eq!(answer.text, "198.51.100.7");
    let answer = send(
        &app,
        from("203.0.113.9", "/ip", &[("forwarded", "for=198.51.100.7")]),
    )
    .await;
    assert_eq!(answer.text, "203.0.113.9");
}

#[tokio::test]
async fn legacy_headers_and_stacked_limits() {
    let clock = FakeRelativeClock::default();
    let legacy = RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_second(1).burst(4))
        .headers(RateLimitHeaders::Legacy)
        .clock(clock.clone())
        .build()
        .unwrap();
    let answer = send(&app_with(legacy), from("192.0.2.1", "/", &[])).await;
    assert_eq!(answer.headers["x-ratelimit-limit"], "4");
    assert_eq!(answer.headers["x-ratelimit-remaining"], "3");
    assert_eq!(answer.headers["x-ratelimit-reset"], "1");
    assert!(answer.headers.get("ratelimit").is_none());

    let burst = RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_second(10).burst(20))
        .name("per-ip")
        .clock(clock.clone())
        .build()
        .unwrap();
    let sustained = RateLimitLayer::builder(KeyBy::Subject, Quota::per_hour(100))
        .name("per-user")
        .clock(clock)
        .build()
        .unwrap();
    let app = app_with(sustained).layer(burst);
    let answer = send(&app, as_user("alice", from("192.0.2.1", "/", &[]))).await;
    let policies: Vec<&str> = answer
        .headers
        .get_all("ratelimit-policy")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        policies,
        [r#""per-user";q=100;w=3600"#, r#""per-ip";q=20;w=2"#]
    );
    assert_eq!(answer.headers.get_all("ratelimit").iter().count(), 2);
}

#[tokio::test]
async fn a_flood_of_distinct_keys_stays_bounded() {
    let layer = RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_hour(10))
        .max_keys(1_000)
        .clock(FakeRelativeClock::default())
        .build()
        .unwrap();
    let app = app_with(layer.clone());
    for i in 0..20_000u32 {
        let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        let answer = send(&app, from(&ip.to_string(), "/", &[])).await;
        assert!(
            answer.status == 200 || answer.status == 429,
            "{}",
            answer.status
        );
    }
    // Bounded by the cap, plus one maintenance interval of growth and the overflow budgets.
    assert!(
        layer.tracked_keys() <= 1_000 + 4_096 + 1_024 + 1,
        "{} keys",
        layer.tracked_keys()
    );
}

#[tokio::test(start_paused = true)]
async fn repeated_failed_logins_lock_out_the_address_with_growing_lockouts() {
    let jwt = es256_jwt();
    let lockout = LockoutLayer::builder()
        .max_failures(3)
        .window(Duration::from_secs(60))
        .lockout(Duration::from_secs(10))
        .max_lockout(Duration::from_secs(30))
        .build()
        .unwrap();
    let app = app(AuthLayer::required().with(jwt)).layer(lockout);
    let bad = || {
        from(
            "192.0.2.66",
            "/me",
            &[("authorization", "Bearer bad.token.value")],
        )
    };
    let good_token = Signer::es256().sign(&claims("alice", ""));
    let good = || {
        from(
            "192.0.2.66",
            "/me",
            &[("authorization", &format!("Bearer {good_token}"))],
        )
    };
    // A request without credentials is not a failed login.
    for _ in 0..5 {
        assert_eq!(send(&app, from("192.0.2.66", "/me", &[])).await.status, 401);
    }
    for _ in 0..3 {
        send(&app, bad()).await.problem(401, "invalid-token");
    }
    let answer = send(&app, good()).await;
    answer.problem(429, "too-many-requests");
    assert_eq!(answer.headers["retry-after"], "10");
    assert_eq!(
        send(
            &app,
            from(
                "192.0.2.67",
                "/me",
                &[("authorization", &format!("Bearer {good_token}"))]
            )
        )
        .await
        .status,
        200,
        "other addresses are not affected"
    );
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_eq!(send(&app, good()).await.status, 200, "the lockout ends");
    // The next lockout doubles, then stays at the cap.
    for expected in ["20", "30", "30"] {
        for _ in 0..3 {
            send(&app, bad()).await.problem(401, "invalid-token");
        }
        assert_eq!(send(&app, good()).await.headers["retry-after"], expected);
        tokio::time::advance(Duration::from_secs(31)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_lockout_refusal_carries_only_the_lockouts_timing() {
    let lockout = LockoutLayer::builder()
        .max_failures(3)
        .lockout(Duration::from_secs(60))
        .build()
        .unwrap();
    let per_ip = RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_second(10))
        .build()
        .unwrap();
    let app = app(AuthLayer::required().with(es256_jwt()))
        .layer(lockout)
        .layer(per_ip);
    let bad = || {
        from(
            "192.0.2.68",
            "/me",
            &[("authorization", "Bearer bad.token.value")],
        )
    };
    for _ in 0..3 {
        let answer = send(&app, bad()).await;
        answer.problem(401, "invalid-token");
        // Other refusals still say where the client stands with the limit.
        assert!(
            answer.headers["ratelimit"]
                .to_str()
                .unwrap()
                .starts_with("\"per-ip\";r=")
        );
    }
    let answer = send(&app, bad()).await;
    answer.problem(429, "too-many-requests");
    assert_eq!(answer.headers["retry-after"], "60");
    // Not `r=6` next to `Retry-After: 60`: one truth per response.
    assert!(!answer.headers.contains_key("ratelimit"));
    assert!(!answer.headers.contains_key("ratelimit-policy"));
}

#[tokio::test(start_paused = true)]
async fn failed_logins_for_one_user_lock_out_that_user_from_everywhere() {
    use base64::Engine as _;
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let phc = hasher.hash_password(b"right", &salt).unwrap().to_string();
    let basic = portcullis::auth::BasicAuthenticator::builder()
        .user(portcullis::auth::BasicUser::new("ops", &phc).unwrap())
        .build()
        .unwrap();
    let lockout = LockoutLayer::builder().max_failures(3).build().unwrap();
    let app = app(AuthLayer::required().with(basic)).layer(lockout);
    let login = |ip: &str, password: &str| {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("ops:{password}"));
        from(
            ip,
            "/me",
            &[("authorization", &format!("Basic {credentials}"))],
        )
    };
    // Three wrong passwords from three addresses: no address reached the limit, the user did.
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        send(&app, login(ip, "wrong"))
            .await
            .problem(401, "invalid-credentials");
    }
    send(&app, login("192.0.2.4", "right"))
        .await
        .problem(429, "too-many-requests");
}

#[test]
fn hostile_forwarding_headers_never_panic() {
    use proptest::prelude::*;
    let proxies = [
        TrustedProxies::new(["10.0.0.0/8", "::/0"]).unwrap(),
        TrustedProxies::new(["10.0.0.0/8"])
            .unwrap()
            .header(ProxyHeader::Forwarded),
        TrustedProxies::new(["0.0.0.0/0"])
            .unwrap()
            .header(ProxyHeader::XRealIp),
    ];
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..200), |bytes| {
            let Ok(value) = HeaderValue::from_bytes(&bytes) else {
                return Ok(());
            };
            let mut headers = http::HeaderMap::new();
            for name in ["x-forwarded-for", "forwarded", "x-real-ip"] {
                headers.append(name, value.clone());
            }
            for proxies in &proxies {
                let ip = proxies.client_ip("10.0.0.1".parse().unwrap(), &headers);
                prop_assert!(!ip.to_string().is_empty());
            }
            Ok(())
        })
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(&"[ -~]{0,120}", |text| {
            let mut headers = http::HeaderMap::new();
            headers.insert("forwarded", HeaderValue::from_str(&text).unwrap());
            headers.insert("x-forwarded-for", HeaderValue::from_str(&text).unwrap());
            for proxies in &proxies {
                proxies.client_ip("10.0.0.1".parse().unwrap(), &headers);
            }
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn identity_is_used_when_keyed_by_api_key() {
    let layer = RateLimitLayer::builder(KeyBy::ApiKeyId, Quota::per_minute(1))
        .clock(FakeRelativeClock::default())
        .build()
        .unwrap();
    let app = app_with(layer);
    let with_key = |id: &str| {
        let mut request = from("192.0.2.1", "/", &[]);
        request.extensions_mut().insert(
            Identity::builder("svc", AuthMethod::ApiKey)
                .api_key_id(id)
                .build(),
        );
        request
    };
    assert_eq!(send(&app, with_key("k1")).await.status, 200);
    assert_eq!(send(&app, with_key("k1")).await.status, 429);
    assert_eq!(send(&app, with_key("k2")).await.status, 200);
}

fn basic_app(max_failures: u32) -> Router {
    let params = argon2::Params::new(8 * 1024, 2, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let phc = hasher.hash_password(b"right", &salt).unwrap().to_string();
    let basic = portcullis::auth::BasicAuthenticator::builder()
        .user(portcullis::auth::BasicUser::new("ops", &phc).unwrap())
        .build()
        .unwrap();
    let lockout = LockoutLayer::builder()
        .max_failures(max_failures)
        .build()
        .unwrap();
    app(AuthLayer::required().with(basic)).layer(lockout)
}

fn basic_login(ip: &str, password: &str) -> Request<axum::body::Body> {
    use base64::Engine as _;
    let credentials = base64::engine::general_purpose::STANDARD.encode(format!("ops:{password}"));
    from(
        ip,
        "/me",
        &[("authorization", &format!("Basic {credentials}"))],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_cannot_outrun_the_lockout() {
    let app = basic_app(3);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            send(&app, basic_login("192.0.2.90", "wrong"))
                .await
                .status
                .as_u16()
        }));
    }
    let mut checked = 0;
    for task in tasks {
        match task.await.unwrap() {
            401 => checked += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        checked <= 3,
        "{checked} guesses were checked, the limit is 3"
    );
    assert_eq!(
        send(&app, basic_login("192.0.2.90", "right")).await.status,
        429
    );
}

#[tokio::test]
async fn stale_tokens_are_not_guesses_and_public_routes_stay_open() {
    let jwt = es256_jwt();
    let lockout = LockoutLayer::builder().max_failures(2).build().unwrap();
    let app = app(AuthLayer::optional().with(jwt)).layer(lockout);
    let mut expired = claims("alice", "");
    expired["exp"] = serde_json::json!(now() - 3600);
    let stale = Signer::es256().sign(&expired);
    for _ in 0..5 {
        send(
            &app,
            from(
                "192.0.2.91",
                "/me",
                &[("authorization", &format!("Bearer {stale}"))],
            ),
        )
        .await
        .problem(401, "invalid-token");
    }
    let fresh = Signer::es256().sign(&claims("alice", ""));
    let answer = send(
        &app,
        from(
            "192.0.2.91",
            "/me",
            &[("authorization", &format!("Bearer {fresh}"))],
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "expired tokens did not count");
    // Forged tokens do count; the address is then locked for credentials only.
    for _ in 0..2 {
        send(
            &app,
            from(
                "192.0.2.91",
                "/me",
                &[("authorization", "Bearer forged.token.value")],
            ),
        )
        .await;
    }
    let answer = send(
        &app,
        from(
            "192.0.2.91",
            "/me",
            &[("authorization", &format!("Bearer {fresh}"))],
        ),
    )
    .await;
    assert_eq!(answer.status, 429);
    assert_eq!(
        send(&app, from("192.0.2.91", "/public", &[])).await.text,
        "ok"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_authenticated_requests_from_one_address_are_not_a_lockout() {
    // Alone, and with a second lockout layer outside it (a global one around a route's own):
    // accepting the credential releases the attempts of both. Stacked, the inner one allows
    // many failures, so the lockout at the end comes from the outer one.
    for stacked in [false, true] {
        let lockout = |failures| {
            LockoutLayer::builder()
                .max_failures(failures)
                .build()
                .unwrap()
        };
        // A slow handler: each request stays in flight while the others arrive.
        let app = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    "ok"
                }),
            )
            .layer(AuthLayer::required().with(es256_jwt()))
            .layer(lockout(if stacked { 100 } else { 2 }));
        let app = if stacked { app.layer(lockout(2)) } else { app };
        let token = Signer::es256().sign(&claims("alice", ""));
        let header = format!("Bearer {token}");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let app = app.clone();
                let request = from("192.0.2.95", "/slow", &[("authorization", &header)]);
                tokio::spawn(async move { send(&app, request).await.status.as_u16() })
            })
            .collect();
        for task in tasks {
            assert_eq!(
                task.await.unwrap(),
                200,
                "a valid caller was locked out (stacked: {stacked})"
            );
        }
        // Guesses still count: two forged tokens lock the address out.
        let forged = Signer::es256_foreign().sign(&claims("alice", ""));
        for _ in 0..2 {
            let request = from(
                "192.0.2.95",
                "/slow",
                &[("authorization", &format!("Bearer {forged}"))],
            );
            assert_eq!(send(&app, request).await.status, 401);
        }
        let request = from("192.0.2.95", "/slow", &[("authorization", &header)]);
        assert_eq!(send(&app, request).await.status, 429, "stacked: {stacked}");
    }
}

/// The same lockout layer applied twice (on a route and around the router) counts each
/// failure once.
#[tokio::test]
async fn the_same_lockout_applied_twice_counts_once() {
    let lockout = LockoutLayer::builder().max_failures(3).build().unwrap();
    let app = app(AuthLayer::required().with(es256_jwt()))
        .layer(lockout.clone())
        .layer(lockout);
    let forged = format!(
        "Bearer {}",
        Signer::es256_foreign().sign(&claims("alice", ""))
    );
    let good = format!("Bearer {}", Signer::es256().sign(&claims("alice", "")));
    let guess = || from("192.0.2.97", "/me", &[("authorization", forged.as_str())]);
    let login = || from("192.0.2.97", "/me", &[("authorization", good.as_str())]);
    for _ in 0..2 {
        send(&app, guess()).await.problem(401, "invalid-token");
    }
    assert_eq!(
        send(&app, login()).await.status,
        200,
        "two failures counted as four"
    );
    send(&app, guess()).await.problem(401, "invalid-token");
    send(&app, login()).await.problem(429, "too-many-requests");
}

/// Guesses in an API key header of another name are counted once the lockout is told the header
/// (the `Portcullis` builder tells it itself); left untold, they are not seen at all.
#[tokio::test]
async fn guesses_in_a_custom_api_key_header_are_counted_when_the_header_is_named() {
    use http::HeaderName;
    use portcullis::auth::{ApiKeyAuthenticator, ApiKeyGrant, InMemoryKeyStore};

    let header = HeaderName::from_static("x-service-key");
    let store = InMemoryKeyStore::new();
    let key = "pcl_custom_header_key_0123456789abcdefghij";
    store.insert(key, ApiKeyGrant::new("k", "svc")).unwrap();
    let auth = AuthLayer::required().with(ApiKeyAuthenticator::new(store).header(header.clone()));
    let lockout = |named: bool| {
        let builder = LockoutLayer::builder().max_failures(3);
        let builder = if named {
            builder.credential_header(header.clone())
        } else {
            builder
        };
        builder.build().unwrap()
    };
    let wrong = [("x-service-key", "pcl_wrong_key_0123456789abcdefghijklmnop")];
    for named in [true, false] {
        let app = app(auth.clone()).layer(lockout(named));
        for _ in 0..3 {
            send(&app, from("192.0.2.90", "/me", &wrong))
                .await
                .problem(401, "invalid-credentials");
        }
        let right = send(&app, from("192.0.2.90", "/me", &[("x-service-key", key)])).await;
        if named {
            right.problem(429, "too-many-requests");
        } else {
            assert_eq!(right.status, 200, "unnamed header: nothing counted");
        }
    }
}

/// An authenticator that refuses every bearer token with the reason named by the token itself,
/// standing in for refusals that are hard to provoke on demand (an identity provider that is
/// down or busy, an expired opaque token).
struct Refuses;

impl portcullis::auth::Authenticator for Refuses {
    fn scheme(&self) -> portcullis::Scheme {
        portcullis::Scheme::Bearer
    }

    fn authenticate(&self, request: &http::request::Parts) -> portcullis::auth::Authentication {
        use portcullis::auth::Authentication;
        use portcullis::{Rejection, RejectionKind};
        let Some(value) = request.headers.get("authorization") else {
            return Authentication::NotPresent;
        };
        let reason = match value.as_bytes() {
            b"Bearer inactive" => "inactive",
            b"Bearer introspection_failed" => "introspection_failed",
            b"Bearer introspection_busy" => "introspection_busy",
            b"Bearer unknown_kid" => "unknown_kid",
            b"Bearer revoked" => "revoked",
            b"Bearer kid_required" => "kid_required",
            b"Bearer too_large" => "too_large",
            b"Bearer something_new" => "something_new",
            _ => "bad_signature",
        };
        Authentication::Rejected(Rejection::new(RejectionKind::InvalidToken).with_reason(reason))
    }
}

/// Issue #16: only evidence of guessing is counted. An identity provider that is down or busy,
/// an expired opaque token, a key rotation in progress, a revoked token, and any reason the
/// lockout does not know never lock out an address; a forged token still does.
#[tokio::test]
async fn refusals_that_are_not_guesses_never_lock_out() {
    let lockout = LockoutLayer::builder().max_failures(2).build().unwrap();
    let app = app(AuthLayer::required().with(Refuses)).layer(lockout);
    let ip = "192.0.2.120";
    for reason in [
        "inactive",
        "introspection_failed",
        "introspection_busy",
        "unknown_kid",
        "revoked",
        "kid_required",
        "too_large",
        "something_new",
    ] {
        for _ in 0..3 {
            let answer = send(
                &app,
                from(ip, "/me", &[("authorization", &format!("Bearer {reason}"))]),
            )
            .await;
            answer.problem(401, "invalid-token");
        }
    }
    for _ in 0..2 {
        send(&app, from(ip, "/me", &[("authorization", "Bearer forged")]))
            .await
            .problem(401, "invalid-token");
    }
    send(&app, from(ip, "/me", &[("authorization", "Bearer forged")]))
        .await
        .problem(429, "too-many-requests");
}

/// The same through the real JWT checks: a token signed with a key not (yet) known and a
/// revoked token are not guesses; a token with a foreign audience is.
#[tokio::test]
async fn unknown_keys_and_revoked_tokens_are_not_guesses() {
    let deny = std::sync::Arc::new(portcullis::auth::InMemoryDenyList::new(16));
    let jwt = portcullis::auth::JwtAuthenticator::builder()
        .key(all_keys().remove(0))
        .issuer(ISSUER)
        .audience([AUDIENCE])
        .deny_list(deny.clone())
        .build()
        .unwrap();
    let lockout = LockoutLayer::builder().max_failures(2).build().unwrap();
    let app = app(AuthLayer::required().with(jwt)).layer(lockout);
    let ip = "192.0.2.121";
    let mut rotated = Signer::es256();
    rotated.kid = Some("next");
    let unknown_kid = rotated.sign(&claims("alice", ""));
    let mut revoked_claims = claims("alice", "");
    revoked_claims["jti"] = serde_json::json!("t-1");
    assert!(deny.deny(
        Some(ISSUER),
        "t-1",
        std::time::SystemTime::now() + Duration::from_secs(3600),
    ));
    let revoked = Signer::es256().sign(&revoked_claims);
    for token in [&unknown_kid, &revoked] {
        for _ in 0..3 {
            send(
                &app,
                from(ip, "/me", &[("authorization", &format!("Bearer {token}"))]),
            )
            .await
            .problem(401, "invalid-token");
        }
    }
    let good = Signer::es256().sign(&claims("alice", ""));
    let bearer = format!("Bearer {good}");
    assert_eq!(
        send(&app, from(ip, "/me", &[("authorization", &bearer)]))
            .await
            .status,
        200
    );
    let mut foreign = claims("alice", "");
    foreign["aud"] = serde_json::json!("another-api");
    let foreign = format!("Bearer {}", Signer::es256().sign(&foreign));
    for _ in 0..2 {
        send(&app, from(ip, "/me", &[("authorization", &foreign)]))
            .await
            .problem(401, "invalid-token");
    }
    send(&app, from(ip, "/me", &[("authorization", &bearer)]))
        .await
        .problem(429, "too-many-requests");
}
