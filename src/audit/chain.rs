//! Tamper evidence: every record carries a sequence number and an HMAC chained to the record
//! before it, so editing, removing, inserting or reordering a line breaks the chain.
//!
//! A sealed line is `{"seq":N,<the entry's members>,"prev":"<64 hex>","hash":"<64 hex>"}` where
//! `hash` is HMAC-SHA256 under the audit key of every byte before `,"hash":`. A replica of a
//! service that runs several writes `{"seq":N,"replica":"<id>",...}`: each replica's records
//! form a chain of their own, so the files of several replicas, or one collector's merged
//! stream, verify replica by replica ([`verify_replicas`]). Hashing the exact
//! bytes written (not a re-serialization) means the verifier needs no canonical JSON form.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::alert::SecurityAlert;
use super::event::AuditEvent;
use crate::error::ConfigError;

type HmacSha256 = Hmac<Sha256>;

/// `prev` of the very first record.
const GENESIS: [u8; 32] = [0; 32];
/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;
/// Longest line the verifier reads; a longer one is reported as malformed.
const MAX_LINE: u64 = 1 << 20;

/// The secret that keys the audit chain. Keep it out of the log's reach: whoever holds it can
/// rewrite the log undetectably.
#[derive(Clone)]
pub struct AuditKey(Arc<[u8]>);

impl AuditKey {
    /// A key of at least 32 bytes (shorter keys are a configuration error).
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        crate::error::hmac_secret(secret.as_ref(), "the audit key must be at least 32 bytes")
            .map(Self)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; this cannot fail.
        HmacSha256::new_from_slice(&self.0).unwrap_or_else(|_| unreachable!())
    }

    /// A short keyed fingerprint (`hmac:` + 16 hex digits) that correlates equal values.
    pub(crate) fn fingerprint(&self, value: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(b"portcullis-audit-fingerprint\0");
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        format!("hmac:{}", hex(&digest[..8]))
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(..)")
    }
}

/// What a record holds: a request's event or a security alert.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
// Almost every entry is a request; boxing it would cost an allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
pub enum AuditEntry {
    /// One request.
    Request(AuditEvent),
    /// A pattern across requests worth a human's attention.
    Alert(SecurityAlert),
    /// Events lost before this record: they were dropped before they reached the chain.
    Gap(AuditGap),
}

/// Events that never reached the chain because the queue was full ([`Overflow`](super::Overflow)).
/// Sealed by the audit thread after the records accepted before the loss, so the loss is part of
/// the tamper-evident log and [`verify`] counts it. (Events that arrive once the audit trail has
/// closed are only counted in [`AuditStats::dropped`](super::AuditStats::dropped).)
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct AuditGap {
    /// How many events were dropped.
    pub dropped: u64,
    /// When the first of them was dropped.
    #[serde(serialize_with = "super::event::rfc3339")]
    pub first: SystemTime,
    /// When the last of them was dropped.
    #[serde(serialize_with = "super::event::rfc3339")]
    pub last: SystemTime,
}

/// A sealed entry: its place in the chain and the exact line written for it.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    seq: u64,
    entry: AuditEntry,
    line: String,
}

impl AuditRecord {
    /// Position in the chain, from 1.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The entry.
    pub fn entry(&self) -> &AuditEntry {
        &self.entry
    }

    /// The sealed JSON line (without a newline): what file sinks write, and what
    /// [`verify`] checks.
    pub fn json(&self) -> &str {
        &self.line
    }

    /// The record's hash, as hex.
    pub fn hash(&self) -> &str {
        &self.line[self.line.len() - 66..self.line.len() - 2]
    }
}

/// Seals entries into records, one after the other.
pub(crate) struct Chain {
    key: AuditKey,
    /// The HMAC with the key already absorbed, cloned per record: keying costs two SHA-256
    /// blocks, a fifth of sealing a typical record.
    keyed: HmacSha256,
    /// Reused for serializing each entry before it is framed.
    scratch: Vec<u8>,
    next_seq: u64,
    prev: [u8; 32],
    /// The replica id written into every record, if any (checked to need no JSON escaping).
    replica: Option<Box<str>>,
}

impl Chain {
    pub(crate) fn new(key: AuditKey, replica: Option<Box<str>>) -> Self {
        Self {
            keyed: key.mac(),
            key,
            scratch: Vec::with_capacity(1024),
            next_seq: 1,
            prev: GENESIS,
            replica,
        }
    }

