//! Load test over real HTTP on loopback: the same small JSON handler served bare; behind
//! portcullis's AuthLayer (ES256 JWT with the verified-token cache, and with the cache off);
//! behind a hand-written `from_fn` middleware calling `jsonwebtoken::decode` (ES256); behind the
//! full portcullis stack (with and without the token cache, and without audit); behind the stack
//! exactly as the issue lists it (one rate limit, no lockout); behind the typical
//! hand-assembled stack; and behind a reference that does the listed checks fused by hand into
//! one non-configurable service (`common/fused.rs`), the ceiling of the work itself. All servers
//! run in one process and are driven in the same run, alternating round by round, so machine
//! noise hits every variant alike; the result is reported as requests/s, p50/p99 latency and the
//! ratio to the bare router.
//!
//! Run: `cargo bench --bench load` (settings: LOAD_SECONDS per round, default 3; LOAD_ROUNDS,
//! default 3; LOAD_CONNECTIONS, default 32; LOAD_SERVER_THREADS, default 1). By default the
//! server gets one runtime thread and the load generator another, so on a 2-core machine each
//! has a core and the server thread is the bottleneck. With `LOAD_SERVER_THREADS=2` the server
//! may use whatever CPU the load generator and the audit thread leave, so the ratio measures the
//! stack's total CPU per request instead. With `LOAD_SERVE_ONLY=<seconds>` it only serves the
//! variants for that long and prints their addresses and `Authorization` values, so an outside
//! generator can drive them (`scripts/load_wrk.sh` does this with wrk).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;

