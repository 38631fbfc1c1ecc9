//! The redaction engine below the layers: field, path and detector rules, the JSON walk and the
//! free-text scrubber. The [`RedactLayer`](crate::redact::RedactLayer) applies it to responses,
//! the audit trail to its records; both reach it here, so neither layer imports the other. Its
//! public types are re-exported from [`redact`](crate::redact).

mod detect;
pub(crate) mod engine;
pub(crate) mod rules;
mod sensitive;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub use detect::{CardNumber, Detector, Email, Iban, Jwt, KnownApiKey};
pub use rules::{AllowOnly, DEFAULT_FIELDS, Mask, Rule};
pub use sensitive::{SENSITIVE_HEADERS, Sensitive};

use engine::Engine;

/// Masks what a set of redaction rules finds in free text (log lines, audit records), whatever
/// the caller's roles. The audit trail scrubs its records with one; make it from a
/// [`RedactLayer`](crate::redact::RedactLayer) (`Scrubber::from(layer)`, or pass the layer where
/// a scrubber is taken) to scrub with the layer's detectors. The default has the default
/// detectors of `RedactLayer::new`.
#[derive(Clone)]
pub struct Scrubber {
    engine: Arc<Engine>,
}

impl Scrubber {
    pub(crate) fn from_engine(engine: Engine) -> Self {
        Self {
            engine: Arc::new(engine),
        }
    }

    /// Masks every finding of the detectors in `text`; the text comes back borrowed when
    /// nothing was found.
    pub fn scrub<'t>(&self, text: &'t str) -> (Cow<'t, str>, Redactions) {
        self.engine.scrub(text)
    }
}

impl Default for Scrubber {
    fn default() -> Self {
        Self::from_engine(default_engine())
    }
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber")
            .field("rules", &self.engine.rules())
            .finish_non_exhaustive()
    }
}

/// The default rules: the field names in [`DEFAULT_FIELDS`] (`card_number` keeps its last four
/// characters, the others are replaced), and the detectors [`CardNumber`] (last four kept),
/// [`Jwt`], [`KnownApiKey`], [`Email`] and [`Iban`] (replaced), with a random fingerprint key.
pub(crate) fn default_engine() -> Engine {
    let mut engine = Engine::new(random_key().into());
    for name in DEFAULT_FIELDS {
        let mask = if *name == "card_number" {
            Mask::LastFour
        } else {
            Mask::Replace
        };
        engine.add_rule(Rule::field(name).mask(mask));
    }
    engine.add_rule(Rule::detector(CardNumber).mask(Mask::LastFour));
    engine.add_rule(Rule::detector(Jwt));
    engine.add_rule(Rule::detector(KnownApiKey));
    engine.add_rule(Rule::detector(Email));
    engine.add_rule(Rule::detector(Iban));
    engine
}

/// 32 random bytes; if the system has no randomness to give, a hash of the time and process
/// (still unique per process, and fingerprints are then merely weaker).
pub(crate) fn random_key() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    if getrandom::fill(&mut key).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mut hash = Sha256::new();
        hash.update(now.to_le_bytes());
        hash.update(std::process::id().to_le_bytes());
        key = hash.finalize().to_vec();
    }
    key
}

/// How many values each rule masked in one response (or one [`Scrubber::scrub`]), by name:
/// a detector's [`name`](Detector::name), `field`, `path` or `allow_only` (members dropped by
/// an allowlist). A response extension of every JSON response the layer examined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Redactions {
    counts: Vec<(&'static str, u64)>,
}

impl Redactions {
    /// The count for one name (0 if none).
    pub fn get(&self, name: &str) -> u64 {
        self.counts
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, c)| *c)
    }

    /// All values masked or dropped.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, c)| c).sum()
    }

    /// `(name, count)` pairs, in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.counts.iter().copied()
    }

    pub(crate) fn add(&mut self, name: &'static str) {
        self.add_n(name, 1);
    }

    fn add_n(&mut self, name: &'static str, n: u64) {
        match self.counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += n,
            None => self.counts.push((name, n)),
        }
    }

    /// Adds every count of `other`.
    pub(crate) fn merge(&mut self, other: &Redactions) {
        for (name, n) in other.iter() {
            self.add_n(name, n);
        }
    }
}
