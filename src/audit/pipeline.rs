//! The bounded queue between requests and sinks, and the audit thread that drains it.
//!
//! The audit thread is a plain OS thread (with a small single-threaded tokio runtime for its
//! timers), not a task on the server's runtime: a sink that blocks on a disk or a database then
//! blocks only that thread, never a request.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::alert::{Detector, SecurityAlert};
use super::chain::{AuditEntry, AuditGap, AuditKey, AuditRecord, Chain};
use super::event::RawEvent;
use super::sink::AuditSink;
use crate::scrub::Scrubber;

/// Records written per sink call, at most.
const BATCH: usize = 256;
/// How often a busy audit thread drains the queue.
const TICK: Duration = Duration::from_millis(1);
/// Empty ticks before the audit thread parks until the next event.
const IDLE_TICKS: u32 = 50;
/// How long the queue must stay idle before sinks are flushed.
const IDLE_FLUSH: Duration = Duration::from_millis(200);

/// What happens to an event when the queue is full (a sink is slower than the traffic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop the event and count it ([`AuditStats::dropped`], metric
    /// `portcullis_audit_dropped_total`): requests never wait for the audit trail.
    Drop,
    /// Hold the response up to this long for room in the queue, then drop and count: trades
    /// latency for completeness under bursts.
    Wait(Duration),
}

pub(crate) type AlertCallback = Arc<dyn Fn(&SecurityAlert) + Send + Sync>;

/// Event boxes the audit thread has finished with, for the request path to fill again.
///
/// Recycling rather than allocating per request matters twice: the request path skips the
/// allocations, and the audit thread no longer frees memory the request threads allocated,
/// which with glibc's allocator takes a lock those threads need for their own allocations (it
/// showed up as a tenth of the request thread's time in futex calls under load). Bounded: a box
/// the pool has no room for is simply freed.
pub(crate) struct EventPool(crossbeam_queue::ArrayQueue<Box<RawEvent>>);

/// Enough boxes for the events in flight between two drains of the queue at a high rate.
const POOL_SIZE: usize = 1024;

impl EventPool {
    pub(crate) fn new() -> Self {
        Self(crossbeam_queue::ArrayQueue::new(POOL_SIZE))
    }

    /// A recycled box, or a new one when none is free.
    pub(crate) fn take(&self) -> Box<RawEvent> {
        self.0.pop().unwrap_or_else(|| Box::new(RawEvent::empty()))
    }

    pub(crate) fn give_back(&self, mut event: Box<RawEvent>) {
        event.recycle();
        let _ = self.0.push(event);
    }
}

pub(crate) enum Message {
    Event(Box<RawEvent>),
    Flush(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) dropped: AtomicU64,
    /// Drops not yet sealed as a gap record. A lock, not atomics: the count and the two times
    /// must move together, and only requests that lose their event (the queue is full) take it.
    unsealed: Mutex<Option<AuditGap>>,
    written: AtomicU64,
    last_seq: AtomicU64,
    sink_errors: AtomicU64,
    alerts: AtomicU64,
}

/// Counts since the audit layer was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditStats {
    /// Events taken into the queue.
    pub accepted: u64,
    /// Events dropped: queue full (per the [`Overflow`] policy) or audit shut down.
    pub dropped: u64,
    /// Records (events and alerts) written by every sink without an error.
    pub written: u64,
    /// Sequence number of the last record sealed: note it outside the log (it is also logged
    /// when the audit trail closes, and a metric), since records cut from the end of a log
    /// cannot be seen in the log itself.
    pub last_seq: u64,
    /// Sink calls that failed (or panicked).
    pub sink_errors: u64,
    /// Security alerts raised.
    pub alerts: u64,
}

