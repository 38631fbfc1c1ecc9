//! Rules (what to mask and how), JSON paths and field allowlists.

use std::fmt;
use std::sync::Arc;

use super::detect::Detector;
use crate::error::ConfigError;
use crate::identity::Identity;

/// How a rule hides what it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Mask {
    /// Drop the member (a field or path rule); a detector's finding is cut out of its string.
    Remove,
    /// Replace with `"[REDACTED]"` (the default).
    #[default]
    Replace,
    /// Keep the last four characters: `"****1111"`. Values shorter than 8 characters are
    /// replaced as a whole, since their last four would reveal too much.
    LastFour,
    /// A keyed HMAC-SHA-256 fingerprint, `"hmac:"` and 16 hex digits: equal values get equal
    /// fingerprints (under the same key), so they can be correlated without being revealed. See
    /// [`RedactLayer::fingerprint_key`](crate::RedactLayer::fingerprint_key).
    Fingerprint,
}

/// One redaction rule: a target (a field name, a JSON path or a value [`Detector`]), a [`Mask`]
/// and the roles it does not apply to.
///
/// ```
/// use portcullis::redact::{Email, Mask, Rule};
/// let rule = Rule::detector(Email).mask(Mask::Fingerprint).except_roles(["admin"]);
/// let card = Rule::field("card_number").mask(Mask::LastFour);
/// let email = Rule::path("$.users[*].email")?;
/// # let _ = (rule, card, email);
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct Rule {
    pub(super) target: Target,
    pub(super) mask: Mask,
    pub(super) except_roles: Vec<String>,
    /// Route patterns the rule is limited to (empty: every route).
    pub(super) routes: Vec<String>,
    /// Normalized names of members a detector does not look inside.
    pub(super) except_fields: Vec<Box<[u8]>>,
    /// The identity claim whose value the caller sees unmasked.
    pub(super) owner_claim: Option<String>,
}

#[derive(Clone)]
pub(super) enum Target {
    /// The normalized name (see [`normalize`]) and the name as given.
    Field(Vec<u8>, String),
    Path(JsonPath),
    Detector(Arc<dyn Detector>),
}

impl Rule {
    /// Every member with this name, at any depth, whatever its value (objects and arrays are
    /// masked as a whole). Names compare case-insensitively and ignoring `_`, `-` and other
    /// punctuation: `api_key` matches `apiKey`, `API-KEY` and `ApiKey`.
    pub fn field(name: &str) -> Self {
        Self::new(Target::Field(normalize(name.as_bytes()), name.to_owned()))
    }

    /// The values at a JSON path: `$` then `.name`, `['name']`, `.*` (any member), `[*]` (any
    /// element) or `[3]`; for example `$.users[*].email`.
    pub fn path(path: &str) -> Result<Self, ConfigError> {
        Ok(Self::new(Target::Path(JsonPath::parse(path)?)))
    }

    /// Every finding of a value detector, in any string (member names included) or number.
    pub fn detector(detector: impl Detector) -> Self {
        Self::new(Target::Detector(Arc::new(detector)))
    }

    fn new(target: Target) -> Self {
        Self {
            target,
            mask: Mask::Replace,
            except_roles: Vec::new(),
            routes: Vec::new(),
            except_fields: Vec::new(),
            owner_claim: None,
        }
    }

    /// How the rule masks (default [`Mask::Replace`]).
    pub fn mask(mut self, mask: Mask) -> Self {
        self.mask = mask;
        self
    }

