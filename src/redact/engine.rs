//! The redaction pass over a JSON document.
//!
//! Hand-written rather than `serde_json::Value` round trip: a `Value` would reorder members,
//! round big numbers through `f64` and allocate every node, while this pass copies everything it
//! does not redact byte for byte (numbers, member order, escapes) and allocates only for what it
//! changes. The input is first checked by serde_json (syntax) and `str::from_utf8`, so the pass
//! only walks well-formed JSON; it still never indexes out of bounds and gives up (`NotJson`)
//! rather than guess.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Redactions;
use super::detect::Detector;
use super::rules::{AllowOnly, Mask, Rule, Segment, Target, exempt};
use crate::identity::Identity;

/// serde_json's own nesting limit; the pass recurses once per level.
const MAX_DEPTH: usize = 128;
const REDACTED: &str = "[REDACTED]";

/// The body is not JSON the pass can rewrite.
#[derive(Debug)]
pub(super) struct NotJson;

type Pass<T = ()> = Result<T, NotJson>;

/// Rules compiled for matching, in the order given.
#[derive(Clone)]
pub(super) struct Engine {
    pub(super) rules: Vec<Rule>,
    pub(super) allow: Vec<AllowOnly>,
    pub(super) key: Arc<[u8]>,
}

/// A (rule or allowlist path, position in its segments) pair: how far a path has matched.
type State = (u32, u32);

struct Walk<'a> {
    engine: &'a Engine,
    active: Vec<bool>,
    fields: Vec<(&'a [u8], usize)>,
    paths: Vec<(&'a [Segment], usize)>,
    detectors: Vec<(&'a dyn Detector, usize)>,
    allow: Option<&'a AllowOnly>,
    input: &'a [u8],
    pos: usize,
    out: Vec<u8>,
    counts: Redactions,
    found: Vec<Range<usize>>,
}

impl Engine {
    /// Redacts a JSON document; `None` in the result's first half when nothing changed.
    pub(super) fn redact(
        &self,
        input: &[u8],
        identity: Option<&Identity>,
        route: Option<&str>,
    ) -> Pass<(Option<Vec<u8>>, Redactions)> {
        std::str::from_utf8(input).map_err(|_| NotJson)?;
        serde_json::from_slice::<serde::de::IgnoredAny>(input).map_err(|_| NotJson)?;
        let active: Vec<bool> = self
            .rules
            .iter()
            .map(|rule| !exempt(&rule.except_roles, identity))
            .collect();
        let mut walk = Walk {
            engine: self,
            fields: Vec::new(),
            paths: Vec::new(),
            detectors: Vec::new(),
            allow: self.allow.iter().find(|a| a.applies(route, identity)),
            input,
            pos: 0,
            out: Vec::with_capacity(input.len()),
            counts: Redactions::default(),
            found: Vec::new(),
            active,
        };
        for (i, rule) in self.rules.iter().enumerate() {
            if !walk.active[i] {
                continue;
            }
            match &rule.target {
                Target::Field(name, _) => walk.fields.push((name, i)),
                Target::Path(path) => walk.paths.push((&path.segments, i)),
                Target::Detector(d) => walk.detectors.push((d.as_ref(), i)),
            }
        }
        let paths: Vec<State> = (0..walk.paths.len() as u32).map(|i| (i, 0)).collect();
        let allow: Option<Vec<State>> = walk
            .allow
            .map(|a| (0..a.paths.len() as u32).map(|i| (i, 0)).collect());
        walk.ws();
        // An allowlist lists members; a bare string or number at the top has none to allow.
        if walk.allow.is_some() && !matches!(walk.peek(), b'{' | b'[') {
            walk.counts.add("allow_only");
            return Ok((Some(b"null".to_vec()), walk.counts));
        }
        walk.value(&paths, allow.as_deref(), 0)?;
        let changed = walk.counts.total() > 0;
        Ok((changed.then_some(walk.out), walk.counts))
    }

    /// Scrubs free text with the detectors that apply to `identity` (all, for `None`).
    pub(super) fn scrub<'t>(&self, text: &'t str, counts: &mut Redactions) -> Cow<'t, str> {
        let detectors: Vec<(&dyn Detector, usize)> = self
            .rules
            .iter()
            .enumerate()
            .filter_map(|(i, rule)| match &rule.target {
                Target::Detector(d) => Some((d.as_ref(), i)),
                _ => None,
            })
            .collect();
        let mut found = Vec::new();
        scan(self, &detectors, text, &mut found, counts)
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

/// Runs `detectors` over `text`; returns it with every finding masked (borrowed if none).
fn scan<'t>(
    engine: &Engine,
    detectors: &[(&dyn Detector, usize)],
    text: &'t str,
    found: &mut Vec<Range<usize>>,
    counts: &mut Redactions,
) -> Cow<'t, str> {
    // (range, rule index), merged below.
    let mut hits: Vec<(Range<usize>, usize)> = Vec::new();
    for &(detector, rule) in detectors {
        found.clear();
        detector.find(text, found);
        for range in found.drain(..) {
            if range.start < range.end && text.get(range.clone()).is_some() {
                hits.push((range, rule));
            }
        }
    }
    if hits.is_empty() {
        return Cow::Borrowed(text);
    }
    hits.sort_by_key(|(range, _)| range.start);
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < hits.len() {
        let (mut range, rule) = hits[i].clone();
        i += 1;
        // Overlapping findings are masked as one, by the first rule's mask.
        while i < hits.len() && hits[i].0.start < range.end {
            range.end = range.end.max(hits[i].0.end);
            i += 1;
        }
        let (Some(before), Some(secret)) = (text.get(copied..range.start), text.get(range.clone()))
        else {
            continue;
        };
        out.push_str(before);
        let Some(rule_ref) = engine.rules.get(rule) else {
            continue;
        };
        out.push_str(&engine.masked(secret, rule_ref.mask));
        counts.add(rule_ref.name());
        copied = range.end;
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    Cow::Owned(out)
}

impl Walk<'_> {
    fn peek(&self) -> u8 {
        self.input.get(self.pos).copied().unwrap_or(0)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    fn expect_byte(&mut self, byte: u8) -> Pass {
        self.ws();
        if self.peek() != byte {
            return Err(NotJson);
        }
        self.pos += 1;
        self.ws();
        Ok(())
    }

    /// The string token at `pos` (quotes included) and whether it has escapes; moves past it.
    fn string_token(&mut self) -> Pass<(Range<usize>, bool)> {
        let start = self.pos;
        if self.peek() != b'"' {
            return Err(NotJson);
        }
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            let rest = self.input.get(i..).ok_or(NotJson)?;
            let at = memchr::memchr2(b'"', b'\\', rest).ok_or(NotJson)?;
            if rest[at] == b'\\' {
                escaped = true;
                i += at + 2;
            } else {
                i += at + 1;
                break;
            }
        }
        self.pos = i;
        Ok((start..i, escaped))
    }
}

