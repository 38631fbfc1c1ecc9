//! Revocations shared through Redis (`RedisDenyList`): the check on the request path (a lookup
//! in the local mirror), how long a revocation takes to reach another replica, and the mirror's
//! memory at one million revocations. Needs a Redis: `REDIS_URL` (default
//! `redis://127.0.0.1:6379/`). Run: `cargo bench --bench revocations --features redis`.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use portcullis::auth::{JtiDenyList, RedisDenyList};

const ISSUER: &str = "https://issuer.example";

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let prefix = format!("bench-revocations-{}", std::process::id());
        let later = SystemTime::now() + Duration::from_secs(3600);
        let a = RedisDenyList::builder(&url)
            .prefix(&prefix)
            .resync_interval(Duration::from_secs(3600))
            .build()
            .await
            .expect("a Redis at REDIS_URL");
        let b = RedisDenyList::builder(&url)
            .prefix(&prefix)
            .resync_interval(Duration::from_secs(3600))
            .build()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;

        // Propagation: revoke on a, poll b.
        let mut delays = Vec::new();
        for i in 0..500 {
            let jti = format!("p-{i}");
            let started = Instant::now();
            a.deny(Some(ISSUER), &jti, later).await.unwrap();
            while !b.is_denied(Some(ISSUER), &jti) {
                tokio::task::yield_now().await;
                assert!(started.elapsed() < Duration::from_secs(5), "never arrived");
            }
            delays.push(started.elapsed());
        }
        delays.sort();
        println!(
            "propagation a -> b over {} revocations: p50 {:?}, p99 {:?}, max {:?}",
            delays.len(),
            percentile(&delays, 0.5),
            percentile(&delays, 0.99),
            delays[delays.len() - 1]
        );

        // The check on the request path, with 1 M revocations in the mirror.
        let mirror = RedisDenyList::builder(&url)
            .prefix(&format!("{prefix}-memory"))
            .build()
            .await
            .unwrap();
        let before = resident_bytes();
        let inserted = Instant::now();
        // Straight into the mirror's store is not public: revoke through the list, which also
        // writes Redis, in parallel batches.
        let mut handles = Vec::new();
        for worker in 0..8 {
            let mirror = mirror.clone();
            handles.push(tokio::spawn(async move {
                for i in 0..125_000 {
                    mirror
                        .deny(Some(ISSUER), &format!("m-{worker}-{i:06}"), later)
                        .await
                        .unwrap();
                }
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        let after = resident_bytes();
        println!(
            "1 M revocations: {} entries, resident memory +{:.0} MiB ({} bytes each), filled in {:?}",
            mirror.len(),
            (after.saturating_sub(before)) as f64 / (1 << 20) as f64,
            after.saturating_sub(before) / 1_000_000,
            inserted.elapsed()
        );
        let rounds = 2_000_000u32;
        for (name, jti) in [("revoked", "m-3-077777"), ("not revoked", "a-token-id-0001")] {
            let started = Instant::now();
            for _ in 0..rounds {
                black_box(mirror.is_denied(black_box(Some(ISSUER)), black_box(jti)));
            }
            println!(
                "is_denied, {name}, 1 M in the mirror: {:.1} ns per check",
                started.elapsed().as_nanos() as f64 / f64::from(rounds)
            );
        }
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        for key in [format!("{prefix}:revoked-jti"), format!("{prefix}-memory:revoked-jti")] {
            let _: () = redis::cmd("DEL")
                .arg(key)
                .query_async(&mut connection)
                .await
                .unwrap();
        }
    });
}