    /// Continues after `line` when it is a record sealed with this key; otherwise keeps the
    /// chain as it is (the verifier will then report the break, which is the truth).
    pub(crate) fn resume_after(&mut self, line: &str) {
        let mut verifier = Verifier::new(self.key.clone());
        if verifier.check_line(line.as_bytes()).is_ok()
            && let Some((replica, chain)) = verifier.chains.pop_first()
            && replica.as_deref() == self.replica.as_deref()
            && let Some(last) = chain.last
        {
            self.next_seq = last.seq + 1;
            self.prev = last.hash;
        }
    }

    /// The last sequence number sealed (0 before any) and its hash.
    pub(crate) fn head(&self) -> (u64, String) {
        (self.next_seq - 1, hex(&self.prev))
    }

    pub(crate) fn seal(&mut self, entry: AuditEntry) -> Result<AuditRecord, serde_json::Error> {
        self.scratch.clear();
        let written = match &entry {
            AuditEntry::Request(event) => event.write_entry_json(&mut self.scratch),
            AuditEntry::Alert(_) | AuditEntry::Gap(_) => false,
        };
        if written {
            // Every test that seals a record also checks the direct writer against serde.
            debug_assert_eq!(
                String::from_utf8_lossy(&self.scratch),
                String::from_utf8_lossy(&serde_json::to_vec(&entry).unwrap_or_default())
            );
        } else {
            debug_assert!(
                self.scratch.is_empty(),
                "the direct writer wrote, then gave up"
            );
            serde_json::to_writer(&mut self.scratch, &entry)?;
        }
        // The entry is a JSON object with at least its "type" member: `{"type":...}`.
        let members = self
            .scratch
            .strip_prefix(b"{")
            .and_then(|b| b.strip_suffix(b"}"))
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| serde::ser::Error::custom("entry is not an object"))?;
        let seq = self.next_seq;
        let mut line = String::with_capacity(members.len() + 200);
        line.push_str("{\"seq\":");
        line.push_str(itoa::Buffer::new().format(seq));
        if let Some(replica) = &self.replica {
            line.push_str(",\"replica\":\"");
            line.push_str(replica);
            line.push('"');
        }
        line.push(',');
        line.push_str(members);
        line.push_str(",\"prev\":\"");
        push_hex(&mut line, &self.prev);
        line.push('"');
        let mut mac = self.keyed.clone();
        mac.update(line.as_bytes());
        let hash: [u8; 32] = mac.finalize().into_bytes().into();
        line.push_str(",\"hash\":\"");
        push_hex(&mut line, &hash);
        line.push_str("\"}");
        self.next_seq += 1;
        self.prev = hash;
        Ok(AuditRecord { seq, entry, line })
    }
}

/// What a verified log holds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChainSummary {
    /// The replica whose chain this is (`None` for a service that names none).
    pub replica: Option<String>,
    /// Records checked.
    pub records: u64,
    /// Sequence number of the first record (1 unless older records were rotated away).
    pub first_seq: u64,
    /// Sequence number of the last record. Compare it with what the service last wrote: removing
    /// records from the *end* of a log cannot be seen from the log alone.
    pub last_seq: u64,
    /// Hash of the last record, as hex.
    pub last_hash: String,
    /// Gap records: places where events were dropped before they were sealed.
    pub gaps: u64,
    /// Events dropped, summed over the gap records.
    pub dropped: u64,
}

impl ChainSummary {
    /// Whether the first record continues an older one not checked here (a rotated-away file).
    pub fn starts_mid_chain(&self) -> bool {
        self.first_seq > 1
    }
}

/// The first place a log stops being the one the service wrote.
#[derive(Debug)]
#[non_exhaustive]
pub struct ChainBreak {
    /// The file, when verifying files.
    pub file: Option<String>,
    /// The replica whose chain breaks there, when its records name one.
    pub replica: Option<String>,
    /// The line number in that file, from 1.
    pub line: u64,
    /// What is wrong there.
    pub problem: Problem,
}

