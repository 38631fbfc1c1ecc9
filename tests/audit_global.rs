//! What the audit trail sends to process-wide facades: the `tracing` sink's output and (feature
//! `metrics`) the metrics. Its own test binary, because both are installed globally once.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use common::*;
use http::Request;
use portcullis::AuthLayer;
use portcullis::audit::{AuditKey, AuditLayer, TracingSink};
use portcullis::auth::JwtAuthenticator;
use tower::ServiceExt;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(feature = "metrics")]
mod recorder {
    use super::*;
    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };
    use std::collections::HashMap;

    #[derive(Clone, Default)]
    pub struct Counting(pub Arc<Mutex<HashMap<String, f64>>>);

    struct Handle(String, Arc<Mutex<HashMap<String, f64>>>);

    impl CounterFn for Handle {
        fn increment(&self, value: u64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value as f64;
        }
        fn absolute(&self, value: u64) {
            self.1.lock().unwrap().insert(self.0.clone(), value as f64);
        }
    }

    impl GaugeFn for Handle {
        fn increment(&self, value: f64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value;
        }
        fn decrement(&self, value: f64) {
            *self.1.lock().unwrap().entry(self.0.clone()).or_default() -= value;
        }
        fn set(&self, value: f64) {
            self.1.lock().unwrap().insert(self.0.clone(), value);
        }
    }

    fn name(key: &Key) -> String {
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl Recorder for Counting {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Handle(name(key), self.0.clone())))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(Handle(name(key), self.0.clone())))
        }
        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }
}

#[tokio::test]
async fn the_tracing_sink_logs_structured_fields_and_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    #[cfg(feature = "metrics")]
    let counts = {
        let recorder = recorder::Counting::default();
        let counts = recorder.0.clone();
        metrics::set_global_recorder(recorder).unwrap();
        counts
    };

    let jwt = JwtAuthenticator::builder()
        .key(all_keys().remove(3))
        .issuer(ISSUER)
        .audience([AUDIENCE])
        .build()
        .unwrap();
    let audit =
        AuditLayer::builder(AuditKey::new(b"the audit key for tests, 32+ bytes long").unwrap())
            .sink(TracingSink)
            .build()
            .unwrap();
    let handle = audit.handle();
    let app = Router::new()
        .route("/me", get(|| async { "ok" }))
        .layer(AuthLayer::required().with(jwt))
        .layer(audit);
    let token = Signer::hs256().sign(&claims("alice", "read"));
    let forged = Signer::es256_foreign().sign(&claims("mallory", "read"));
    for (token, id) in [(&token, "g-ok"), (&forged, "g-bad")] {
        let request = Request::get("/me?api_key=sk_live_secretvalue")
            .header("authorization", format!("Bearer {token}"))
            .header("x-request-id", id)
            .body(Body::empty())
            .unwrap();
        app.clone().oneshot(request).await.unwrap();
    }
    handle.shutdown().await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" audit: ")).collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("request_id=g-ok") && lines[0].contains("outcome=\"allowed\""),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("subject=\"alice\""), "{}", lines[0]);
    assert!(
        lines[1].contains("request_id=g-bad") && lines[1].contains("outcome=\"unauthenticated\""),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("layer=\"auth\""), "{}", lines[1]);
    for secret in [
        token.as_str(),
        forged.as_str(),
        "sk_live_secretvalue",
        "mallory",
    ] {
        assert!(!text.contains(secret), "{secret} in the tracing output");
    }

    #[cfg(feature = "metrics")]
    {
        let counts = counts.lock().unwrap().clone();
        let get = |name: &str| counts.get(name).copied().unwrap_or_default();
        assert_eq!(
            get("portcullis_requests_total{layer=none,outcome=allowed}"),
            1.0,
            "{counts:?}"
        );
        assert_eq!(
            get("portcullis_requests_total{layer=auth,outcome=unauthenticated}"),
            1.0,
            "{counts:?}"
        );
        let failures: f64 = counts
            .iter()
            .filter(|(k, _)| k.starts_with("portcullis_auth_failures_total{reason="))
            .map(|(_, v)| v)
            .sum();
        assert_eq!(failures, 1.0, "{counts:?}");
        assert!(
            counts.contains_key("portcullis_audit_queue_depth{}"),
            "{counts:?}"
        );
    }
}
