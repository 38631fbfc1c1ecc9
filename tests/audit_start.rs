//! Building an audit layer has no side effect: its thread starts when the layer is first applied
//! to a service. Alone in its own test binary, so no other test's audit threads are counted.

#![cfg(all(target_os = "linux", feature = "audit"))]

use portcullis::audit::{AuditKey, AuditLayer, RecentEvents};
use tower::{Layer, service_fn};

/// Threads of this process named like the audit thread (Linux cuts names to 15 bytes).
fn audit_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "portcullis-audi")
        .count()
}

#[tokio::test]
async fn the_audit_thread_starts_when_the_layer_is_applied_not_when_it_is_built() {
    let recent = RecentEvents::new(10);
    let audit =
        AuditLayer::builder(AuditKey::new(b"the audit key for tests, 32+ bytes long").unwrap())
            .sink(recent)
            .build()
            .unwrap();
    assert_eq!(audit_threads(), 0, "built: no thread yet");
    let handle = audit.handle();
    let _service = audit.layer(service_fn(|_: http::Request<axum::body::Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
    }));
    // Applied again (a route layer, a clone): still one thread.
    let _again = audit.layer(service_fn(|_: http::Request<axum::body::Body>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
    }));
    // A thread takes its name from inside, once it runs: wait for it.
    assert!(eventually(1).await, "applied: one thread");
    handle.shutdown().await;
    assert!(
        eventually(0).await,
        "the audit thread did not stop after shutdown"
    );
}

/// Whether the count of audit threads reaches `count` within a second (and stays there for the
/// rest of the check: a second thread would show as 2).
async fn eventually(count: usize) -> bool {
    for _ in 0..100 {
        match audit_threads() {
            n if n == count => return true,
            n if n > count && count == 1 => return false,
            _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
    false
}
