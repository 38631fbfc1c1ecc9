use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tower_layer::Layer;

use super::alert::{AlertRules, Detector, SecurityAlert};
use super::chain::{AuditKey, Chain};
use super::pipeline::{
    AlertCallback, AuditHandle, Counters, EventPool, HandleInner, Overflow, Worker,
};
use super::service::Audit;
use super::sink::{AuditSink, TracingSink};
use crate::error::ConfigError;
use crate::request::forwarded::TrustedProxies;
use crate::scrub::Scrubber;

/// Records one sealed [`AuditEvent`](super::AuditEvent) per request and echoes its
/// [`RequestId`](super::RequestId); see the [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct AuditLayer {
    pub(super) handle: AuditHandle,
    pub(super) trust_request_id: bool,
    /// Set by `Portcullis::builder()` when a client-IP layer runs inside this one.
    pub(super) client_ip: Option<Arc<TrustedProxies>>,
}

impl AuditLayer {
    /// Starts configuring an audit layer whose chain is keyed with `key`.
    pub fn builder(key: AuditKey) -> AuditLayerBuilder {
        AuditLayerBuilder {
            key,
            sinks: Vec::new(),
            capacity: 8192,
            overflow: Overflow::Drop,
            alerts: AlertRules::default(),
            on_alert: None,
            scrubber: Scrubber::default(),
            trust_request_id: true,
            replica: None,
        }
    }

    /// The handle that flushes, shuts down and counts the audit thread.
    pub fn handle(&self) -> AuditHandle {
        self.handle.clone()
    }

    /// Resolves the client address itself, through the proxies the client-IP layer inside it
    /// trusts: a request that ends without an answer (the client went away) would otherwise be
    /// recorded with the proxy's address.
    pub(crate) fn resolve_client_ip(mut self, proxies: Arc<TrustedProxies>) -> Self {
        self.client_ip = Some(proxies);
        self
    }
}

impl fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLayer")
            .field("handle", &self.handle)
            .field("trust_request_id", &self.trust_request_id)
            .finish()
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = Audit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.handle.start();
        Audit {
            inner,
            handle: self.handle.clone(),
            trust_request_id: self.trust_request_id,
            client_ip: self.client_ip.clone(),
        }
    }
}

/// Configures an [`AuditLayer`].
#[must_use]
pub struct AuditLayerBuilder {
    key: AuditKey,
    sinks: Vec<Box<dyn AuditSink>>,
    capacity: usize,
    overflow: Overflow,
    alerts: AlertRules,
    on_alert: Option<AlertCallback>,
    scrubber: Scrubber,
    trust_request_id: bool,
    replica: Option<String>,
}

impl fmt::Debug for AuditLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLayerBuilder")
            .field("sinks", &self.sinks.len())
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("alerts", &self.alerts)
            .finish_non_exhaustive()
    }
}

impl AuditLayerBuilder {
    /// Adds a sink; records go to every sink, in the order added. Without any, records go to
    /// [`TracingSink`].
    pub fn sink(mut self, sink: impl AuditSink) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// How many events may wait for the sinks (default 8192; from 1 to 1 048 576).
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.capacity = events.clamp(1, 1 << 20);
        self
    }

    /// What to do when the queue is full (default [`Overflow::Drop`]).
    pub fn overflow(mut self, policy: Overflow) -> Self {
        self.overflow = policy;
        self
    }

    /// Which patterns raise security alerts (default [`AlertRules::default`]).
    pub fn alerts(mut self, rules: AlertRules) -> Self {
        self.alerts = rules;
        self
    }

    /// Calls `callback` with every alert, on the audit thread (alerts also go to the sinks).
    pub fn on_alert(mut self, callback: impl Fn(&SecurityAlert) + Send + Sync + 'static) -> Self {
        self.on_alert = Some(Arc::new(callback));
        self
    }

    /// The detectors that scrub free text (path, `User-Agent`): a
    /// [`RedactLayer`](crate::RedactLayer)'s, or any [`Scrubber`]; default: those of
    /// `RedactLayer::new`.
    pub fn scrubber(mut self, scrubber: impl Into<Scrubber>) -> Self {
        self.scrubber = scrubber.into();
        self
    }

    /// Ignore the caller's `X-Request-Id` and always generate one (default: keep an acceptable
    /// one, for tracing across services).
    pub fn generate_request_ids(mut self) -> Self {
        self.trust_request_id = false;
        self
    }

    /// Names this replica of the service in every record (`"replica":"a"`), so that the records
    /// of several replicas, in several files or in one collector's merged stream, verify replica
    /// by replica ([`verify_replicas`](super::verify_replicas)). 1 to 64 of `A-Z a-z 0-9 - _ .
    /// :`, checked by [`build`](Self::build). Give each replica its own id and its own file.
    pub fn replica(mut self, id: impl Into<String>) -> Self {
        self.replica = Some(id.into());
        self
    }

    /// Returns the layer. The audit thread starts when the layer is first applied to a service
    /// (or its handle first flushed or shut down), not here.
    pub fn build(mut self) -> Result<AuditLayer, ConfigError> {
        if let Some(replica) = &self.replica
            && (replica.is_empty()
                || replica.len() > 64
                || !replica
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
        {
            return Err(ConfigError::new(
                "an audit replica id is 1 to 64 of A-Z a-z 0-9 - _ . :",
            ));
        }
        if self.sinks.is_empty() {
            self.sinks.push(Box::new(TracingSink));
        }
        let (queue, receiver) = mpsc::channel(self.capacity);
        let counters = Arc::new(Counters::default());
        let pool = Arc::new(EventPool::new());
        let (finished_tx, finished) = tokio::sync::watch::channel(false);
        let worker = Worker {
            sinks: self.sinks,
            chain: Chain::new(self.key.clone(), self.replica.map(Into::into)),
            key: self.key,
            detector: Detector::new(self.alerts),
            on_alert: self.on_alert,
            scrubber: self.scrubber,
            counters: counters.clone(),
            finished: finished_tx,
            pool: pool.clone(),
            unwarned: 0,
            last_warning: None,
        };
        Ok(AuditLayer {
            handle: AuditHandle {
                inner: Arc::new(HandleInner {
                    queue,
                    unstarted: Mutex::new(Some((worker, receiver))),
                    finished,
                    counters,
                    overflow: self.overflow,
                    capacity: self.capacity,
                    pool,
                }),
            },
            trust_request_id: self.trust_request_id,
            client_ip: None,
        })
    }
}