/// What is wrong at a [`ChainBreak`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Problem {
    /// The line is not a sealed record (cut, edited structure, too long, not UTF-8).
    Malformed,
    /// The line's hash does not match its content under this key: it was edited (or the key is
    /// wrong).
    BadHash,
    /// The sequence number is not the one expected: records are missing, repeated or reordered.
    Gap {
        /// The number expected.
        expected: u64,
        /// The number found.
        found: u64,
    },
    /// The record does not point at the hash of the one before it.
    Unlinked,
    /// The file could not be read.
    Io(io::Error),
    /// There was no record at all.
    Empty,
    /// The records belong to several replicas: verify them with [`verify_replicas`].
    SeveralReplicas,
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
        }
        write!(f, "{}: ", self.line)?;
        if let Some(replica) = &self.replica {
            write!(f, "replica {replica}: ")?;
        }
        match &self.problem {
            Problem::Malformed => f.write_str("not a sealed audit record"),
            Problem::BadHash => {
                f.write_str("hash mismatch: the record was altered (or this is not its key)")
            }
            Problem::Gap { expected, found } => write!(
                f,
                "expected record {expected}, found {found}: records missing or reordered"
            ),
            Problem::Unlinked => f.write_str("not linked to the record before it"),
            Problem::Io(error) => write!(f, "cannot read: {error}"),
            Problem::Empty => f.write_str("no records"),
            Problem::SeveralReplicas => f.write_str(
                "the records belong to several replicas: verify them replica by replica",
            ),
        }
    }
}

impl std::error::Error for ChainBreak {}

/// Verifies one log read from `reader`: one chain (the records of one replica).
pub fn verify(key: &AuditKey, reader: impl BufRead) -> Result<ChainSummary, ChainBreak> {
    let mut verifier = Verifier::new(key.clone());
    verifier.read(reader, None)?;
    one_chain(verifier.summaries())
}

/// Verifies files as one chain, oldest first (`audit.jsonl.2`, `audit.jsonl.1`, `audit.jsonl`
/// after rotation). Empty files are allowed; no record at all is [`Problem::Empty`], records of
/// several replicas are [`Problem::SeveralReplicas`].
pub fn verify_files<P: AsRef<Path>>(
    key: &AuditKey,
    paths: &[P],
) -> Result<ChainSummary, ChainBreak> {
    one_chain(verify_replicas(key, paths)?)
}

/// Verifies the records of several replicas, in any number of files in any order of lines (the
/// files of each replica, or one collector's merged stream): each replica's records must form
/// an unbroken chain in the order read. One summary per replica, sorted by replica id; compare
/// each one's `last_seq` with what that replica last wrote, since records cut from the end of a
/// chain cannot be seen in the log, and check that every replica you run has a summary: a
/// replica whose records were all removed leaves no chain to break. A replica that restarts
/// with its id but without its file (records on standard output only) starts again at 1, which
/// reads as a break; so does renaming a replica, whose old chain then ends unchecked.
pub fn verify_replicas<P: AsRef<Path>>(
    key: &AuditKey,
    paths: &[P],
) -> Result<Vec<ChainSummary>, ChainBreak> {
    let mut verifier = Verifier::new(key.clone());
    for path in paths {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::open(path).map_err(|error| ChainBreak {
            file: Some(name.clone()),
            replica: None,
            line: 0,
            problem: Problem::Io(error),
        })?;
        verifier.read(BufReader::new(file), Some(name))?;
    }
    let summaries = verifier.summaries();
    if summaries.is_empty() {
        return Err(ChainBreak {
            file: None,
            replica: None,
            line: 0,
            problem: Problem::Empty,
        });
    }
    Ok(summaries)
}

fn one_chain(mut summaries: Vec<ChainSummary>) -> Result<ChainSummary, ChainBreak> {
    let problem = match summaries.len() {
        1 => return Ok(summaries.remove(0)),
        0 => Problem::Empty,
        _ => Problem::SeveralReplicas,
    };
    Err(ChainBreak {
        file: None,
        replica: None,
        line: 0,
        problem,
    })
}

struct Last {
    seq: u64,
    hash: [u8; 32],
}

/// One replica's chain as read so far.
#[derive(Default)]
struct ChainState {
    first_seq: Option<u64>,
    records: u64,
    last: Option<Last>,
    gaps: u64,
    dropped: u64,
}

struct Verifier {
    key: AuditKey,
    /// By replica id (`None`: records that name none).
    chains: std::collections::BTreeMap<Option<String>, ChainState>,
}

