use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::HeaderName;
use tower_layer::Layer;

use super::Redact;
use crate::error::ConfigError;
use crate::identity::Identity;
use crate::scrub::engine::Engine;
use crate::scrub::{
    AllowOnly, Redactions, Rule, SENSITIVE_HEADERS, Scrubber, default_engine, random_key,
};

/// The secret of [`Mask::Fingerprint`](super::Mask::Fingerprint): at least 32 bytes. Its
/// `Debug` shows nothing of it.
///
/// ```
/// use portcullis::redact::{FingerprintKey, RedactLayer};
///
/// # fn main() -> Result<(), portcullis::ConfigError> {
/// # let secret_from_your_store = [7u8; 32];
/// let layer = RedactLayer::new().fingerprint_key(FingerprintKey::new(secret_from_your_store)?);
/// assert!(FingerprintKey::new(b"too short").is_err());
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FingerprintKey(Arc<[u8]>);

impl FingerprintKey {
    /// A key of at least 32 bytes (shorter keys are a configuration error).
    pub fn new(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        crate::error::hmac_secret(secret.as_ref(), "a fingerprint key needs at least 32 bytes")
            .map(Self)
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

/// Redacts JSON responses and marks sensitive headers; see the [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct RedactLayer {
    pub(super) config: Arc<RedactConfig>,
}

#[derive(Clone)]
pub(super) struct RedactConfig {
    pub(super) engine: Engine,
    pub(super) max_body_bytes: usize,
    pub(super) pass_oversized: bool,
    pub(super) pass_encoded: bool,
    pub(super) pass_streams: bool,
    pub(super) sensitive_headers: Vec<HeaderName>,
}

impl Default for RedactLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RedactLayer {
    /// The default rules: the field names in [`DEFAULT_FIELDS`](super::DEFAULT_FIELDS)
    /// (`card_number` keeps its last four characters, the others are replaced), and the
    /// detectors [`CardNumber`](super::CardNumber) (last four kept), [`Jwt`](super::Jwt),
    /// [`KnownApiKey`](super::KnownApiKey), [`Email`](super::Email) and [`Iban`](super::Iban)
    /// (replaced). Bodies up to 4 MiB are redacted; larger, encoded and streamed JSON bodies are
    /// withheld; fingerprints use a random key made now.
    pub fn new() -> Self {
        Self::with_engine(default_engine())
    }

    /// No rules at all (add them with [`rule`](Self::rule)); the same limits as
    /// [`new`](Self::new).
    pub fn empty() -> Self {
        Self::with_engine(Engine::new(random_key().into()))
    }

    fn with_engine(engine: Engine) -> Self {
        Self {
            config: Arc::new(RedactConfig {
                engine,
                max_body_bytes: 4 * 1024 * 1024,
                pass_oversized: false,
                pass_encoded: false,
                pass_streams: false,
                sensitive_headers: SENSITIVE_HEADERS.to_vec(),
            }),
        }
    }

    /// Adds a rule. A rule for the same field name, path or detector name replaces the earlier
    /// one, which is how defaults are changed: `.rule(Rule::detector(Email).except_roles(["admin"]))`.
    pub fn rule(mut self, rule: Rule) -> Self {
        Arc::make_mut(&mut self.config).engine.add_rule(rule);
        self
    }

    /// Removes the rule with the same target (field name, path or detector name), which is how
    /// one default is switched off: `.without_rule(Rule::detector(Email))`.
    pub fn without_rule(mut self, rule: Rule) -> Self {
        Arc::make_mut(&mut self.config).engine.remove_rule(&rule);
        self
    }

    /// Adds a field allowlist. For each response, the first allowlist whose routes and roles
    /// apply is used; others are ignored.
    pub fn allow_only(mut self, allow: AllowOnly) -> Self {
        Arc::make_mut(&mut self.config).engine.allow.push(allow);
        self
    }

    /// The key of [`Mask::Fingerprint`](super::Mask::Fingerprint). Set it, from a secret store,
    /// to correlate fingerprints across restarts and replicas; by default each layer makes a
    /// random one.
    pub fn fingerprint_key(mut self, key: FingerprintKey) -> Self {
        Arc::make_mut(&mut self.config).engine.key = key.0;
        self
    }

    /// The largest JSON body redacted (default 4 MiB); larger ones are withheld (see
    /// [`allow_oversized_unredacted`](Self::allow_oversized_unredacted)). Bodies are buffered up
    /// to this size, never beyond.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        Arc::make_mut(&mut self.config).max_body_bytes = bytes;
        self
    }

    /// Lets JSON bodies over [`max_body_bytes`](Self::max_body_bytes) pass **unredacted**
    /// instead of withholding them.
    pub fn allow_oversized_unredacted(mut self) -> Self {
        Arc::make_mut(&mut self.config).pass_oversized = true;
        self
    }

