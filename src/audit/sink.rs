//! Where sealed records go. Sinks run on the audit thread, never on a request path, so they may
//! block (write a file, call a database) without slowing requests down.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::chain::{AuditEntry, AuditRecord};

/// A destination for audit records: the tracing subscriber, a file, a database, a queue.
///
/// Implement it for your own destination. Calls come from the audit thread, in chain order; a
/// call may block. An error is counted and reported through `tracing` (target
/// `portcullis::audit`); the records of a failed batch are not retried.
pub trait AuditSink: Send + 'static {
    /// Writes records, oldest first.
    fn write(&mut self, records: &[AuditRecord]) -> io::Result<()>;

    /// Makes what was written durable. Called when the queue goes idle and on shutdown.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// The last sealed line this sink kept from an earlier run, so the chain continues across
    /// restarts instead of starting over (only the first sink asked that has one is used).
    fn last_line(&mut self) -> Option<String> {
        None
    }
}

/// Emits each record as a `tracing` event with target `audit` and structured fields (INFO for
/// requests, WARN for alerts). The default sink.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingSink;

impl AuditSink for TracingSink {
    fn write(&mut self, records: &[AuditRecord]) -> io::Result<()> {
        for record in records {
            match record.entry() {
                AuditEntry::Request(e) => tracing::info!(
                    target: "audit",
                    seq = record.seq(),
                    request_id = %e.request_id,
                    method = %e.method,
                    route = e.route.as_deref(),
                    path = ?e.path,
                    status = e.status,
                    outcome = e.outcome.as_str(),
                    layer = e.layer.as_deref(),
                    reason = e.reason.as_deref(),
                    subject = e.principal.as_ref().map(|p| tracing::field::debug(&p.subject)),
                    issuer = e.principal.as_ref().and_then(|p| p.issuer.as_deref()),
                    auth_method = e.principal.as_ref().map(|p| p.method),
                    api_key_id = e.principal.as_ref().and_then(|p| p.api_key_id.as_deref()),
                    attempted_user = e.attempted_user.as_deref(),
                    client_ip = e.client_ip.map(tracing::field::display),
                    user_agent = e.user_agent.as_deref().map(tracing::field::debug),
                    latency_us = e.latency_us,
                    redacted = e.redacted,
                    hash = record.hash(),
                    "request"
                ),
                AuditEntry::Alert(a) => tracing::warn!(
                    target: "audit",
                    seq = record.seq(),
                    alert = a.alert.as_str(),
                    key = ?a.key,
                    count = a.count,
                    window_secs = a.window_secs,
                    request_id = %a.request_id,
                    hash = record.hash(),
                    "security alert"
                ),
                AuditEntry::Gap(g) => tracing::warn!(
                    target: "audit",
                    seq = record.seq(),
                    dropped = g.dropped,
                    hash = record.hash(),
                    "audit events dropped"
                ),
            }
        }
        Ok(())
    }
}

/// Writes each record as one JSON line to any writer (standard output, a socket, a pipe).
pub struct JsonLines<W> {
    writer: W,
    buffer: Vec<u8>,
}

impl<W: Write + Send + 'static> JsonLines<W> {
    /// Lines to `writer`, one `write_all` per batch.
    pub fn new(writer: W) -> Self {
        Self {
            writer,
            buffer: Vec::new(),
        }
    }
}

impl JsonLines<io::Stdout> {
    /// Lines to standard output.
    pub fn stdout() -> Self {
        Self::new(io::stdout())
    }
}

impl<W> fmt::Debug for JsonLines<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLines").finish_non_exhaustive()
    }
}