/// Controls the audit thread: flush it, shut it down, read its counts.
///
/// Shut down after the server has drained its connections (`axum::serve(..)
/// .with_graceful_shutdown(..)`): [`shutdown`](Self::shutdown) returns once every accepted
/// event is written and flushed.
#[derive(Clone)]
pub struct AuditHandle {
    /// One `Arc`: every request's response future holds a handle, and cloning a channel
    /// sender, a watch receiver and two `Arc`s per request cost more than one increment.
    pub(crate) inner: Arc<HandleInner>,
}

pub(crate) struct HandleInner {
    pub(crate) queue: mpsc::Sender<Message>,
    /// The audit thread's work, until the thread is started: when the layer is first applied
    /// (or the handle first flushed), not when it is built.
    pub(crate) unstarted: Mutex<Option<(Worker, mpsc::Receiver<Message>)>>,
    /// Turns true when the audit thread has written, flushed and stopped.
    pub(crate) finished: tokio::sync::watch::Receiver<bool>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) overflow: Overflow,
    pub(crate) capacity: usize,
    pub(crate) pool: Arc<EventPool>,
}

impl fmt::Debug for AuditHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditHandle")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl AuditHandle {
    /// Starts the audit thread unless it runs already. If the thread cannot be started, that is
    /// logged and every event is dropped and counted (never a hang: waiting for the trail
    /// returns at once).
    pub(crate) fn start(&self) {
        // Held while the thread starts: a concurrent `layer()` returns only once it runs (or
        // has failed, so its service's events are counted as dropped, none accepted and lost).
        let mut unstarted = self
            .inner
            .unstarted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((worker, queue)) = unstarted.take()
            && let Err(error) = worker.spawn(queue)
        {
            tracing::error!(
                target: "portcullis::audit",
                %error,
                "the audit thread could not be started: every event is dropped"
            );
        }
    }

    /// Waits until every event accepted so far is written and the sinks flushed.
    pub async fn flush(&self) {
        self.start();
        let (done, wait) = oneshot::channel();
        if self.inner.queue.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        } else {
            self.finished().await;
        }
    }

    /// Writes and flushes every accepted event, closes the sinks (a file sink releases its lock,
    /// so the same log can be opened again at once), then stops the audit thread. Events that arrive
    /// later are dropped and counted. Calling it again returns at once. A sink that never
    /// returns keeps this waiting: bound it with `tokio::time::timeout` if a sink may hang.
    pub async fn shutdown(&self) {
        self.start();
        let (done, wait) = oneshot::channel();
        if self.inner.queue.send(Message::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        } else {
            // Another caller's shutdown is under way (or done): wait for it to finish.
            self.finished().await;
        }
    }

    async fn finished(&self) {
        let mut finished = self.inner.finished.clone();
        let _ = finished.wait_for(|done| *done).await;
    }

    /// The counts so far.
    pub fn stats(&self) -> AuditStats {
        let c = &self.inner.counters;
        AuditStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            last_seq: c.last_seq.load(Ordering::Relaxed),
            sink_errors: c.sink_errors.load(Ordering::Relaxed),
            alerts: c.alerts.load(Ordering::Relaxed),
        }
    }

    /// Events waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.inner.capacity - self.inner.queue.capacity()
    }

    /// Hands an event over without waiting; `Err` gives it back when the queue is full.
    pub(crate) fn try_submit(&self, event: Box<RawEvent>) -> Result<(), Box<RawEvent>> {
        match self.inner.queue.try_send(Message::Event(event)) {
            Ok(()) => {
                self.inner.counters.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(Message::Event(event))) => Err(event),
            Err(_) => {
                self.dropped();
                Ok(())
            }
        }
    }

    /// Hands an event over, waiting up to `deadline` for room; drops and counts it after that.
    pub(crate) async fn submit_within(&self, event: Box<RawEvent>, deadline: Duration) {
        /// Counts the event as dropped if the wait itself is dropped (the client went away).
        struct Unsent<'a>(&'a AuditHandle, bool);
        impl Drop for Unsent<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.dropped();
                }
            }
        }
        let mut unsent = Unsent(self, false);
        let sent = self
            .inner
            .queue
            .send_timeout(Message::Event(event), deadline)
            .await;
        unsent.1 = true;
        match sent {
            Ok(()) => {
                self.inner.counters.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => self.dropped(),
        }
    }

    /// Counts a lost event; the audit thread seals the loss into the chain as a gap record.
    pub(crate) fn dropped(&self) {
        let now = SystemTime::now();
        let counters = &self.inner.counters;
        {
            let mut unsealed = counters
                .unsealed
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let gap = unsealed.get_or_insert(AuditGap {
                dropped: 0,
                first: now,
                last: now,
            });
            gap.dropped += 1;
            gap.last = now;
        }
        counters.dropped.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("portcullis_audit_dropped_total").increment(1);
    }
}