fn handler_router() -> Router {
    Router::new().route(
        "/items",
        get(|| async { axum::Json(json!({ "items": [{ "id": 1, "name": "gate" }] })) }),
    )
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Sample {
    requests: u64,
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

async fn drive(
    addr: SocketAddr,
    authorization: Option<String>,
    connections: u64,
    duration: Duration,
) -> Sample {
    let deadline = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let authorization = authorization.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
            tokio::spawn(connection);
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let mut request = hyper::Request::get("/items").header("host", "bench");
                if let Some(value) = &authorization {
                    request = request.header("authorization", value);
                }
                let request = request.body(Empty::<Bytes>::new()).unwrap();
                let sent = Instant::now();
                let response = sender.send_request(request).await.unwrap();
                let ok = response.status() == 200;
                response.into_body().collect().await.unwrap();
                latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if !ok {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut sample = Sample {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let (latencies, errors) = task.await.unwrap();
        sample.requests += latencies.len() as u64;
        sample.errors += errors;
        sample.latencies_us.extend(latencies);
    }
    sample.elapsed = started.elapsed();
    sample
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // `cargo test --benches` runs this with `--test`-like arguments; keep that run short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let seconds = if quick { 1 } else { setting("LOAD_SECONDS", 3) };
    let rounds = if quick { 1 } else { setting("LOAD_ROUNDS", 3) };
    let connections = setting("LOAD_CONNECTIONS", 32);
    let only = std::env::var("LOAD_ONLY").ok();

    let server_threads = setting("LOAD_SERVER_THREADS", 1).max(1) as usize;
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads)
        .thread_name("load-server")
        .enable_all()
        .build()
        .unwrap();
    let es256 = Some(format!("Bearer {}", common::token()));
    let rs256 = Some(format!("Bearer {}", common::rs256_token()));
    let audit_dir = std::env::temp_dir().join(format!("portcullis-load-{}", std::process::id()));
    std::fs::create_dir_all(&audit_dir).unwrap();
    let (full_cached, audit_cached) =
        common::full_stack(handler_router(), 32 << 20, &audit_dir.join("cached.jsonl"));
    let (full_cold, audit_cold) =
        common::full_stack(handler_router(), 0, &audit_dir.join("cold.jsonl"));
    let (listed, audit_listed) =
        common::listed_stack(handler_router(), &audit_dir.join("listed.jsonl"));
    let (no_audit, _) = common::full_stack_with(
        handler_router(),
        32 << 20,
        &audit_dir.join("unused.jsonl"),
        false,
    );
    #[allow(unused_mut)]
    let mut variants: Vec<(&str, Router, Option<String>)> = vec![
        ("bare axum", handler_router(), None),
        (
            "portcullis AuthLayer ES256, cached",
            common::portcullis(handler_router(), 32 << 20),
            es256.clone(),
        ),
        (
            "portcullis AuthLayer ES256, no cache",
            common::portcullis(handler_router(), 0),
            es256.clone(),
        ),
        (
            "from_fn + jsonwebtoken ES256",
            common::from_fn(handler_router()),
            es256.clone(),
        ),
        (
            "portcullis full stack, ES256 cached",
            full_cached,
            es256.clone(),
        ),
        (
            "portcullis full stack, cold (no token cache)",
            full_cold,
            es256.clone(),
        ),
        (
            "portcullis full stack without audit, ES256 cached",
            no_audit,
            es256.clone(),
        ),
        (
            "hand-assembled: TraceLayer + tower_governor + from_fn RS256 + role check",
            common::hand_assembled(handler_router()),
            rs256,
        ),
        (
            "portcullis as the issue lists it (one rate limit, no lockout), ES256 cached",
            listed,
            es256.clone(),
        ),
        (
            "reference: the listed checks fused by hand into one service, nothing configurable",
            handler_router().layer(common::fused::FusedLayer::new(
                &audit_dir.join("fused.jsonl"),
            )),
            es256.clone(),
        ),
    ];
    // Issue 20: a per-IP limit in memory against the same limit in Redis (with the `redis`
    // feature and REDIS_URL set), over the same HTTP path. Appended: the indexes above are used
    // below.
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("REDIS_URL") {
        use portcullis::RateLimitLayer;
        use portcullis::rate_limit::{KeyBy, Quota, RedisBackend};
        let generous = Quota::per_second(1_000_000).burst(1_000_000);
        let redis = server_runtime
            .block_on(RedisBackend::connect(&url))
            .unwrap()
            .prefix(&format!("load-{}", std::process::id()));
        let local = RateLimitLayer::builder(KeyBy::ClientIp, generous)
            .build()
            .unwrap();
        let shared = RateLimitLayer::builder(KeyBy::ClientIp, generous)
            .redis(redis.clone())
            .build()
            .unwrap();
        let batched = RateLimitLayer::builder(KeyBy::ClientIp, generous)
            .redis(redis.batch(100))
            .build()
            .unwrap();
        variants.push((
            "per-IP limit, in memory",
            handler_router().layer(local),
            None,
        ));
        variants.push((
            "per-IP limit, in Redis",
            handler_router().layer(shared),
            None,
        ));
        variants.push((
            "per-IP limit, in Redis, batches of 100",
            handler_router().layer(batched),
            None,
        ));
    }
    let mut addresses = Vec::new();
    for (_, router, _) in &variants {
        // Connect info: the per-IP limits (portcullis's and tower_governor's) key by the peer.
        let service = router
            .clone()
            .into_make_service_with_connect_info::<SocketAddr>();
        let listener = server_runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        addresses.push(listener.local_addr().unwrap());
        server_runtime.spawn(async move { axum::serve(listener, service).await.unwrap() });
    }

    // LOAD_SERVE_ONLY=<seconds>: serve every variant that long and print where, for an outside
    // load generator (wrk) instead of the built-in one.
    let serve = setting("LOAD_SERVE_ONLY", 0);
    if serve > 0 {
        for ((name, _, header), addr) in variants.iter().zip(&addresses) {
            println!("{addr}\t{}\t{name}", header.as_deref().unwrap_or("-"));
        }
        println!("# ready");
        std::thread::sleep(Duration::from_secs(serve));
        return;
    }

    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("load-client")
        .enable_all()
        .build()
        .unwrap();
    let mut results: Vec<Vec<Sample>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, (name, _, header)) in variants.iter().enumerate() {
            // LOAD_ONLY=<substring> drives only the matching variants (for profiling one).
            if only.as_deref().is_some_and(|only| !name.contains(only)) {
                continue;
            }
            let header = header.clone();
            let sample = client_runtime.block_on(drive(
                addresses[i],
                header,
                connections,
                Duration::from_secs(seconds),
            ));
            eprintln!(
                "round {}: {name}: {:.0} req/s",
                round + 1,
                sample.requests as f64 / sample.elapsed.as_secs_f64()
            );
            assert_eq!(sample.errors, 0, "{name}: non-200 answers under load");
            results[i].push(sample);
        }
    }

    println!();
    println!(
        "load: {rounds} round(s) x {seconds}s, {connections} keep-alive connections, server on {server_threads} runtime thread(s)"
    );
    println!("| variant | requests/s | p50 | p99 | vs bare |");
    println!("|---|---:|---:|---:|---:|");
    let mut bare_rps = 0.0;
    let mut rps_of = Vec::new();
    for (i, (name, _, _)) in variants.iter().enumerate() {
        let samples = &results[i];
        if samples.is_empty() {
            rps_of.push(f64::NAN);
            continue;
        }
        let requests: u64 = samples.iter().map(|s| s.requests).sum();
        let elapsed: f64 = samples.iter().map(|s| s.elapsed.as_secs_f64()).sum();
        let rps = requests as f64 / elapsed;
        let mut latencies: Vec<u32> = samples
            .iter()
            .flat_map(|s| s.latencies_us.iter().copied())
            .collect();
        latencies.sort_unstable();
        if i == 0 {
            bare_rps = rps;
        }
        rps_of.push(rps);
        println!(
            "| {name} | {rps:.0} | {} µs | {} µs | {:.0} % |",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            100.0 * rps / bare_rps
        );
    }
    let (full, hand, listed, fused) = (rps_of[4], rps_of[7], rps_of[8], rps_of[9]);
    println!();
    println!(
        "full stack (cached) vs bare: {:.0} %; vs hand-assembled: {:.1}x; cold full stack vs bare: {:.0} %",
        100.0 * full / bare_rps,
        full / hand,
        100.0 * rps_of[5] / bare_rps
    );
    println!(
        "as the issue lists it (cached) vs bare: {:.0} %; vs hand-assembled: {:.1}x",
        100.0 * listed / bare_rps,
        listed / hand
    );
    println!(
        "reference, fused by hand, vs bare: {:.0} %; vs hand-assembled: {:.1}x",
        100.0 * fused / bare_rps,
        fused / hand
    );
    client_runtime.block_on(async {
        for (name, handle) in [
            ("cached", audit_cached),
            ("cold", audit_cold),
            ("as listed", audit_listed),
        ] {
            handle.shutdown().await;
            let stats = handle.stats();
            println!(
                "audit ({name}): {} records written, {} dropped (queue full)",
                stats.written, stats.dropped
            );
        }
    });
    let _ = std::fs::remove_dir_all(&audit_dir);
}