#[derive(Deserialize)]
struct Link<'a> {
    seq: u64,
    #[serde(borrow)]
    replica: Option<Cow<'a, str>>,
    #[serde(borrow)]
    prev: &'a str,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    dropped: Option<u64>,
}

impl Verifier {
    fn new(key: AuditKey) -> Self {
        Self {
            key,
            chains: std::collections::BTreeMap::new(),
        }
    }

    fn read(&mut self, mut reader: impl BufRead, file: Option<String>) -> Result<(), ChainBreak> {
        let mut line = Vec::new();
        let mut number = 0;
        loop {
            line.clear();
            number += 1;
            let at = |(problem, replica)| ChainBreak {
                file: file.clone(),
                replica,
                line: number,
                problem,
            };
            let read = reader
                .by_ref()
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| at((Problem::Io(e), None)))?;
            if read == 0 {
                return Ok(());
            }
            // A line without its newline is one the writer did not finish.
            if line.pop() != Some(b'\n') {
                return Err(at((Problem::Malformed, None)));
            }
            self.check_line(&line).map_err(at)?;
        }
    }

    /// Checks one line against the chain of its replica; on failure, what is wrong and whose
    /// chain it is (when the line could be read that far).
    fn check_line(&mut self, line: &[u8]) -> Result<(), (Problem, Option<String>)> {
        let split = line
            .len()
            .checked_sub(HASH_SUFFIX_LEN)
            .ok_or((Problem::Malformed, None))?;
        let (signed, suffix) = line.split_at(split);
        let hash_hex = suffix
            .strip_prefix(b",\"hash\":\"")
            .and_then(|s| s.strip_suffix(b"\"}"))
            .ok_or((Problem::Malformed, None))?;
        let hash = unhex(hash_hex).ok_or((Problem::Malformed, None))?;
        let mut mac = self.key.mac();
        mac.update(signed);
        // Constant-time comparison (hmac's `verify_slice`).
        mac.verify_slice(&hash)
            .map_err(|_| (Problem::BadHash, None))?;
        let mut object = signed.to_vec();
        object.push(b'}');
        let link: Link<'_> =
            serde_json::from_slice(&object).map_err(|_| (Problem::Malformed, None))?;
        let replica = link.replica.as_deref().map(str::to_owned);
        let fail = |problem| (problem, replica.clone());
        let prev = unhex(link.prev.as_bytes()).ok_or_else(|| fail(Problem::Malformed))?;
        let chain = self.chains.entry(replica.clone()).or_default();
        match &chain.last {
            Some(last) => {
                if link.seq != last.seq + 1 {
                    return Err(fail(Problem::Gap {
                        expected: last.seq + 1,
                        found: link.seq,
                    }));
                }
                if prev != last.hash {
                    return Err(fail(Problem::Unlinked));
                }
            }
            None if link.seq == 1 && prev != GENESIS => return Err(fail(Problem::Unlinked)),
            None => {}
        }
        chain.first_seq.get_or_insert(link.seq);
        chain.records += 1;
        if link.kind.as_deref() == Some("gap") {
            chain.gaps += 1;
            chain.dropped = chain.dropped.saturating_add(link.dropped.unwrap_or(0));
        }
        chain.last = Some(Last {
            seq: link.seq,
            hash,
        });
        Ok(())
    }

    fn summaries(&self) -> Vec<ChainSummary> {
        self.chains
            .iter()
            .filter_map(|(replica, chain)| {
                let last = chain.last.as_ref()?;
                Some(ChainSummary {
                    replica: replica.clone(),
                    records: chain.records,
                    first_seq: chain.first_seq?,
                    last_seq: last.seq,
                    last_hash: hex(&last.hash),
                    gaps: chain.gaps,
                    dropped: chain.dropped,
                })
            })
            .collect()
    }
}

/// Appends the 64 hex digits of a hash without an intermediate `String`.
fn push_hex(line: &mut String, bytes: &[u8; 32]) {
    let mut digits = [0u8; 64];
    if hex::encode_to_slice(bytes, &mut digits).is_ok() {
        line.push_str(std::str::from_utf8(&digits).unwrap_or_default());
    }
}

fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn unhex(text: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    // Lower-case only: the writer never produces upper case, so any is an edit.
    if text.iter().any(u8::is_ascii_uppercase) {
        return None;
    }
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}