    /// Lets JSON bodies with a `Content-Encoding` (gzip, br, ...) pass **unredacted** instead of
    /// withholding them. Better: put the `RedactLayer` inside the compression layer.
    pub fn allow_encoded_unredacted(mut self) -> Self {
        Arc::make_mut(&mut self.config).pass_encoded = true;
        self
    }

    /// Lets streams (`text/event-stream`, NDJSON, JSON sequences) pass **unredacted** instead
    /// of withholding them.
    pub fn allow_streams_unredacted(mut self) -> Self {
        Arc::make_mut(&mut self.config).pass_streams = true;
        self
    }

    /// The former name of [`allow_oversized_unredacted`](Self::allow_oversized_unredacted):
    /// every weakened default is spelled `allow_*`.
    #[deprecated(since = "0.2.0", note = "renamed to `allow_oversized_unredacted`")]
    pub fn pass_oversized_unredacted(self) -> Self {
        self.allow_oversized_unredacted()
    }

    /// The former name of [`allow_encoded_unredacted`](Self::allow_encoded_unredacted).
    #[deprecated(since = "0.2.0", note = "renamed to `allow_encoded_unredacted`")]
    pub fn pass_encoded_unredacted(self) -> Self {
        self.allow_encoded_unredacted()
    }

    /// The former name of [`allow_streams_unredacted`](Self::allow_streams_unredacted).
    #[deprecated(since = "0.2.0", note = "renamed to `allow_streams_unredacted`")]
    pub fn pass_streams_unredacted(self) -> Self {
        self.allow_streams_unredacted()
    }

    /// Treats strings that hold a JSON document as text, scanned only by the detectors. By
    /// default such a string (a stored webhook, an event blob: an object or array, up to four
    /// documents deep) is redacted as a document of its own, with the field, path and detector
    /// rules, and written back into the string; see the [module docs](super#nested-documents).
    pub fn nested_json_as_text(mut self) -> Self {
        Arc::make_mut(&mut self.config).engine.nested = false;
        self
    }

    /// Adds a header to mark sensitive (besides [`SENSITIVE_HEADERS`](super::SENSITIVE_HEADERS)).
    pub fn sensitive_header(mut self, name: HeaderName) -> Self {
        let headers = &mut Arc::make_mut(&mut self.config).sensitive_headers;
        if !headers.contains(&name) {
            headers.push(name);
        }
        self
    }

    /// Redacts a JSON document as the layer would for this caller and route (an axum route
    /// pattern); `None` if it is not JSON (not UTF-8, bad syntax, arrays and objects nested 128
    /// levels deep, where serde_json stops too). The document comes back borrowed when nothing
    /// was redacted.
    pub fn redact_json<'a>(
        &self,
        json: &'a [u8],
        identity: Option<&Identity>,
        route: Option<&str>,
    ) -> Option<(Cow<'a, [u8]>, Redactions)> {
        let (out, counts) = self.config.engine.redact(json, identity, route).ok()?;
        Some((out.map_or(Cow::Borrowed(json), Cow::Owned), counts))
    }

    /// Masks every finding of the layer's detectors in free text (log lines, audit records),
    /// whatever their roles; the text comes back borrowed when nothing was found.
    pub fn scrub<'t>(&self, text: &'t str) -> (Cow<'t, str>, Redactions) {
        self.config.engine.scrub(text)
    }
}

/// Scrubs with the layer's rules (its detectors; field and path rules do not apply to text).
impl From<RedactLayer> for Scrubber {
    fn from(layer: RedactLayer) -> Self {
        Scrubber::from_engine(layer.config.engine.clone())
    }
}

impl fmt::Debug for RedactLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl fmt::Debug for RedactConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedactConfig")
            .field("rules", &self.engine.rules())
            .field("allow", &self.engine.allow)
            .field("nested_json", &self.engine.nested)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("pass_oversized", &self.pass_oversized)
            .field("pass_encoded", &self.pass_encoded)
            .field("pass_streams", &self.pass_streams)
            .field("sensitive_headers", &self.sensitive_headers)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for RedactLayer {
    type Service = Redact<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Redact {
            inner,
            config: self.config.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrub::Email;

    #[test]
    fn config_is_checked_and_rules_replace() {
        assert!(FingerprintKey::new([1; 31]).is_err());
        assert!(FingerprintKey::new([1; 32]).is_ok());
        assert_eq!(
            format!("{:?}", FingerprintKey::new([1; 32]).unwrap()),
            "FingerprintKey(..)"
        );
        let layer = RedactLayer::new();
        let count = layer.config.engine.rules().len();
        let layer = layer.rule(Rule::detector(Email).except_roles(["admin"]));
        assert_eq!(layer.config.engine.rules().len(), count);
        let layer = layer.rule(Rule::field("PassWord"));
        assert_eq!(layer.config.engine.rules().len(), count);
    }
}