    /// Callers with any of these roles (from their [`Identity`]) see the values unmasked. For
    /// a field or path rule whose member is a string or number, that means the value as the
    /// handler wrote it: the detectors leave it alone too. Inside a spared object or array the
    /// detectors and the other field and path rules still run.
    pub fn except_roles<I: IntoIterator<Item = T>, T: Into<String>>(mut self, roles: I) -> Self {
        self.except_roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Only on these routes, as axum's `MatchedPath` spells them (`/users/{id}`); by default on
    /// every route. Without a route pattern (the layer is not under `Router::layer`) the rule
    /// applies anyway.
    pub fn on_routes<I: IntoIterator<Item = T>, T: Into<String>>(mut self, routes: I) -> Self {
        self.routes.extend(routes.into_iter().map(Into::into));
        self
    }

    /// For a detector: it does not look inside members with these names (at any depth,
    /// compared like [`field`](Self::field) names), so free text such as a note's `body` keeps
    /// the addresses its author wrote. Field and path rules ignore this, and so does a name
    /// without a letter or digit.
    pub fn except_fields<I: IntoIterator<Item = T>, T: AsRef<str>>(mut self, names: I) -> Self {
        // A name without a letter or digit would match every member named only by
        // punctuation: ignored.
        self.except_fields.extend(
            names
                .into_iter()
                .map(|name| normalize(name.as_ref().as_bytes()).into_boxed_slice())
                .filter(|name| !name.is_empty()),
        );
        self
    }

    /// The caller sees a value that equals their own identity claim `claim` (`email`, or `sub`
    /// for the subject) exactly: the author of a record sees their own e-mail address, nobody
    /// else's. For a field or path rule the whole value is compared (a string); for a detector,
    /// each finding. Use a claim the identity provider verifies: whoever can set their own
    /// `email` to someone else's sees that person's. With [`Mask::Remove`], everyone else gets
    /// an empty string instead of no member.
    pub fn visible_to_owner(mut self, claim: &str) -> Self {
        self.owner_claim = Some(claim.to_owned());
        self
    }

    /// Whether the rule applies on `route` (see [`on_routes`](Self::on_routes)).
    pub(super) fn on_route(&self, route: Option<&str>) -> bool {
        self.routes.is_empty() || route.is_none_or(|route| self.routes.iter().any(|x| x == route))
    }

    /// Whether `value` is the caller's own (see [`visible_to_owner`](Self::visible_to_owner)).
    pub(super) fn owned_by(&self, value: &str, identity: Option<&Identity>) -> bool {
        let (Some(claim), Some(identity)) = (&self.owner_claim, identity) else {
            return false;
        };
        let own = if claim == "sub" {
            Some(identity.subject())
        } else {
            identity.claim(claim).and_then(serde_json::Value::as_str)
        };
        own.is_some_and(|own| !own.is_empty() && own == value)
    }

    /// Whether `other` targets the same thing, so that it replaces this rule.
    pub(super) fn same_target(&self, other: &Rule) -> bool {
        match (&self.target, &other.target) {
            (Target::Field(a, _), Target::Field(b, _)) => a == b,
            (Target::Path(a), Target::Path(b)) => a.source == b.source,
            (Target::Detector(a), Target::Detector(b)) => a.name() == b.name(),
            _ => false,
        }
    }

    pub(super) fn name(&self) -> &'static str {
        match &self.target {
            Target::Field(..) => "field",
            Target::Path(_) => "path",
            Target::Detector(detector) => detector.name(),
        }
    }
}

pub(super) fn exempt(except_roles: &[String], identity: Option<&Identity>) -> bool {
    identity.is_some_and(|identity| except_roles.iter().any(|role| identity.has_role(role)))
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Field(_, name) => format!("field {name:?}"),
            Target::Path(path) => format!("path {:?}", path.source),
            Target::Detector(detector) => format!("detector {:?}", detector.name()),
        };
        f.debug_struct("Rule")
            .field("target", &target)
            .field("mask", &self.mask)
            .field("except_roles", &self.except_roles)
            .field("routes", &self.routes)
            .field("owner_claim", &self.owner_claim)
            .finish_non_exhaustive()
    }
}

/// Lower-case ASCII letters and digits only, so that `API-Key`, `api_key` and `apiKey` are one
/// name. Names longer than 64 bytes are cut (no default name is that long).
pub(super) fn normalize(name: &[u8]) -> Vec<u8> {
    name.iter()
        .filter(|b| b.is_ascii_alphanumeric())
        .map(u8::to_ascii_lowercase)
        .take(64)
        .collect()
}

/// The field names masked by [`RedactLayer::new`](crate::RedactLayer::new).
pub const DEFAULT_FIELDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "api_key",
    "private_key",
    "authorization",
    "cookie",
    "set_cookie",
    "ssn",
    "card_number",
    "cvv",
    "cvc",
    "pin",
];

/// One step of a [`JsonPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    Key(String),
    AnyKey,
    Index(usize),
    AnyIndex,
}

impl Segment {
    pub(super) fn matches_key(&self, key: &str) -> bool {
        match self {
            Self::Key(name) => name == key,
            Self::AnyKey => true,
            _ => false,
        }
    }

    pub(super) fn matches_index(&self, index: usize) -> bool {
        match self {
            Self::Index(i) => *i == index,
            Self::AnyIndex => true,
            _ => false,
        }
    }
}

/// A parsed JSON path (a small subset of RFC 9535: names, indexes and wildcards).
#[derive(Clone, Debug)]
pub(super) struct JsonPath {
    pub(super) source: String,
    pub(super) segments: Vec<Segment>,
}

