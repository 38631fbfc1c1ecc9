//! The redaction pass over a JSON document.
//!
//! Hand-written rather than a `serde_json::Value` round trip: a `Value` would reorder members,
//! round big numbers through `f64` and allocate every node, while this pass leaves everything it
//! does not redact byte for byte (numbers, member order, escapes, whitespace) and writes only
//! around what it changes: a document with nothing to redact is never copied.
//!
//! The walk is also the syntax check, in the same pass (a separate serde_json pass cost about a
//! quarter of the time). It accepts what `serde_json::from_slice::<Value>` accepts: the RFC 8259
//! grammar, UTF-8 (checked once for the whole input), `\u` escapes of surrogates only in pairs
//! (a lone one cannot become UTF-8), fewer than 128 levels of nesting; except numbers beyond
//! `f64` such as `1e400`, which are JSON and are copied as sent. Values that are masked or
//! dropped are checked as strictly as the rest. It recurses at most [`MAX_DEPTH`] levels, never
//! indexes out of bounds and gives up (`NotJson`) rather than guess.
//!
//! A string value whose text is itself a JSON object or array (a stored webhook, an event
//! blob), or a JSON string (JSON encoded twice), is walked as a document of its own, with the
//! same rules, and written back escaped into the string: field rules and detectors apply
//! inside, and path states continue into it as if the document were the value
//! (`$.payload.password` reaches `{"payload":"{\"password\":1}"}`). Allowlists do not: a
//! string where an allowlist expects members is dropped, as before. A string that does not
//! parse as a document is text, scanned by the detectors. The work stays
//! linear: a nested document is no longer than its string, documents nest at most
//! [`MAX_NESTED`] deep inside strings (so each input byte is walked at most `MAX_NESTED + 1`
//! times), and the nesting of arrays and objects counts across documents toward the same
//! [`MAX_DEPTH`] (so the recursion is bounded as before). A document string past either bound
//! is masked whole (counted as `nested_json`): it is never let through unchecked.

use smallvec::SmallVec;
use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Redactions;
use super::detect::Detector;
use super::rules::{AllowOnly, Mask, Rule, Segment, Target, exempt};
use crate::identity::Identity;

mod lex;
mod scan;
#[cfg(test)]
mod tests;
mod walk;

use scan::{Scanner, scan};
use walk::Walk;

/// Arrays and objects nest at most this deep. serde_json refuses the 128th level, so whatever
/// passes here also parses there; the pass recurses once per level.
const MAX_DEPTH: usize = 127;
/// Documents in strings nest at most this deep (a document in a string of a document in a
/// string of the body is 2).
const MAX_NESTED: u8 = 4;
const REDACTED: &str = "[REDACTED]";

/// The body is not JSON the pass can rewrite.
#[derive(Debug)]
pub(crate) struct NotJson;

type Pass<T = ()> = Result<T, NotJson>;

/// Rules compiled for matching, in the order given.
#[derive(Clone)]
pub(crate) struct Engine {
    rules: Vec<Rule>,
    pub(crate) allow: Vec<AllowOnly>,
    pub(crate) key: Arc<[u8]>,
    /// Strings holding a JSON document are redacted as documents (see the module docs).
    pub(crate) nested: bool,
    /// The rules sorted by target when one is added, not for every response (that loop cost
    /// about a tenth of a microsecond per response).
    index: RuleIndex,
}

/// The rules by target, each with its position in `Engine::rules`.
#[derive(Clone, Default)]
struct RuleIndex {
    /// Normalized field names.
    fields: Vec<(Box<[u8]>, usize)>,
    paths: Vec<usize>,
    detectors: Vec<Scanner>,
    /// Some rule spares some roles or is limited to some routes: only then is a response's
    /// rule set worked out per caller and route.
    tailored: bool,
    /// Some detector does not look inside some members.
    pub(crate) scoped_detectors: bool,
}

impl RuleIndex {
    fn of(rules: &[Rule]) -> Self {
        let mut index = Self::default();
        for (i, rule) in rules.iter().enumerate() {
            index.tailored |= !rule.except_roles.is_empty() || !rule.routes.is_empty();
            index.scoped_detectors |=
                matches!(rule.target, Target::Detector(_)) && !rule.except_fields.is_empty();
            match &rule.target {
                Target::Field(name, _) => index.fields.push((name.clone().into(), i)),
                Target::Path(_) => index.paths.push(i),
                Target::Detector(d) => index.detectors.push(Scanner::new(d.clone(), i)),
            }
        }
        index
    }
}

/// A (rule or allowlist path, position in its segments) pair: how far a path has matched.
type State = (u32, u32);
/// The states of one member or element: inline, since a heap allocation per element of a long
/// array cost more than the walk itself.
type States = SmallVec<[State; 4]>;

impl Engine {
    pub(crate) fn new(key: Arc<[u8]>) -> Self {
        Self {
            rules: Vec::new(),
            allow: Vec::new(),
            key,
            nested: true,
            index: RuleIndex::default(),
        }
    }