/// Everything the audit thread owns.
pub(crate) struct Worker {
    pub(crate) sinks: Vec<Box<dyn AuditSink>>,
    pub(crate) chain: Chain,
    pub(crate) key: AuditKey,
    pub(crate) detector: Detector,
    pub(crate) on_alert: Option<AlertCallback>,
    pub(crate) scrubber: Scrubber,
    pub(crate) counters: Arc<Counters>,
    pub(crate) finished: tokio::sync::watch::Sender<bool>,
    pub(crate) pool: Arc<EventPool>,
    /// Drops sealed since the last warning, and when that warning was logged.
    pub(crate) unwarned: u64,
    pub(crate) last_warning: Option<Instant>,
}

/// At most one warning about dropped events per this interval (each gap is also a record).
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

impl Worker {
    /// Starts the audit thread.
    pub(crate) fn spawn(mut self, mut queue: mpsc::Receiver<Message>) -> std::io::Result<()> {
        if let Some(line) = self.sinks.iter_mut().find_map(|s| s.last_line()) {
            self.chain.resume_after(&line);
            let (seq, _) = self.chain.head();
            self.counters.last_seq.store(seq, Ordering::Relaxed);
        }
        // The runtime is built on the new thread: one dropped here, when the thread cannot be
        // started, would panic inside the caller's async context.
        std::thread::Builder::new()
            .name("portcullis-audit".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(self.run(&mut queue)),
                    // The queue and the `finished` sender go with `self`: senders count their
                    // events as dropped, and waiting for the trail returns at once.
                    Err(error) => tracing::error!(
                        target: "portcullis::audit",
                        %error,
                        "the audit thread could not start its runtime: every event is dropped"
                    ),
                }
            })?;
        Ok(())
    }

    async fn run(mut self, queue: &mut mpsc::Receiver<Message>) {
        let mut messages = Vec::with_capacity(BATCH);
        let mut records = Vec::with_capacity(BATCH);
        let mut unflushed = false;
        let mut idle = 0;
        let mut closing = false;
        loop {
            messages.clear();
            let received = if unflushed {
                match tokio::time::timeout(IDLE_FLUSH, receive(queue, &mut messages, &mut idle))
                    .await
                {
                    Ok(n) => n,
                    Err(_) => {
                        // Idle: drops since the last batch (a request that gave up waiting for
                        // room) are sealed now, not when the next event comes.
                        self.seal_gap(&mut records);
                        self.write(&mut records);
                        self.flush_sinks();
                        unflushed = false;
                        continue;
                    }
                }
            } else {
                receive(queue, &mut messages, &mut idle).await
            };
            if received == 0 {
                // Every sender is gone: the layer was dropped without a shutdown.
                self.seal_gap(&mut records);
                self.write(&mut records);
                self.flush_sinks();
                self.report_head();
                self.close_sinks();
                self.finished.send_replace(true);
                return;
            }
            #[cfg(feature = "metrics")]
            metrics::gauge!("portcullis_audit_queue_depth").set(queue.len() as f64);
            let mut flushes = Vec::new();
            let mut shutdowns = Vec::new();
            for message in messages.drain(..) {
                match message {
                    Message::Event(raw) => self.seal_guarded(raw, &mut records),
                    Message::Flush(done) => flushes.push(done),
                    Message::Shutdown(done) => shutdowns.push(done),
                }
            }
            if !shutdowns.is_empty() {
                closing = true;
                queue.close();
                // Whatever was queued before the close was accepted: write it too.
                while let Some(message) = queue.recv().await {
                    match message {
                        Message::Event(raw) => self.seal_guarded(raw, &mut records),
                        Message::Flush(done) => flushes.push(done),
                        Message::Shutdown(done) => shutdowns.push(done),
                    }
                }
            }
            // Events dropped while this batch waited in the full queue: after it in the chain.
            self.seal_gap(&mut records);
            self.write(&mut records);
            if !flushes.is_empty() || !shutdowns.is_empty() {
                self.flush_sinks();
                unflushed = false;
            } else {
                unflushed = true;
            }
            if closing {
                self.report_head();
                self.close_sinks();
            }
            // Answered only once everything before them is written and flushed (and, for a
            // shutdown, the sinks closed).
            for done in flushes.drain(..).chain(shutdowns.drain(..)) {
                let _ = done.send(());
            }
            if closing {
                self.finished.send_replace(true);
                return;
            }
        }
    }

    /// Seals one event; a panic while building it (a scrubber, a detector, a metrics recorder)
    /// costs that event, counted and logged, never the audit thread.
    fn seal_guarded(&mut self, raw: Box<RawEvent>, records: &mut Vec<AuditRecord>) {
        if catch_unwind(AssertUnwindSafe(|| self.seal_event(&raw, records))).is_err() {
            self.counters.sink_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: "portcullis::audit", "building an audit event panicked; the event is lost");
        }
        self.pool.give_back(raw);
    }

    /// Logs the head of the chain: an external witness to compare a log's last record with
    /// (cutting records off the end of a log is not visible in the log itself).
    fn report_head(&self) {
        let (seq, hash) = self.chain.head();
        tracing::info!(target: "portcullis::audit", last_seq = seq, last_hash = %hash, "audit trail closed");
    }

    fn seal_event(&mut self, raw: &RawEvent, records: &mut Vec<AuditRecord>) {
        let scrubber = &self.scrubber;
        let key = &self.key;
        let event = raw.to_event(
            |text| scrubber.scrub(text).0.into_owned(),
            |user| key.fingerprint(user),
        );
        #[cfg(feature = "metrics")]
        record_metrics(&event);
        let alerts = self.detector.observe(&event, Instant::now());
        self.seal(AuditEntry::Request(event), records);
        for alert in alerts {
            self.counters.alerts.fetch_add(1, Ordering::Relaxed);
            #[cfg(feature = "metrics")]
            metrics::counter!("portcullis_security_alerts_total", "alert" => alert.alert.as_str())
                .increment(1);
            if let Some(callback) = &self.on_alert
                && catch_unwind(AssertUnwindSafe(|| callback(&alert))).is_err()
            {
                tracing::error!(target: "portcullis::audit", "the alert callback panicked");
            }
            self.seal(AuditEntry::Alert(alert), records);
        }
    }

    /// Seals the events dropped since the last gap record as one gap record, and warns at most
    /// once per [`DROP_WARNING_INTERVAL`].
    fn seal_gap(&mut self, records: &mut Vec<AuditRecord>) {
        let gap = self
            .counters
            .unsealed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(gap) = gap else {
            return;
        };
        self.unwarned += gap.dropped;
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|at| now.duration_since(at) >= DROP_WARNING_INTERVAL)
        {
            tracing::warn!(
                target: "portcullis::audit",
                dropped = self.unwarned,
                "audit events dropped: the audit queue was full; each loss is sealed in the chain as a gap record"
            );
            self.unwarned = 0;
            self.last_warning = Some(now);
        }
        #[cfg(feature = "metrics")]
        metrics::counter!("portcullis_audit_gaps_total").increment(1);
        self.seal(AuditEntry::Gap(gap), records);
    }

    fn seal(&mut self, entry: AuditEntry, records: &mut Vec<AuditRecord>) {
        match self.chain.seal(entry) {
            Ok(record) => {
                self.counters
                    .last_seq
                    .store(record.seq(), Ordering::Relaxed);
                #[cfg(feature = "metrics")]
                metrics::gauge!("portcullis_audit_last_seq").set(record.seq() as f64);
                records.push(record);
            }
            Err(error) => {
                tracing::error!(target: "portcullis::audit", %error, "an audit record could not be serialized");
                self.counters.sink_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn write(&mut self, records: &mut Vec<AuditRecord>) {
        if records.is_empty() {
            return;
        }
        let mut all_written = true;
        for sink in &mut self.sinks {
            let result = catch_unwind(AssertUnwindSafe(|| sink.write(records)));
            if !matches!(result, Ok(Ok(()))) {
                all_written = false;
                self.counters.sink_errors.fetch_add(1, Ordering::Relaxed);
                report(result);
            }
        }
        if all_written {
            self.counters
                .written
                .fetch_add(records.len() as u64, Ordering::Relaxed);
        }
        records.clear();
    }

    /// Drops the sinks before a shutdown is answered, so that what they hold (a file sink's
    /// exclusive lock) is released by then: a caller that reopens the same log right after
    /// `shutdown()` must not find it still locked.
    fn close_sinks(&mut self) {
        if catch_unwind(AssertUnwindSafe(|| self.sinks.clear())).is_err() {
            self.counters.sink_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(target: "portcullis::audit", "an audit sink panicked while closing");
        }
    }

    fn flush_sinks(&mut self) {
        for sink in &mut self.sinks {
            let result = catch_unwind(AssertUnwindSafe(|| sink.flush()));
            if !matches!(result, Ok(Ok(()))) {
                self.counters.sink_errors.fetch_add(1, Ordering::Relaxed);
                report(result);
            }
        }
    }
}

/// Waits for the next messages. While events keep coming the queue is drained on a short tick
/// rather than woken per event: a parked receiver makes every sender wake it (a futex system call
/// on the request path), a ticking one costs senders nothing. After `IDLE_TICKS` empty ticks it
/// parks again, so an idle service does not spin. Returns 0 when every sender is gone.
async fn receive(
    queue: &mut mpsc::Receiver<Message>,
    messages: &mut Vec<Message>,
    idle: &mut u32,
) -> usize {
    loop {
        while messages.len() < BATCH {
            match queue.try_recv() {
                Ok(message) => messages.push(message),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return messages.len(),
            }
        }
        if !messages.is_empty() {
            *idle = 0;
            return messages.len();
        }
        if *idle < IDLE_TICKS {
            *idle += 1;
            tokio::time::sleep(TICK).await;
            continue;
        }
        return queue.recv_many(messages, BATCH).await;
    }
}

fn report(result: std::thread::Result<std::io::Result<()>>) {
    #[cfg(feature = "metrics")]
    metrics::counter!("portcullis_audit_sink_errors_total").increment(1);
    match result {
        Ok(Err(error)) => {
            tracing::error!(target: "portcullis::audit", %error, "an audit sink failed");
        }
        _ => tracing::error!(target: "portcullis::audit", "an audit sink panicked"),
    }
}

#[cfg(feature = "metrics")]
fn record_metrics(event: &super::AuditEvent) {
    use super::Outcome;
    let layer = event.layer.clone().unwrap_or("none".into());
    metrics::counter!(
        "portcullis_requests_total",
        "outcome" => event.outcome.as_str(),
        "layer" => layer.clone(),
    )
    .increment(1);
    match event.outcome {
        Outcome::Unauthenticated => {
            let reason = event.reason.clone().unwrap_or("unknown".into());
            metrics::counter!("portcullis_auth_failures_total", "reason" => reason).increment(1);
        }
        Outcome::RateLimited => {
            metrics::counter!("portcullis_rate_limited_total", "layer" => layer).increment(1);
        }
        _ => {}
    }
}