impl JsonPath {
    pub(super) fn parse(source: &str) -> Result<Self, ConfigError> {
        let bad = |why: &str| ConfigError::new(format!("JSON path {source:?}: {why}"));
        let rest = source
            .strip_prefix('$')
            .ok_or_else(|| bad("must start with `$`"))?;
        let b = rest.as_bytes();
        let mut segments = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'.' => {
                    let name_end = b[i + 1..]
                        .iter()
                        .position(|&c| c == b'.' || c == b'[')
                        .map_or(b.len(), |p| i + 1 + p);
                    let name = &rest[i + 1..name_end];
                    if name.is_empty() {
                        return Err(bad("empty member name (`..` is not supported)"));
                    }
                    segments.push(if name == "*" {
                        Segment::AnyKey
                    } else {
                        Segment::Key(name.to_owned())
                    });
                    i = name_end;
                }
                b'[' => {
                    let close = b[i..]
                        .iter()
                        .position(|&c| c == b']')
                        .map(|p| i + p)
                        .ok_or_else(|| bad("unclosed `[`"))?;
                    let inner = &rest[i + 1..close];
                    segments.push(if inner == "*" {
                        Segment::AnyIndex
                    } else if let Some(name) = inner
                        .strip_prefix('\'')
                        .and_then(|n| n.strip_suffix('\''))
                        .or_else(|| inner.strip_prefix('"').and_then(|n| n.strip_suffix('"')))
                    {
                        Segment::Key(name.to_owned())
                    } else {
                        Segment::Index(
                            inner
                                .parse()
                                .map_err(|_| bad("`[...]` takes `*`, an index or a quoted name"))?,
                        )
                    });
                    i = close + 1;
                }
                _ => return Err(bad("expected `.` or `[`")),
            }
        }
        if segments.is_empty() {
            return Err(bad("names no member"));
        }
        Ok(Self {
            source: source.to_owned(),
            segments,
        })
    }
}

/// A field allowlist: a response may carry only the members on these JSON paths (and what is
/// inside them); every other member is dropped, so a handler that serializes a whole database
/// row cannot leak a column added later.
///
/// ```
/// use portcullis::redact::AllowOnly;
/// let users = AllowOnly::paths(["$.users[*].id", "$.users[*].name"])?
///     .on_routes(["/users"])
///     .except_roles(["admin"]);
/// # let _ = users;
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct AllowOnly {
    pub(super) paths: Vec<JsonPath>,
    pub(super) routes: Vec<String>,
    pub(super) except_roles: Vec<String>,
}

impl AllowOnly {
    /// The allowed paths (syntax of [`Rule::path`]); an element path like `$.items[*].id`
    /// keeps `items`, its elements and their `id`.
    pub fn paths<I: IntoIterator<Item = T>, T: AsRef<str>>(paths: I) -> Result<Self, ConfigError> {
        let paths = paths
            .into_iter()
            .map(|p| JsonPath::parse(p.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        if paths.is_empty() {
            return Err(ConfigError::new("AllowOnly needs at least one path"));
        }
        Ok(Self {
            paths,
            routes: Vec::new(),
            except_roles: Vec::new(),
        })
    }

    /// Only on these routes, as axum's `MatchedPath` spells them (`/items/{id}`); by default
    /// on every route.
    pub fn on_routes<I: IntoIterator<Item = T>, T: Into<String>>(mut self, routes: I) -> Self {
        self.routes.extend(routes.into_iter().map(Into::into));
        self
    }

    /// Callers with any of these roles get the whole response (the other rules still apply).
    pub fn except_roles<I: IntoIterator<Item = T>, T: Into<String>>(mut self, roles: I) -> Self {
        self.except_roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Without a route pattern (the layer is not under `Router::layer`, so there is no
    /// `MatchedPath`) a route-scoped allowlist applies anyway: better to strip too much than to
    /// let whole rows out.
    pub(super) fn applies(&self, route: Option<&str>, identity: Option<&Identity>) -> bool {
        let on_route = match route {
            None => true,
            Some(route) => self.routes.is_empty() || self.routes.iter().any(|x| x == route),
        };
        on_route && !exempt(&self.except_roles, identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse() {
        let p = JsonPath::parse("$.users[*].email").unwrap();
        assert_eq!(
            p.segments,
            [
                Segment::Key("users".into()),
                Segment::AnyIndex,
                Segment::Key("email".into())
            ]
        );
        let p = JsonPath::parse("$['a.b'][2].*").unwrap();
        assert_eq!(
            p.segments,
            [
                Segment::Key("a.b".into()),
                Segment::Index(2),
                Segment::AnyKey
            ]
        );
        for bad in ["", "$", "users", "$..a", "$[x]", "$[1", "$a"] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize(b"API-Key"), b"apikey");
    }
}