/// The text of a string token.
fn decode(input: &[u8], token: Range<usize>, escaped: bool) -> Pass<Cow<'_, str>> {
    let raw = input.get(token).ok_or(NotJson)?;
    if escaped {
        serde_json::from_slice::<String>(raw)
            .map(Cow::Owned)
            .map_err(|_| NotJson)
    } else {
        let inner = raw.get(1..raw.len().saturating_sub(1)).ok_or(NotJson)?;
        std::str::from_utf8(inner)
            .map(Cow::Borrowed)
            .map_err(|_| NotJson)
    }
}

impl Walk<'_> {
    /// Moves past the value at `pos`; returns its span.
    fn skip_value(&mut self) -> Pass<Range<usize>> {
        let start = self.pos;
        let mut depth = 0usize;
        loop {
            match self.peek() {
                b'"' => {
                    self.string_token()?;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.pos += 1;
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1).ok_or(NotJson)?;
                    self.pos += 1;
                }
                0 if self.pos >= self.input.len() => return Err(NotJson),
                _ => {
                    // A scalar, or separators and whitespace inside a container.
                    self.pos += 1;
                    while !matches!(self.peek(), b',' | b'}' | b']' | b'"' | b'{' | b'[' | 0) {
                        self.pos += 1;
                    }
                    if depth == 0 {
                        let mut end = self.pos;
                        while end > start && self.input[end - 1].is_ascii_whitespace() {
                            end -= 1;
                        }
                        return Ok(start..end);
                    }
                    continue;
                }
            }
            if depth == 0 {
                return Ok(start..self.pos);
            }
        }
    }

    /// Writes a string with every detector finding masked.
    fn string(&mut self, token: Range<usize>, escaped: bool) -> Pass {
        let text = decode(self.input, token.clone(), escaped)?;
        let scrubbed = scan(
            self.engine,
            &self.detectors,
            &text,
            &mut self.found,
            &mut self.counts,
        );
        match scrubbed {
            Cow::Borrowed(_) => {
                let raw = self.input.get(token).ok_or(NotJson)?;
                self.out.extend_from_slice(raw);
            }
            Cow::Owned(new) => {
                serde_json::to_writer(&mut self.out, &new).map_err(|_| NotJson)?;
            }
        }
        Ok(())
    }

    /// Writes the replacement of a whole value masked by `rule`.
    fn mask_value(&mut self, span: Range<usize>, rule: usize) -> Pass {
        let raw = self.input.get(span.clone()).ok_or(NotJson)?;
        let text: Cow<'_, str> = match raw.first() {
            Some(b'"') => serde_json::from_slice::<String>(raw)
                .map(Cow::Owned)
                .map_err(|_| NotJson)?,
            _ => Cow::Borrowed(std::str::from_utf8(raw).map_err(|_| NotJson)?),
        };
        let is_scalar = !matches!(raw.first(), Some(b'{' | b'['));
        let Some(rule_ref) = self.engine.rules.get(rule) else {
            return Err(NotJson);
        };
        let mask = if is_scalar || rule_ref.mask == Mask::Fingerprint {
            rule_ref.mask
        } else {
            Mask::Replace
        };
        let replacement = self.engine.masked(&text, mask);
        serde_json::to_writer(&mut self.out, &replacement).map_err(|_| NotJson)?;
        self.counts.add(rule_ref.name());
        Ok(())
    }

    fn value(&mut self, paths: &[State], allow: Option<&[State]>, depth: usize) -> Pass {
        if depth > MAX_DEPTH {
            return Err(NotJson);
        }
        match self.peek() {
            b'{' => self.object(paths, allow, depth),
            b'[' => self.array(paths, allow, depth),
            b'"' => {
                let (token, escaped) = self.string_token()?;
                self.string(token, escaped)
            }
            _ => {
                let span = self.skip_value()?;
                self.number_or_literal(span)
            }
        }
    }

    /// Numbers are scanned too: a card number sent as a JSON number is still a card number.
    fn number_or_literal(&mut self, span: Range<usize>) -> Pass {
        let raw = self.input.get(span).ok_or(NotJson)?;
        let text = std::str::from_utf8(raw).map_err(|_| NotJson)?;
        if raw.len() >= 8 {
            let scrubbed = scan(
                self.engine,
                &self.detectors,
                text,
                &mut self.found,
                &mut self.counts,
            );
            if let Cow::Owned(new) = scrubbed {
                return serde_json::to_writer(&mut self.out, &new).map_err(|_| NotJson);
            }
        }
        self.out.extend_from_slice(raw);
        Ok(())
    }

    /// Advances path states by one step; returns the new states and the first rule (or allowed
    /// path) matched completely.
    fn advance<'s>(
        states: &[State],
        segments: impl Fn(u32) -> Option<&'s [Segment]>,
        matches: impl Fn(&Segment) -> bool,
    ) -> (Vec<State>, Option<u32>) {
        let mut next = Vec::new();
        let mut done = None;
        for &(which, at) in states {
            let Some(segs) = segments(which) else {
                continue;
            };
            if segs.get(at as usize).is_some_and(&matches) {
                if at as usize + 1 == segs.len() {
                    done = done.or(Some(which));
                } else {
                    next.push((which, at + 1));
                }
            }
        }
        (next, done)
    }

    /// What happens to a member or element: dropped by the allowlist, masked by a rule, or
    /// walked with these states.
    fn step(
        &mut self,
        paths: &[State],
        allow: Option<&[State]>,
        matches: impl Fn(&Segment) -> bool + Copy,
    ) -> Step {
        let engine_paths = &self.paths;
        let (child_paths, path_rule) = Self::advance(
            paths,
            |i| engine_paths.get(i as usize).map(|p| p.0),
            matches,
        );
        let child_allow = match (allow, self.allow) {
            (Some(states), Some(list)) => {
                let (next, done) = Self::advance(
                    states,
                    |i| list.paths.get(i as usize).map(|p| p.segments.as_slice()),
                    matches,
                );
                if done.is_some() {
                    None
                } else if next.is_empty() {
                    return Step::Drop;
                } else {
                    Some(next)
                }
            }
            _ => None,
        };
        let path_rule = path_rule.and_then(|i| self.paths.get(i as usize).map(|p| p.1));
        Step::Walk {
            paths: child_paths,
            allow: child_allow,
            rule: path_rule,
        }
    }

    fn field_rule(&self, key: &str) -> Option<usize> {
        if self.fields.is_empty() {
            return None;
        }
        // Normalized into a stack buffer: this runs for every member of every response.
        let mut name = [0u8; 64];
        let mut len = 0;
        for &b in key.as_bytes() {
            if b.is_ascii_alphanumeric() && len < name.len() {
                name[len] = b.to_ascii_lowercase();
                len += 1;
            }
        }
        let name = &name[..len];
        self.fields
            .iter()
            .find(|(field, _)| *field == name)
            .map(|&(_, rule)| rule)
    }

    /// A scalar where an allowlist expects a container is not on an allowed path.
    fn scalar_blocked(&self, allow: &Option<Vec<State>>) -> bool {
        allow.is_some() && !matches!(self.peek(), b'{' | b'[')
    }

    fn object(&mut self, paths: &[State], allow: Option<&[State]>, depth: usize) -> Pass {
        self.pos += 1;
        self.out.push(b'{');
        self.ws();
        let mut first = true;
        loop {
            match self.peek() {
                b'}' => {
                    self.pos += 1;
                    break;
                }
                b',' => {
                    self.pos += 1;
                    self.ws();
                }
                _ => {}
            }
            let (key_token, escaped) = self.string_token()?;
            let input = self.input;
            let key = decode(input, key_token.clone(), escaped)?;
            self.expect_byte(b':')?;
            let step = self.step(paths, allow, |seg| seg.matches_key(&key));
            let (child_paths, child_allow, path_rule) = match step {
                Step::Drop => {
                    self.skip_value()?;
                    self.counts.add("allow_only");
                    self.ws();
                    continue;
                }
                Step::Walk { paths, allow, rule } => (paths, allow, rule),
            };
            if self.scalar_blocked(&child_allow) {
                self.skip_value()?;
                self.counts.add("allow_only");
                self.ws();
                continue;
            }
            let rule = self.field_rule(&key).or(path_rule);
            let remove = rule
                .and_then(|r| self.engine.rules.get(r))
                .is_some_and(|r| r.mask == Mask::Remove);
            if remove {
                self.skip_value()?;
                if let Some(r) = rule.and_then(|r| self.engine.rules.get(r)) {
                    self.counts.add(r.name());
                }
                self.ws();
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            self.string(key_token, escaped)?;
            self.out.push(b':');
            match rule {
                Some(rule) => {
                    let span = self.skip_value()?;
                    self.mask_value(span, rule)?;
                }
                None => self.value(&child_paths, child_allow.as_deref(), depth + 1)?,
            }
            self.ws();
        }
        self.out.push(b'}');
        Ok(())
    }

    fn array(&mut self, paths: &[State], allow: Option<&[State]>, depth: usize) -> Pass {
        self.pos += 1;
        self.out.push(b'[');
        self.ws();
        let mut first = true;
        let mut index = 0usize;
        loop {
            match self.peek() {
                b']' => {
                    self.pos += 1;
                    break;
                }
                b',' => {
                    self.pos += 1;
                    self.ws();
                }
                _ => {}
            }
            if self.pos >= self.input.len() {
                return Err(NotJson);
            }
            let i = index;
            index += 1;
            let step = self.step(paths, allow, |seg| seg.matches_index(i));
            let (child_paths, child_allow, rule) = match step {
                Step::Drop => {
                    self.skip_value()?;
                    self.counts.add("allow_only");
                    self.ws();
                    continue;
                }
                Step::Walk { paths, allow, rule } => (paths, allow, rule),
            };
            let blocked = self.scalar_blocked(&child_allow);
            let remove = rule
                .and_then(|r| self.engine.rules.get(r))
                .is_some_and(|r| r.mask == Mask::Remove);
            if blocked || remove {
                self.skip_value()?;
                let name = match rule.and_then(|r| self.engine.rules.get(r)) {
                    Some(r) if !blocked => r.name(),
                    _ => "allow_only",
                };
                self.counts.add(name);
                self.ws();
                continue;
            }
            if !first {
                self.out.push(b',');
            }
            first = false;
            match rule {
                Some(rule) => {
                    let span = self.skip_value()?;
                    self.mask_value(span, rule)?;
                }
                None => self.value(&child_paths, child_allow.as_deref(), depth + 1)?,
            }
            self.ws();
        }
        self.out.push(b']');
        Ok(())
    }
}

enum Step {
    Drop,
    Walk {
        paths: Vec<State>,
        allow: Option<Vec<State>>,
        rule: Option<usize>,
    },
}