    pub(crate) fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Adds `rule`, or replaces the rule with the same target.
    pub(crate) fn add_rule(&mut self, rule: Rule) {
        match self.rules.iter_mut().find(|r| r.same_target(&rule)) {
            Some(existing) => *existing = rule,
            None => self.rules.push(rule),
        }
        self.index = RuleIndex::of(&self.rules);
    }

    /// Removes the rule with the same target as `rule`, if any.
    pub(crate) fn remove_rule(&mut self, rule: &Rule) {
        self.rules.retain(|r| !r.same_target(rule));
        self.index = RuleIndex::of(&self.rules);
    }

    /// Redacts a JSON document; `None` in the result's first half when nothing changed.
    pub(crate) fn redact(
        &self,
        input: &[u8],
        identity: Option<&Identity>,
        route: Option<&str>,
    ) -> Pass<(Option<Vec<u8>>, Redactions)> {
        // Once for the whole input: cheaper than once per string, and outside strings any
        // non-ASCII byte is a syntax error anyway.
        let text = std::str::from_utf8(input).map_err(|_| NotJson)?;
        let index = &self.index;
        // Per rule: does it apply on this route, and does it spare this caller? A spared field
        // or path rule stays in the walk, so that its member is left as written (detectors
        // included); a spared detector and a rule for other routes leave it. Worked out, and
        // allocated, only when some rule is off this route or spares this caller: the common
        // response borrows the index as it is.
        let off_route = index.tailored && self.rules.iter().any(|r| !r.on_route(route));
        let spares = index.tailored && self.rules.iter().any(|r| exempt(&r.except_roles, identity));
        let on_route: Vec<bool> = if off_route {
            self.rules.iter().map(|r| r.on_route(route)).collect()
        } else {
            Vec::new()
        };
        let spared: Vec<bool> = if spares {
            self.rules
                .iter()
                .map(|r| exempt(&r.except_roles, identity))
                .collect()
        } else {
            Vec::new()
        };
        let applies = |rule: &usize| on_route.get(*rule).copied().unwrap_or(true);
        let active = |rule: &usize| applies(rule) && !spared.get(*rule).copied().unwrap_or(false);
        let mut walk = Walk {
            engine: self,
            fields: if off_route {
                let kept = index.fields.iter().filter(|(_, rule)| applies(rule));
                Cow::Owned(kept.cloned().collect())
            } else {
                Cow::Borrowed(&index.fields)
            },
            paths: index
                .paths
                .iter()
                .filter(|rule| applies(rule))
                .filter_map(|&rule| match &self.rules.get(rule)?.target {
                    Target::Path(path) => Some((path.segments.as_slice(), rule)),
                    _ => None,
                })
                .collect(),
            detectors: if off_route || spares {
                let kept = index.detectors.iter().filter(|s| active(&s.rule));
                Cow::Owned(kept.cloned().collect())
            } else {
                Cow::Borrowed(&index.detectors)
            },
            spared: Cow::Owned(spared),
            identity,
            allow: self.allow.iter().find(|a| a.applies(route, identity)),
            ..Walk::over(self, text, MAX_NESTED)
        };
        let paths: SmallVec<[State; 4]> = (0..walk.paths.len() as u32).map(|i| (i, 0)).collect();
        let allow: Option<SmallVec<[State; 4]>> = walk
            .allow
            .map(|a| (0..a.paths.len() as u32).map(|i| (i, 0)).collect());
        walk.ws();
        // An allowlist lists members; a bare string or number at the top has none to allow.
        if walk.allow.is_some() && !matches!(walk.peek(), b'{' | b'[') {
            walk.skip(0)?;
            walk.end()?;
            walk.counts.add("allow_only");
            return Ok((Some(b"null".to_vec()), walk.counts));
        }
        walk.value(&paths, allow.as_deref(), 0)?;
        walk.end()?;
        if !walk.changed {
            return Ok((None, walk.counts));
        }
        walk.replace(input.len()..input.len(), b"")?;
        Ok((Some(walk.out), walk.counts))
    }
    /// Scrubs free text with the detectors that apply to `identity` (all, for `None`).
    pub(crate) fn scrub<'t>(&self, text: &'t str) -> (Cow<'t, str>, Redactions) {
        let mut counts = Redactions::default();
        let mut found = Vec::new();
        let out = scan(
            self,
            &self.index.detectors,
            text,
            None,
            &mut found,
            &mut counts,
        );
        (out, counts)
    }

    fn fingerprint(&self, value: &str) -> String {
        let mut out = String::from("hmac:");
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) {
            mac.update(value.as_bytes());
            for byte in &mac.finalize().into_bytes()[..8] {
                out.push_str(&format!("{byte:02x}"));
            }
        }
        out
    }

    /// The replacement text for `value` under `mask` (not for `Remove`).
    fn masked(&self, value: &str, mask: Mask) -> String {
        match mask {
            Mask::Remove => String::new(),
            Mask::Replace => REDACTED.to_owned(),
            Mask::LastFour => {
                let count = value.chars().count();
                if count < 8 {
                    REDACTED.to_owned()
                } else {
                    let last: String = value.chars().skip(count - 4).collect();
                    format!("****{last}")
                }
            }
            Mask::Fingerprint => self.fingerprint(value),
        }
    }
}