impl<W: Write + Send + 'static> AuditSink for JsonLines<W> {
    fn write(&mut self, records: &[AuditRecord]) -> io::Result<()> {
        self.buffer.clear();
        for record in records {
            self.buffer.extend_from_slice(record.json().as_bytes());
            self.buffer.push(b'\n');
        }
        self.writer.write_all(&self.buffer)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// When the file sink asks the disk to make writes durable (`fsync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fsync {
    /// After every batch: nothing acknowledged by the disk is lost on a power cut; slowest.
    EveryBatch,
    /// At most this long after a write (and when the queue goes idle, and on shutdown).
    Interval(Duration),
    /// Never explicitly (except before a rotation): the OS decides. A crashed *process* loses
    /// nothing either way (writes go straight to the file); a power cut may.
    Never,
}

/// An append-only JSON Lines file with size-based rotation.
///
/// When a write would take the file past `max_bytes`, it is renamed to `NAME.1` (the old
/// `NAME.1` to `NAME.2`, ..., keeping `keep` old files) and a new one is started; the chain
/// continues across files, so verify them together, oldest first. On start the chain continues
/// from the file's last line (a line cut by a crash is removed when the file is opened, with a
/// warning). The file
/// is locked while open: a second writer on the same path is refused instead of interleaving
/// two chains. On Unix new files are created with mode `0600`.
///
/// A failed write is rolled back to the last complete line; a failed rotation is logged and
/// the current file keeps growing until a rotation succeeds (tried again at most once a minute).
pub struct JsonLinesFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: usize,
    fsync: Fsync,
    last_sync: Instant,
    unsynced: bool,
    buffer: Vec<u8>,
    rotation_failed: Option<Instant>,
}

/// Configures a [`JsonLinesFile`].
#[derive(Clone, Debug)]
#[must_use]
pub struct JsonLinesFileBuilder {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    fsync: Fsync,
}

impl JsonLinesFile {
    /// Starts configuring a file sink at `path`. Defaults: rotate at 100 MiB, keep 10 old files,
    /// `fsync` at most one second after a write.
    pub fn builder(path: impl Into<PathBuf>) -> JsonLinesFileBuilder {
        JsonLinesFileBuilder {
            path: path.into(),
            max_bytes: 100 << 20,
            keep: 10,
            fsync: Fsync::Interval(Duration::from_secs(1)),
        }
    }

    /// The files of a rotated log, oldest first, as [`verify_files`](super::verify_files)
    /// wants them: `NAME.k`, ..., `NAME.1`, `NAME` (those that exist).
    pub fn rotated_files(path: impl AsRef<Path>) -> Vec<PathBuf> {
        let path = path.as_ref();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let prefix = match path.file_name() {
            Some(name) => format!("{}.", name.to_string_lossy()),
            None => return Vec::new(),
        };
        // Every `NAME.N` there is, so a missing middle file shows up as a gap in the chain
        // instead of silently ending the list.
        let mut numbered: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let n = name.strip_prefix(&prefix)?.parse::<u64>().ok()?;
                Some((n, entry.path()))
            })
            .collect();
        numbered.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
        let mut files: Vec<PathBuf> = numbered.into_iter().map(|(_, p)| p).collect();
        if path.exists() {
            files.push(path.to_owned());
        }
        files
    }

    fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Whether a failed rotation is waiting out its minute before the next try.
    fn rotation_cooling(&self) -> bool {
        self.rotation_failed
            .is_some_and(|at| at.elapsed() < Duration::from_secs(60))
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.rotation_cooling() {
            return Ok(());
        }
        if let Err(error) = self.try_rotate() {
            tracing::error!(
                target: "portcullis::audit",
                path = %self.path.display(),
                %error,
                "audit log rotation failed; appending to the current file"
            );
            self.rotation_failed = Some(Instant::now());
        }
        Ok(())
    }

    /// The new file is created and locked before anything is renamed, and the old one is put
    /// back if the swap fails, so a failure never leaves the sink writing to a renamed or
    /// deleted file.
    fn try_rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let fresh_path = {
            let mut name = self.path.as_os_str().to_owned();
            name.push(".new");
            PathBuf::from(name)
        };
        let fresh = open_locked(&fresh_path)?;
        fresh.set_len(0)?;
        let moved = if self.keep == 0 {
            fs::remove_file(&self.path)
        } else {
            for n in (1..self.keep).rev() {
                let from = numbered(&self.path, n);
                if from.exists() {
                    fs::rename(&from, numbered(&self.path, n + 1))?;
                }
            }
            fs::rename(&self.path, numbered(&self.path, 1))
        };
        if let Err(error) = moved {
            let _ = fs::remove_file(&fresh_path);
            return Err(error);
        }
        if let Err(error) = fs::rename(&fresh_path, &self.path) {
            if self.keep > 0 {
                let _ = fs::rename(numbered(&self.path, 1), &self.path);
            }
            return Err(error);
        }
        self.file = fresh;
        self.size = 0;
        self.unsynced = false;
        self.rotation_failed = None;
        Ok(())
    }

    fn write_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.buffer);
        let len = self.buffer.len() as u64;
        self.buffer.clear();
        match written {
            Ok(()) => {
                self.size += len;
                self.unsynced = true;
                Ok(())
            }
            Err(error) => {
                // A partial write (disk full) would leave a cut line for the next record to be
                // glued onto: roll the file back to its last complete line.
                let _ = self.file.set_len(self.size);
                Err(error)
            }
        }
    }
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Opens for appending and takes the file's exclusive lock, so two writers never share it.
fn open_locked(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true).read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "another writer holds this audit log open",
        )),
        Err(std::fs::TryLockError::Error(error)) => Err(error),
    }
}

