//! Rate limiting cost.
//!
//! 1. criterion: one in-memory check through the `RateLimit` service (key extraction from the
//!    request included) against a bare `governor` keyed check wrapped in the same trivial service,
//!    with 1, 10 000 and 1 000 000 distinct client addresses in the key map.
//! 2. memory: resident set before and after one million distinct keys.
//! 3. Redis (feature `redis`, `REDIS_URL` set): requests/s and p50/p99 of the shared backend over
//!    loopback with 32 concurrent callers.
//!
//! Run: `cargo bench --bench rate_limit --features redis` (with `REDIS_URL=redis://127.0.0.1:6379/`).

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use criterion::{BenchmarkId, Criterion};
use governor::{Quota as GovernorQuota, RateLimiter};
use http::Request;
use portcullis::rate_limit::{KeyBy, Quota, RateLimitHeaders, RateLimitLayer};
use tower::{Layer, Service, ServiceExt, service_fn};

fn address(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

fn request(ip: IpAddr) -> Request<Body> {
    let mut request = Request::get("/").body(Body::empty()).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip, 40000)));
    request
}

fn ok() -> Response {
    Response::new(Body::empty())
}

/// Never exhausted during a run (4 billion at once), so every check takes the same path.
fn generous() -> Quota {
    Quota::per(u32::MAX, Duration::from_secs(1000))
}

fn check_cost(c: &mut Criterion, runtime: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group("rate_limit_check");
    for keys in [1u32, 10_000, 1_000_000] {
        let addresses: Vec<IpAddr> = (0..keys).map(address).collect();

        // Bare governor: the reference the issue measures against.
        let governor = std::sync::Arc::new(RateLimiter::dashmap(
            GovernorQuota::with_period(generous().emission_interval())
                .unwrap()
                .allow_burst(NonZeroU32::MAX),
        ));
        let reference = governor.clone();
        let bare = service_fn(move |request: Request<Body>| {
            let ip = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            let allowed = reference.check_key(&ip).is_ok();
            async move {
                assert!(allowed);
                Ok::<_, Infallible>(ok())
            }
        });
        for ip in &addresses {
            let _ = governor.check_key(ip);
        }

        let layer = RateLimitLayer::builder(KeyBy::ClientIp, generous())
            .headers(RateLimitHeaders::None)
            .max_keys(2_000_000)
            .build()
            .unwrap();
        let with_headers = RateLimitLayer::builder(KeyBy::ClientIp, generous())
            .max_keys(2_000_000)
            .build()
            .unwrap();
        let inner = service_fn(|_request: Request<Body>| async { Ok::<_, Infallible>(ok()) });
        let mut limited = layer.layer(inner);
        let mut limited_headers = with_headers.layer(inner);
        runtime.block_on(async {
            for ip in &addresses {
                limited
                    .ready()
                    .await
                    .unwrap()
                    .call(request(*ip))
                    .await
                    .unwrap();
                limited_headers
                    .ready()
                    .await
                    .unwrap()
                    .call(request(*ip))
                    .await
                    .unwrap();
            }
        });

        let mut i = 0usize;
        let mut next = || {
            i = (i + 7919) % addresses.len();
            addresses[i]
        };
        let mut bare = bare;
        group.bench_function(BenchmarkId::new("bare_governor", keys), |b| {
            b.iter(|| runtime.block_on(bare.call(request(next()))).unwrap())
        });
        group.bench_function(BenchmarkId::new("portcullis", keys), |b| {
            b.iter(|| runtime.block_on(limited.call(request(next()))).unwrap())
        });
        group.bench_function(BenchmarkId::new("portcullis_with_headers", keys), |b| {
            b.iter(|| {
                black_box(
                    runtime
                        .block_on(limited_headers.call(request(next())))
                        .unwrap(),
                )
            })
        });
    }
    group.finish();
}

fn resident_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

fn memory(runtime: &tokio::runtime::Runtime) {
    let layer = RateLimitLayer::builder(KeyBy::ClientIp, Quota::per_hour(100))
        .max_keys(1_000_000)
        .build()
        .unwrap();
    let inner = service_fn(|_request: Request<Body>| async { Ok::<_, Infallible>(ok()) });
    let mut service = layer.layer(inner);
    let before = resident_kib("VmRSS:");
    runtime.block_on(async {
        for i in 0..1_000_000 {
            service
                .ready()
                .await
                .unwrap()
                .call(request(address(i)))
                .await
                .unwrap();
        }
    });
    let after = resident_kib("VmRSS:");
    let peak = resident_kib("VmHWM:");
    println!(
        "memory: 1 000 000 keys tracked={} rss_before={} MiB rss_after={} MiB growth={} MiB peak_rss={} MiB",
        layer.tracked_keys(),
        before / 1024,
        after / 1024,
        after.saturating_sub(before) / 1024,
        peak / 1024
    );
}

#[cfg(feature = "redis")]
fn redis_throughput(runtime: &tokio::runtime::Runtime) {
    use axum::Router;
    use axum::routing::get;
    use portcullis::rate_limit::RedisBackend;
    use std::time::Instant;

    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("redis: REDIS_URL not set, skipped");
        return;
    };
    runtime.block_on(async {
        let redis = RedisBackend::connect(&url).await.unwrap().prefix("bench");
        let layer = RateLimitLayer::builder(KeyBy::ClientIp, generous())
            .redis(redis)
            .build()
            .unwrap();
        let app = Router::new().route("/", get(|| async { "ok" })).layer(layer);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut tasks = Vec::new();
        for worker in 0..32u32 {
            let app = app.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u32;
                while Instant::now() < deadline {
                    let started = Instant::now();
                    let response = app.clone().oneshot(request(address(worker * 1000 + n % 1000))).await.unwrap();
                    assert!(response.headers().contains_key("ratelimit"), "answered by Redis");
                    latencies.push(started.elapsed().as_micros() as u64);
                    n += 1;
                }
                latencies
            }));
        }
        let started = Instant::now();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        all.sort_unstable();
        let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize];
        println!(
            "redis: {} checks in {elapsed:.1}s = {:.0} checks/s, p50={} µs, p99={} µs (32 concurrent callers, loopback)",
            all.len(),
            all.len() as f64 / elapsed,
            pct(0.50),
            pct(0.99)
        );
    });
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let benchmarking = std::env::args().any(|a| a == "--bench");
    if benchmarking {
        // First, while the process is small, so the peak belongs to the million keys.
        memory(&runtime);
    }
    let mut criterion = Criterion::default().configure_from_args();
    check_cost(&mut criterion, &runtime);
    criterion.final_summary();
    #[cfg(feature = "redis")]
    if benchmarking {
        redis_throughput(&runtime);
    }
}
