//! One tamper-evident audit event per request, security alerts and metrics.
//!
//! [`AuditLayer`] goes outermost (inside only a request-id or tracing layer of your own). For
//! every request, allowed or refused, abandoned or failed, it records one [`AuditEvent`]: time,
//! [`RequestId`] (the caller's `X-Request-Id` when safe, else generated, and echoed in the
//! response), principal (subject, issuer, method, API key id: never a credential), client IP,
//! method, matched route and path (never the query), status, [`Outcome`], the deciding layer and
//! its reason, latency and `User-Agent`. It learns what the inner layers decided from what they
//! leave in the response extensions ([`Decision`](crate::Decision),
//! [`Rejection`](crate::Rejection), [`Identity`](crate::Identity), [`ClientIp`](crate::ClientIp),
//! [`Redactions`](crate::Redactions)), so it needs no configuration of its own for them.
//!
//! The request path only clones a few reference-counted values and hands them to a bounded
//! queue; a dedicated audit thread builds the event, scrubs free text (path, `User-Agent`) with
//! the [redaction](crate::RedactLayer) detectors, seals it into the hash chain and writes it to the
//! [`AuditSink`]s. A slow or stuck sink never slows requests: when the queue is full the event
//! is dropped and counted, or the response waits up to a deadline ([`Overflow`]).
//! [`AuditHandle::shutdown`] writes and flushes everything accepted.
//!
//! **Tamper evidence.** Each record carries a sequence number and an HMAC-SHA256 (under your
//! [`AuditKey`]) over its own bytes and the previous record's hash. [`verify`] and
//! [`verify_files`] (and `cargo run --example audit_verify -- FILE...`) report the first
//! edited, missing, inserted or reordered record. What a chain cannot show: records cut from the
//! *end* (compare [`ChainSummary::last_seq`] with the service's count) and a log rewritten by
//! someone holding the key.
//!
//! **Alerts.** [`AlertRules`] raise a [`SecurityAlert`] (a record in the chain, and a callback)
//! for repeated authentication failures per client address or per user name, a spike of 403s
//! for one subject (enumeration), and lockouts.
//!
//! **Metrics** (feature `metrics`, through the `metrics` facade): `portcullis_requests_total`
//! (labels `outcome`, `layer`), `portcullis_auth_failures_total` (`reason`),
//! `portcullis_rate_limited_total` (`layer`), `portcullis_security_alerts_total` (`alert`),
//! `portcullis_audit_queue_depth`, `portcullis_audit_dropped_total` and
//! `portcullis_audit_sink_errors_total`.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use portcullis::audit::{AuditKey, AuditLayer, JsonLinesFile, RecentEvents, verify_files};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("portcullis-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("audit.jsonl");
//! let key = AuditKey::new(b"an audit key of at least 32 bytes!!")?;
//! let recent = RecentEvents::new(100);
//! let audit = AuditLayer::builder(key.clone())
//!     .sink(JsonLinesFile::builder(&path).open()?)
//!     .sink(recent.clone())
//!     .build()?;
//! let handle = audit.handle();
//! let app: Router = Router::new().route("/", get(|| async { "hi" })).layer(audit);
//!
//! # use tower::ServiceExt;
//! let response = app.oneshot(http::Request::new(axum::body::Body::empty())).await?;
//! assert!(response.headers().contains_key("x-request-id"));
//!
//! handle.shutdown().await; // after the server has drained
//! assert_eq!(recent.records().len(), 1);
//! let summary = verify_files(&key, &JsonLinesFile::rotated_files(&path))?;
//! assert_eq!(summary.records, 1);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

mod alert;
mod chain;
mod event;
mod future;
mod layer;
mod pipeline;
mod request_id;
mod service;
mod sink;

pub use alert::{AlertKind, AlertRules, SecurityAlert, Threshold};
pub use chain::{
    AuditEntry, AuditGap, AuditKey, AuditRecord, ChainBreak, ChainSummary, Problem, verify,
    verify_files, verify_replicas,
};
pub use event::{AuditEvent, Outcome, Principal};
pub use future::ResponseFuture;
pub use layer::{AuditLayer, AuditLayerBuilder};
pub use pipeline::{AuditHandle, AuditStats, Overflow};
pub use request_id::{RequestId, X_REQUEST_ID};
pub use service::Audit;
pub use sink::{
    AuditSink, Fsync, JsonLines, JsonLinesFile, JsonLinesFileBuilder, RecentEvents, TracingSink,
};