/// The last complete line of `bytes` (which ends with a newline), if any.
fn last_complete_line(mut bytes: Vec<u8>) -> Option<String> {
    if bytes.pop() != Some(b'\n') {
        return None;
    }
    let begin = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let line = bytes.split_off(begin);
    if line.is_empty() {
        return None;
    }
    String::from_utf8(line).ok()
}

/// Up to the last MiB of `file`.
fn tail(file: &mut File, size: u64) -> Option<Vec<u8>> {
    const TAIL: u64 = 1 << 20;
    let start = size.saturating_sub(TAIL);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(start)).ok()?;
    file.take(TAIL).read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

impl JsonLinesFileBuilder {
    /// Rotates when the file would grow past this many bytes (a single record larger than this
    /// still gets a file of its own).
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes.max(1);
        self
    }

    /// How many rotated files to keep (0: none, the log is cut at each rotation).
    pub fn keep(mut self, files: usize) -> Self {
        self.keep = files;
        self
    }

    /// When to `fsync`.
    pub fn fsync(mut self, policy: Fsync) -> Self {
        self.fsync = policy;
        self
    }

    /// Opens (or creates) the file for appending.
    pub fn open(self) -> io::Result<JsonLinesFile> {
        let mut file = open_locked(&self.path)?;
        let mut size = file.metadata()?.len();
        // A process killed mid-write leaves a cut line: remove it, so the next record starts on
        // a line of its own (it was never a complete record).
        if let Some(bytes) = tail(&mut file, size)
            && bytes.last().is_some_and(|b| *b != b'\n')
        {
            let cut = bytes.len() - bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            tracing::warn!(
                target: "portcullis::audit",
                path = %self.path.display(),
                bytes = cut,
                "removing a record cut short by a crash from the end of the audit log"
            );
            size -= cut as u64;
            file.set_len(size)?;
        }
        Ok(JsonLinesFile {
            path: self.path,
            file,
            size,
            max_bytes: self.max_bytes,
            keep: self.keep,
            fsync: self.fsync,
            last_sync: Instant::now(),
            unsynced: false,
            buffer: Vec::new(),
            rotation_failed: None,
        })
    }
}

impl fmt::Debug for JsonLinesFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonLinesFile")
            .field("path", &self.path)
            .field("max_bytes", &self.max_bytes)
            .field("keep", &self.keep)
            .field("fsync", &self.fsync)
            .finish_non_exhaustive()
    }
}

impl AuditSink for JsonLinesFile {
    fn write(&mut self, records: &[AuditRecord]) -> io::Result<()> {
        for record in records {
            let len = record.json().len() as u64 + 1;
            let pending = self.size + self.buffer.len() as u64;
            if pending > 0 && pending + len > self.max_bytes && !self.rotation_cooling() {
                self.write_buffer()?;
                self.rotate()?;
            }
            self.buffer.extend_from_slice(record.json().as_bytes());
            self.buffer.push(b'\n');
        }
        self.write_buffer()?;
        match self.fsync {
            Fsync::EveryBatch => self.sync(),
            Fsync::Interval(every) if self.last_sync.elapsed() >= every => self.sync(),
            Fsync::Interval(_) | Fsync::Never => Ok(()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.fsync {
            Fsync::Never => Ok(()),
            _ => self.sync(),
        }
    }

    fn last_line(&mut self) -> Option<String> {
        let bytes = tail(&mut self.file, self.size)?;
        if let Some(line) = last_complete_line(bytes) {
            return Some(line);
        }
        // Empty (just rotated, or created by hand): the chain goes on from the previous file.
        let mut previous = File::open(numbered(&self.path, 1)).ok()?;
        let size = previous.metadata().ok()?.len();
        last_complete_line(tail(&mut previous, size)?)
    }
}

/// Keeps the most recent records in memory, for an admin endpoint or a test. Clone it: one
/// clone goes to the audit layer as a sink, the other reads.
#[derive(Clone, Debug)]
pub struct RecentEvents {
    records: Arc<Mutex<VecDeque<AuditRecord>>>,
    capacity: usize,
}

impl RecentEvents {
    /// Keeps the last `capacity` records.
    pub fn new(capacity: usize) -> Self {
        Self {
            records: Arc::new(Mutex::new(VecDeque::with_capacity(capacity.min(4096)))),
            capacity,
        }
    }

    /// The records kept, oldest first.
    pub fn records(&self) -> Vec<AuditRecord> {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        records.iter().cloned().collect()
    }
}

impl AuditSink for RecentEvents {
    fn write(&mut self, new: &[AuditRecord]) -> io::Result<()> {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the batch's last `capacity` records can stay: the others are not copied at all.
        let kept = &new[new.len().saturating_sub(self.capacity)..];
        for record in kept {
            if records.len() == self.capacity {
                records.pop_front();
            }
            records.push_back(record.clone());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::audit::chain::{AuditGap, Chain};
    use crate::audit::{AuditEntry, AuditKey};

    fn records(count: u64) -> Vec<AuditRecord> {
        let mut chain = Chain::new(AuditKey::new([7; 32]).unwrap(), None);
        (1..=count)
            .map(|dropped| {
                let gap = AuditGap {
                    dropped,
                    first: SystemTime::UNIX_EPOCH,
                    last: SystemTime::UNIX_EPOCH,
                };
                chain.seal(AuditEntry::Gap(gap)).unwrap()
            })
            .collect()
    }

    /// A batch longer than the capacity keeps its last records, oldest first, as records
    /// written one by one would; a capacity of 0 keeps none.
    #[test]
    fn recent_events_keep_the_last_records_of_any_batch() {
        let all = records(7);
        for capacity in [0, 1, 3, 7, 10] {
            let mut batched = RecentEvents::new(capacity);
            let mut one_by_one = RecentEvents::new(capacity);
            batched.write(&all[..2]).unwrap();
            batched.write(&all[2..]).unwrap();
            for record in &all {
                one_by_one.write(std::slice::from_ref(record)).unwrap();
            }
            let seqs = |recent: &RecentEvents| -> Vec<u64> {
                recent.records().iter().map(AuditRecord::seq).collect()
            };
            let expected: Vec<u64> = (1..=7).skip(7 - capacity.min(7)).collect();
            assert_eq!(seqs(&batched), expected, "capacity {capacity}");
            assert_eq!(seqs(&one_by_one), expected, "capacity {capacity}");
        }
    }
}
