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

/// Arrays and objects nest at most this deep. serde_json refuses the 128th level, so whatever
/// passes here also parses there; the pass recurses once per level.
const MAX_DEPTH: usize = 127;
/// Documents in strings nest at most this deep (a document in a string of a document in a
/// string of the body is 2).
const MAX_NESTED: u8 = 4;
const REDACTED: &str = "[REDACTED]";

/// The body is not JSON the pass can rewrite.
#[derive(Debug)]
pub(super) struct NotJson;

type Pass<T = ()> = Result<T, NotJson>;

/// Rules compiled for matching, in the order given.
#[derive(Clone)]
pub(super) struct Engine {
    rules: Vec<Rule>,
    pub(super) allow: Vec<AllowOnly>,
    pub(super) key: Arc<[u8]>,
    /// Strings holding a JSON document are redacted as documents (see the module docs).
    pub(super) nested: bool,
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
    /// Some rule spares some roles: only then is a response's rule set worked out per caller.
    exemptions: bool,
}

impl RuleIndex {
    fn of(rules: &[Rule]) -> Self {
        let mut index = Self::default();
        for (i, rule) in rules.iter().enumerate() {
            index.exemptions |= !rule.except_roles.is_empty();
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

struct Walk<'a> {
    engine: &'a Engine,
    /// The engine's, unless a rule spares this caller.
    fields: Cow<'a, [(Box<[u8]>, usize)]>,
    paths: SmallVec<[(&'a [Segment], usize); 4]>,
    detectors: Cow<'a, [Scanner]>,
    allow: Option<&'a AllowOnly>,
    /// The input, checked to be UTF-8 once: every string's content is then a slice of it.
    text: &'a str,
    input: &'a [u8],
    pos: usize,
    /// The input up to `copied`, with the changes made so far; empty until the first change.
    out: Vec<u8>,
    copied: usize,
    changed: bool,
    counts: Redactions,
    found: Vec<Range<usize>>,
    /// How many more levels of documents in strings may be walked.
    nested_left: u8,
    /// The walk stopped at [`MAX_DEPTH`] (not at a syntax error).
    deep: bool,
}

/// What came of walking a string as a document.
enum Nested {
    /// Nothing to redact in it.
    Unchanged,
    /// The redacted document.
    Changed(Vec<u8>),
    /// It is not a JSON document: the string is text.
    NotJson,
    /// A document, but nested too deep to be walked.
    TooDeep,
}

/// Where a list of members or elements stands, to cut dropped ones out with their commas.
#[derive(Default)]
struct Items {
    /// An earlier item stays in the output.
    kept: bool,
    /// The end of the previous item.
    prev_end: usize,
}

impl Engine {
    pub(super) fn new(key: Arc<[u8]>) -> Self {
        Self {
            rules: Vec::new(),
            allow: Vec::new(),
            key,
            nested: true,
            index: RuleIndex::default(),
        }
    }

    pub(super) fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Adds `rule`, or replaces the rule with the same target.
    pub(super) fn add_rule(&mut self, rule: Rule) {
        match self.rules.iter_mut().find(|r| r.same_target(&rule)) {
            Some(existing) => *existing = rule,
            None => self.rules.push(rule),
        }
        self.index = RuleIndex::of(&self.rules);
    }

    /// Redacts a JSON document; `None` in the result's first half when nothing changed.
    pub(super) fn redact(
        &self,
        input: &[u8],
        identity: Option<&Identity>,
        route: Option<&str>,
    ) -> Pass<(Option<Vec<u8>>, Redactions)> {
        // Once for the whole input: cheaper than once per string, and outside strings any
        // non-ASCII byte is a syntax error anyway.
        let text = std::str::from_utf8(input).map_err(|_| NotJson)?;
        let index = &self.index;
        let spared = |rule: usize| {
            self.rules
                .get(rule)
                .is_some_and(|r| exempt(&r.except_roles, identity))
        };
        let sparing = index.exemptions && identity.is_some();
        let mut walk = Walk {
            engine: self,
            fields: if sparing {
                let kept = index.fields.iter().filter(|(_, rule)| !spared(*rule));
                Cow::Owned(kept.cloned().collect())
            } else {
                Cow::Borrowed(&index.fields)
            },
            paths: index
                .paths
                .iter()
                .filter(|rule| !(sparing && spared(**rule)))
                .filter_map(|&rule| match &self.rules.get(rule)?.target {
                    Target::Path(path) => Some((path.segments.as_slice(), rule)),
                    _ => None,
                })
                .collect(),
            detectors: if sparing {
                let kept = index.detectors.iter().filter(|s| !spared(s.rule));
                Cow::Owned(kept.cloned().collect())
            } else {
                Cow::Borrowed(&index.detectors)
            },
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
    pub(super) fn scrub<'t>(&self, text: &'t str, counts: &mut Redactions) -> Cow<'t, str> {
        let mut found = Vec::new();
        scan(self, &self.index.detectors, text, &mut found, counts)
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

/// A detector, its rule and its [`min_len`](Detector::min_len), asked once rather than once
/// per string.
#[derive(Clone)]
struct Scanner {
    detector: Arc<dyn Detector>,
    rule: usize,
    min_len: usize,
}

impl Scanner {
    fn new(detector: Arc<dyn Detector>, rule: usize) -> Self {
        Self {
            min_len: detector.min_len(),
            detector,
            rule,
        }
    }
}

/// Runs `detectors` over `text`; returns it with every finding masked (borrowed if none).
fn scan<'t>(
    engine: &Engine,
    detectors: &[Scanner],
    text: &'t str,
    found: &mut Vec<Range<usize>>,
    counts: &mut Redactions,
) -> Cow<'t, str> {
    // (range, rule index), merged below.
    let mut hits: Vec<(Range<usize>, usize)> = Vec::new();
    for scanner in detectors {
        if text.len() < scanner.min_len {
            continue;
        }
        found.clear();
        scanner.detector.find(text, found);
        for range in found.drain(..) {
            if range.start < range.end && text.get(range.clone()).is_some() {
                hits.push((range, scanner.rule));
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
        // The last four kept by `LastFour` must not join the digits that follow into a number
        // a detector would flag (`****4114-111-...` out of a longer digit run): then nothing is
        // kept.
        let b = text.as_bytes();
        let joins = b.get(range.end).is_some_and(u8::is_ascii_digit)
            || matches!(b.get(range.end), Some(b' ' | b'-'))
                && b.get(range.end + 1).is_some_and(u8::is_ascii_digit);
        let mask = match rule_ref.mask {
            Mask::LastFour if joins => Mask::Replace,
            mask => mask,
        };
        out.push_str(&engine.masked(secret, mask));
        counts.add(rule_ref.name());
        copied = range.end;
    }
    out.push_str(text.get(copied..).unwrap_or_default());
    Cow::Owned(out)
}

/// Whether `text` may be a JSON object or array, or a JSON string (JSON encoded twice, which
/// may hold one): `{`, `[` or `"` first and the matching character last, whitespace aside.
/// Cheap, so that only such strings are walked as documents.
fn looks_like_document(text: &str) -> bool {
    let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    let b = trimmed.as_bytes();
    b.len() >= 2
        && matches!(
            (b.first(), b.last()),
            (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']')) | (Some(b'"'), Some(b'"'))
        )
}

/// The first `"`, `\` or control character (< 0x20) in `b` at or after `from`: where a string's
/// plain run ends. Eight bytes at a time, since most strings are short and a SIMD search's set-up
/// would cost more than it saves.
fn string_stop(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let mut i = from;
    while let Some(chunk) = b.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        // Flags zero bytes (and bytes below 0x20), exactly up to the first one.
        let stops = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let stops = stops & HIGH;
        if stops != 0 {
            return Some(i + (stops.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    let rest = b.get(i..)?;
    rest.iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|at| i + at)
}

/// The end of the escape sequence whose backslash is at `at - 1`. Surrogates must come in
/// pairs, as serde_json requires for a string: a lone one cannot be turned into UTF-8.
fn escape_end(b: &[u8], at: usize) -> Pass<usize> {
    match b.get(at) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 1),
        Some(b'u') => match hex4(b, at + 1)? {
            0xD800..=0xDBFF
                if b.get(at + 5..at + 7) == Some(b"\\u")
                    && matches!(hex4(b, at + 7)?, 0xDC00..=0xDFFF) =>
            {
                Ok(at + 11)
            }
            0xD800..=0xDFFF => Err(NotJson),
            _ => Ok(at + 5),
        },
        _ => Err(NotJson),
    }
}

/// The four hex digits at `at` as a UTF-16 code unit.
fn hex4(b: &[u8], at: usize) -> Pass<u32> {
    let digits = b.get(at..at + 4).ok_or(NotJson)?;
    digits.iter().try_fold(0, |n, &d| {
        let d = char::from(d).to_digit(16).ok_or(NotJson)?;
        Ok(n << 4 | d)
    })
}

impl<'a> Walk<'a> {
    fn peek(&self) -> u8 {
        self.input.get(self.pos).copied().unwrap_or(0)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    /// Nothing but whitespace may follow the document.
    fn end(&mut self) -> Pass {
        self.ws();
        if self.pos == self.input.len() {
            Ok(())
        } else {
            Err(NotJson)
        }
    }

    /// Moves past `:` between a member's name and value, with the whitespace around it.
    fn colon(&mut self) -> Pass {
        self.ws();
        if self.peek() != b':' {
            return Err(NotJson);
        }
        self.pos += 1;
        self.ws();
        Ok(())
    }

    /// After a member or element: `true` at a `,` (moved past it and the whitespace after it, to
    /// the next item), `false` at the container's `close` (moved past it).
    fn more(&mut self, close: u8) -> Pass<bool> {
        self.ws();
        let byte = self.peek();
        self.pos += 1;
        if byte == b',' {
            self.ws();
            Ok(true)
        } else if byte == close {
            Ok(false)
        } else {
            Err(NotJson)
        }
    }

    /// Moves past the string token at `pos`; returns its span (quotes included) and whether it
    /// has escapes. Raw control characters and escapes RFC 8259 does not define are refused.
    fn string_token(&mut self) -> Pass<(Range<usize>, bool)> {
        let start = self.pos;
        if self.peek() != b'"' {
            return Err(NotJson);
        }
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            i = string_stop(self.input, i).ok_or(NotJson)?;
            match self.input.get(i) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    i = escape_end(self.input, i + 1)?;
                }
                _ => return Err(NotJson),
            }
        }
        self.pos = i + 1;
        Ok((start..self.pos, escaped))
    }

    /// Moves past the number at `pos`: `-`, then `0` or digits without a leading zero, then
    /// optionally `.` and digits, then optionally `e` or `E`, a sign and digits.
    fn number(&mut self) -> Pass<Range<usize>> {
        let start = self.pos;
        if self.peek() == b'-' {
            self.pos += 1;
        }
        match self.peek() {
            b'0' => self.pos += 1,
            b'1'..=b'9' => self.digits()?,
            _ => return Err(NotJson),
        }
        if self.peek() == b'.' {
            self.pos += 1;
            self.digits()?;
        }
        if matches!(self.peek(), b'e' | b'E') {
            self.pos += 1;
            if matches!(self.peek(), b'+' | b'-') {
                self.pos += 1;
            }
            self.digits()?;
        }
        Ok(start..self.pos)
    }

    /// Moves past one or more digits.
    fn digits(&mut self) -> Pass {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        self.pos += n;
        if n == 0 { Err(NotJson) } else { Ok(()) }
    }

    /// Moves past a string, number, `true`, `false` or `null`; returns its span.
    fn scalar(&mut self) -> Pass<Range<usize>> {
        let word: &[u8] = match self.peek() {
            b'"' => return self.string_token().map(|(span, _)| span),
            b'-' | b'0'..=b'9' => return self.number(),
            b't' => b"true",
            b'f' => b"false",
            b'n' => b"null",
            _ => return Err(NotJson),
        };
        let start = self.pos;
        if self.input.get(start..start + word.len()) != Some(word) {
            return Err(NotJson);
        }
        self.pos += word.len();
        Ok(start..self.pos)
    }

    /// Moves past the value at `pos` (inside `depth` arrays and objects), checking it as
    /// strictly as [`value`](Self::value) but writing nothing; returns its span.
    fn skip(&mut self, depth: usize) -> Pass<Range<usize>> {
        let start = self.pos;
        let close = match self.peek() {
            b'{' => b'}',
            b'[' => b']',
            _ => return self.scalar(),
        };
        if depth >= MAX_DEPTH {
            self.deep = true;
            return Err(NotJson);
        }
        self.pos += 1;
        self.ws();
        if self.peek() == close {
            self.pos += 1;
            return Ok(start..self.pos);
        }
        loop {
            if close == b'}' {
                self.string_token()?;
                self.colon()?;
            }
            self.skip(depth + 1)?;
            if !self.more(close)? {
                return Ok(start..self.pos);
            }
        }
    }

    /// Writes the input up to `span` and then `with` instead of `span`. Spans come in input
    /// order; one that starts before what is written already is refused, not overlapped.
    fn replace(&mut self, span: Range<usize>, with: &[u8]) -> Pass {
        let before = self.input.get(self.copied..span.start).ok_or(NotJson)?;
        if !self.changed {
            self.changed = true;
            self.out.reserve(self.input.len());
        }
        self.out.extend_from_slice(before);
        self.out.extend_from_slice(with);
        self.copied = span.end;
        Ok(())
    }

    /// Replaces `span` with `text` as a JSON string.
    fn replace_with_string(&mut self, span: Range<usize>, text: &str) -> Pass {
        self.replace(span.start..span.start, b"")?;
        serde_json::to_writer(&mut self.out, text).map_err(|_| NotJson)?;
        self.copied = span.end;
        Ok(())
    }

    /// Cuts a dropped member or element out with one comma next to it: the one before it when
    /// an earlier item stays, else the one after it (if `more` items follow, up to the next).
    fn cut(&mut self, items: &Items, span: Range<usize>, more: bool) -> Pass {
        let cut = if items.kept {
            items.prev_end..span.end
        } else if more {
            span.start..self.pos
        } else {
            span
        };
        self.replace(cut, b"")
    }

    /// The text of the string token `token`.
    fn decode(&self, token: Range<usize>, escaped: bool) -> Pass<Cow<'a, str>> {
        if escaped {
            // Checked already: this only decodes the escapes.
            let raw = self.input.get(token).ok_or(NotJson)?;
            serde_json::from_slice::<String>(raw)
                .map(Cow::Owned)
                .map_err(|_| NotJson)
        } else {
            let text: &'a str = self.text;
            text.get(token.start + 1..token.end.saturating_sub(1))
                .map(Cow::Borrowed)
                .ok_or(NotJson)
        }
    }

    /// Masks every detector finding in the string `token`, whose text is `text`.
    fn scrub(&mut self, token: Range<usize>, text: &str) -> Pass {
        let scrubbed = scan(
            self.engine,
            &self.detectors,
            text,
            &mut self.found,
            &mut self.counts,
        );
        match scrubbed {
            Cow::Borrowed(_) => Ok(()),
            Cow::Owned(new) => self.replace_with_string(token, &new),
        }
    }

    /// Writes the replacement of a whole value masked by `rule`.
    fn mask_value(&mut self, span: Range<usize>, rule: usize) -> Pass {
        let raw = self.input.get(span.clone()).ok_or(NotJson)?;
        let text: Cow<'_, str> = match raw.first() {
            Some(b'"') => self.decode(span.clone(), true)?,
            _ => Cow::Borrowed(self.text.get(span.clone()).ok_or(NotJson)?),
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
        self.replace_with_string(span, &replacement)?;
        self.counts.add(rule_ref.name());
        Ok(())
    }

    /// Walks the value at `pos`, inside `depth` arrays and objects.
    fn value(&mut self, paths: &[State], allow: Option<&[State]>, depth: usize) -> Pass {
        match self.peek() {
            b'{' => self.object(paths, allow, depth),
            b'[' => self.array(paths, allow, depth),
            b'"' => {
                let (token, escaped) = self.string_token()?;
                let text = self.decode(token.clone(), escaped)?;
                self.string_value(token, &text, paths, depth)
            }
            b'-' | b'0'..=b'9' => {
                let span = self.number()?;
                self.number_value(span)
            }
            _ => self.scalar().map(drop),
        }
    }

    /// A string value (at `depth`, with path `paths`): a document in it is walked as one, any
    /// other text is scanned by the detectors.
    fn string_value(
        &mut self,
        token: Range<usize>,
        text: &str,
        paths: &[State],
        depth: usize,
    ) -> Pass {
        if self.engine.nested && looks_like_document(text) {
            let outcome = if self.nested_left == 0 {
                Nested::TooDeep
            } else {
                self.nested(text, paths, depth)
            };
            match outcome {
                Nested::Unchanged => return Ok(()),
                Nested::Changed(out) => {
                    let out = std::str::from_utf8(&out).map_err(|_| NotJson)?;
                    return self.replace_with_string(token, out);
                }
                // Too deep, or document-shaped but refused by this walk while a lenient reader
                // may take it (a lone surrogate, `NaN`, trailing data): it can hold a field this
                // walk would mask, or an escaped secret the detectors cannot see in the raw
                // text, so it is masked whole. Without a `"` nothing in it can be a member name
                // or an escape, and the detectors see it all (`[citation needed]` stays).
                Nested::NotJson if !text.contains('"') => {}
                Nested::TooDeep | Nested::NotJson => {
                    self.replace_with_string(token, REDACTED)?;
                    self.counts.add("nested_json");
                    return Ok(());
                }
            }
        }
        self.scrub(token, text)
    }

    /// A walk at the start of `text` with no rules of its own yet (the caller sets them), nothing
    /// written and `nested_left` documents still allowed inside strings.
    fn over(engine: &'a Engine, text: &'a str, nested_left: u8) -> Self {
        Walk {
            engine,
            fields: Cow::Borrowed(&[]),
            paths: SmallVec::new(),
            detectors: Cow::Borrowed(&[]),
            allow: None,
            text,
            input: text.as_bytes(),
            pos: 0,
            out: Vec::new(),
            copied: 0,
            changed: false,
            counts: Redactions::default(),
            found: Vec::new(),
            nested_left,
            deep: false,
        }
    }

    /// Walks `text` as a document whose root sits where its string does (at `depth`, with path
    /// `paths`): the same rules and detectors, one level of [`MAX_NESTED`] less. Its counts are
    /// added to this walk's only when it is a document.
    fn nested(&mut self, text: &str, paths: &[State], depth: usize) -> Nested {
        let mut walk = Walk {
            fields: Cow::Borrowed(&self.fields),
            paths: self.paths.iter().copied().collect(),
            detectors: Cow::Borrowed(&self.detectors),
            ..Walk::over(self.engine, text, self.nested_left.saturating_sub(1))
        };
        walk.ws();
        let walked = walk
            .value(paths, None, depth)
            .and_then(|()| walk.end())
            .and_then(|()| {
                if walk.changed {
                    walk.replace(text.len()..text.len(), b"")
                } else {
                    Ok(())
                }
            });
        let (deep, changed, out, counts) = (walk.deep, walk.changed, walk.out, walk.counts);
        match walked {
            Err(NotJson) if deep => Nested::TooDeep,
            Err(NotJson) => Nested::NotJson,
            Ok(()) => {
                self.counts.merge(&counts);
                if changed {
                    Nested::Changed(out)
                } else {
                    Nested::Unchanged
                }
            }
        }
    }

    /// Numbers are scanned too: a card number sent as a JSON number is still a card number.
    fn number_value(&mut self, span: Range<usize>) -> Pass {
        if span.len() < 8 {
            return Ok(());
        }
        let text: &'a str = self.text;
        let text = text.get(span.clone()).ok_or(NotJson)?;
        self.scrub(span, text)
    }

    /// Advances path states by one step; returns the new states and the first rule (or allowed
    /// path) matched completely.
    fn advance<'s>(
        states: &[State],
        segments: impl Fn(u32) -> Option<&'s [Segment]>,
        matches: impl Fn(&Segment) -> bool,
    ) -> (States, Option<u32>) {
        let mut next = States::new();
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
        // The first byte before the rest: a `memcmp` call per same-length name cost more.
        self.fields
            .iter()
            .find(|(field, _)| field.first() == name.first() && **field == *name)
            .map(|&(_, rule)| rule)
    }

    /// A scalar where an allowlist expects a container is not on an allowed path.
    fn scalar_blocked(&self, allow: &Option<States>) -> bool {
        allow.is_some() && !matches!(self.peek(), b'{' | b'[')
    }

    fn object(&mut self, paths: &[State], allow: Option<&[State]>, depth: usize) -> Pass {
        if depth >= MAX_DEPTH {
            self.deep = true;
            return Err(NotJson);
        }
        self.pos += 1;
        self.ws();
        if self.peek() == b'}' {
            self.pos += 1;
            return Ok(());
        }
        let mut items = Items::default();
        loop {
            let start = self.pos;
            let (key_token, escaped) = self.string_token()?;
            let key = self.decode(key_token.clone(), escaped)?;
            self.colon()?;
            let dropped = match self.step(paths, allow, |seg| seg.matches_key(&key)) {
                Step::Drop => Some("allow_only"),
                Step::Walk { allow, .. } if self.scalar_blocked(&allow) => Some("allow_only"),
                Step::Walk {
                    paths: child_paths,
                    allow: child_allow,
                    rule: path_rule,
                } => {
                    let rule = self.field_rule(&key).or(path_rule);
                    match rule.and_then(|r| self.engine.rules.get(r)) {
                        Some(r) if r.mask == Mask::Remove => Some(r.name()),
                        _ => {
                            self.scrub(key_token, &key)?;
                            match rule {
                                Some(rule) => {
                                    let span = self.skip(depth + 1)?;
                                    self.mask_value(span, rule)?;
                                }
                                None => {
                                    self.value(&child_paths, child_allow.as_deref(), depth + 1)?
                                }
                            }
                            None
                        }
                    }
                }
            };
            if dropped.is_some() {
                self.skip(depth + 1)?;
            }
            let end = self.pos;
            let more = self.more(b'}')?;
            self.item_done(&mut items, start..end, more, dropped)?;
            if !more {
                return Ok(());
            }
        }
    }

    fn array(&mut self, paths: &[State], allow: Option<&[State]>, depth: usize) -> Pass {
        if depth >= MAX_DEPTH {
            self.deep = true;
            return Err(NotJson);
        }
        self.pos += 1;
        self.ws();
        if self.peek() == b']' {
            self.pos += 1;
            return Ok(());
        }
        let mut items = Items::default();
        let mut index = 0usize;
        loop {
            let start = self.pos;
            let i = index;
            index += 1;
            let dropped = match self.step(paths, allow, |seg| seg.matches_index(i)) {
                Step::Drop => Some("allow_only"),
                Step::Walk { allow, .. } if self.scalar_blocked(&allow) => Some("allow_only"),
                Step::Walk {
                    paths: child_paths,
                    allow: child_allow,
                    rule,
                } => match rule.and_then(|r| self.engine.rules.get(r)) {
                    Some(r) if r.mask == Mask::Remove => Some(r.name()),
                    _ => {
                        match rule {
                            Some(rule) => {
                                let span = self.skip(depth + 1)?;
                                self.mask_value(span, rule)?;
                            }
                            None => self.value(&child_paths, child_allow.as_deref(), depth + 1)?,
                        }
                        None
                    }
                },
            };
            if dropped.is_some() {
                self.skip(depth + 1)?;
            }
            let end = self.pos;
            let more = self.more(b']')?;
            self.item_done(&mut items, start..end, more, dropped)?;
            if !more {
                return Ok(());
            }
        }
    }

    /// Records a member or element just walked; one `dropped` (by the rule of that name) is cut
    /// out and counted.
    fn item_done(
        &mut self,
        items: &mut Items,
        span: Range<usize>,
        more: bool,
        dropped: Option<&'static str>,
    ) -> Pass {
        let end = span.end;
        match dropped {
            Some(name) => {
                self.cut(items, span, more)?;
                self.counts.add(name);
            }
            None => items.kept = true,
        }
        items.prev_end = end;
        Ok(())
    }
}

enum Step {
    Drop,
    Walk {
        paths: States,
        allow: Option<States>,
        rule: Option<usize>,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::{AllowOnly, Mask, RedactLayer, Rule};

    /// The default rules, a `Remove` rule and an allowlist: every way of walking past a value
    /// (walked, masked, removed, dropped) must check it alike.
    fn layers() -> [RedactLayer; 3] {
        let remove = RedactLayer::new().rule(Rule::field("gone").mask(Mask::Remove));
        let allow = RedactLayer::new().allow_only(AllowOnly::paths(["$.kept", "$[0]"]).unwrap());
        [RedactLayer::new(), remove, allow]
    }

    fn accepts(input: &[u8]) -> bool {
        let [plain, ..] = layers();
        plain.redact_json(input, None, None).is_some()
    }

    /// Refused by the pass in every position (top level, walked, masked, removed, dropped) and
    /// by serde_json.
    #[track_caller]
    fn refused(bad: &str) {
        assert!(
            serde_json::from_str::<Value>(bad).is_err(),
            "serde_json accepts {bad:?}"
        );
        assert!(!accepts(bad.as_bytes()), "top level {bad:?}");
        for doc in [
            format!("[{bad}]"),
            format!(r#"{{"a":{bad}}}"#),
            format!(r#"{{"password":{bad}}}"#),
            format!(r#"{{"gone":{bad}}}"#),
            format!(r#"{{"dropped":{bad},"kept":1}}"#),
            format!(r#"[1,{bad}]"#),
        ] {
            for layer in layers() {
                assert!(
                    layer.redact_json(doc.as_bytes(), None, None).is_none(),
                    "{doc:?}"
                );
            }
        }
    }

    #[track_caller]
    fn accepted(good: &str) {
        assert!(serde_json::from_str::<Value>(good).is_ok(), "{good:?}");
        for doc in [
            good.to_owned(),
            format!(r#"{{"a":{good},"password":{good},"gone":{good},"dropped":{good}}}"#),
        ] {
            for layer in layers() {
                let (out, _) = layer.redact_json(doc.as_bytes(), None, None).expect(&doc);
                serde_json::from_slice::<Value>(&out).expect("output is JSON");
            }
        }
    }

    #[test]
    fn literals_are_exact() {
        for bad in [
            "tru",
            "nul",
            "fals",
            "True",
            "NULL",
            "nulll",
            "truefalse",
            "t",
            "undefined",
        ] {
            refused(bad);
        }
        for good in ["true", "false", "null"] {
            accepted(good);
        }
    }

    #[test]
    fn numbers_follow_the_grammar() {
        for bad in [
            "01",
            "-01",
            "00",
            "-",
            "+1",
            ".5",
            "1.",
            "1.e5",
            "-.5",
            "1e",
            "1e+",
            "1E-",
            "1.5e",
            "0x10",
            "1_000",
            "Infinity",
            "-Infinity",
            "NaN",
            "1..2",
            "1e5.5",
            "--1",
            "0-1",
        ] {
            refused(bad);
        }
        for good in [
            "0",
            "-0",
            "1",
            "-1",
            "10",
            "0.5",
            "-0.0",
            "1e5",
            "1E+5",
            "1e-5",
            "0e0",
            "1.25E-10",
            "12345678901234567890123",
        ] {
            accepted(good);
        }
    }

    #[test]
    fn strings_refuse_raw_controls_and_unknown_escapes() {
        for bad in [
            "\"a\nb\"",
            "\"\t\"",
            "\"\u{0}\"",
            "\"\u{1f}\"",
            r#""\x41""#,
            r#""\a""#,
            r#""\'""#,
            r#""\U0041""#,
            r#""\u12""#,
            r#""\u12G4""#,
            r#""\u""#,
            r#""\""#,
            r#""abc"#,
            "\"",
            "'a'",
        ] {
            refused(bad);
        }
        for good in [
            r#""""#,
            r#""\"\\\/\b\f\n\r\t""#,
            r#""\u0041\u00e9\u20AC""#,
            r#""\u0000""#,
            "\"\u{7f}\u{e9}\u{20ac}\u{1f600}\"",
        ] {
            accepted(good);
        }
    }

    /// A `\u` escape of a lone surrogate cannot become UTF-8: serde_json refuses it in a
    /// `String` (though not when ignoring a value), and so does the pass, wherever it is.
    #[test]
    fn surrogates_come_in_pairs() {
        for bad in [
            r#""\uD800""#,
            r#""\udfff""#,
            r#""\uDC00\uD800""#,
            r#""\uD800\u0041""#,
            r#""\uD800x""#,
            r#""\uD800\n""#,
            r#""\uDBFF\uDBFF""#,
            r#""\uD83D\uDE0""#,
        ] {
            refused(bad);
        }
        accepted(r#""\uD83D\uDE00 \udbff\udfff""#);
    }

    #[test]
    fn strings_are_utf8() {
        for bad in [
            &b"\"\xff\""[..],
            b"\"\xc0\xaf\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xe2\x82\"",
            b"\"\x80\"",
            b"{\"\xf5\x80\x80\x80\":1}",
        ] {
            assert!(serde_json::from_slice::<Value>(bad).is_err());
            assert!(!accepts(bad), "{bad:?}");
        }
    }

    #[test]
    fn commas_colons_and_brackets_are_exact() {
        for bad in [
            "[1,]",
            "[,1]",
            "[1,,2]",
            "[1 2]",
            "[",
            "]",
            "[1",
            "[1,",
            r#"{"a":1,}"#,
            "{,}",
            r#"{"a" 1}"#,
            r#"{"a"::1}"#,
            r#"{"a":}"#,
            r#"{"a"}"#,
            "{1:2}",
            "{a:1}",
            r#"{"a":1"#,
            r#"{"a":1 "b":2}"#,
            "[}",
            "{]",
            r#"{"a",1}"#,
        ] {
            refused(bad);
        }
        accepted(" \t\n\r[ 1 ,\n\t2 ] ");
        accepted(r#"{ "a" : [ ] , "b" : { } }"#);
    }

    #[test]
    fn nothing_but_whitespace_follows() {
        for bad in [
            "",
            " ",
            "{} x",
            "1 2",
            "{}}",
            "[]]",
            r#""a""b""#,
            "{}\u{0}",
            "null,",
            "\u{feff}{}",
            "\u{c}{}",
            "{}\u{b}",
            "1/",
        ] {
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad:?}");
            for layer in layers() {
                assert!(
                    layer.redact_json(bad.as_bytes(), None, None).is_none(),
                    "{bad:?}"
                );
            }
        }
    }

    /// Numbers beyond `f64` are JSON (RFC 8259 sets no range) and are copied as sent, where
    /// serde_json's `Value` gives up.
    #[test]
    fn huge_numbers_pass() {
        for doc in ["1e400", "[-1e400]", r#"{"a":1e999999}"#] {
            assert!(serde_json::from_str::<Value>(doc).is_err());
            let (out, _) = RedactLayer::new()
                .redact_json(doc.as_bytes(), None, None)
                .unwrap();
            assert_eq!(&*out, doc.as_bytes());
        }
        // Still refused for what else is wrong (serde_json ignoring values checks no UTF-8).
        assert!(!accepts(b"{\"a\":1e400,\"password\":\"\xb1\"}"));
        assert!(!accepts(br#"[1e400,"\uD800"]"#));
    }

    fn nested(levels: usize, open: &str, inner: &str, close: &str) -> String {
        format!("{}{inner}{}", open.repeat(levels), close.repeat(levels))
    }

    /// 127 levels of arrays and objects pass, 128 do not: serde_json's limit, in every position.
    #[test]
    fn nesting_stops_where_serde_json_does() {
        for (open, close) in [("[", "]"), (r#"{"a":"#, "}"), (r#"{"password":"#, "}")] {
            for (levels, ok) in [(126, true), (127, true), (128, false), (129, false)] {
                let doc = nested(levels, open, "1", close);
                assert_eq!(serde_json::from_str::<Value>(&doc).is_ok(), ok, "{levels}");
                for layer in layers() {
                    assert_eq!(
                        layer.redact_json(doc.as_bytes(), None, None).is_some(),
                        ok,
                        "{levels} {open}"
                    );
                }
            }
        }
        // Under a member that is masked, removed or dropped: 1 + 126 levels.
        for key in ["password", "gone", "dropped"] {
            for (levels, ok) in [(126, true), (127, false)] {
                let doc = format!(r#"{{"{key}":{},"kept":1}}"#, nested(levels, "[", "", "]"));
                assert_eq!(serde_json::from_str::<Value>(&doc).is_ok(), ok);
                for layer in layers() {
                    assert_eq!(layer.redact_json(doc.as_bytes(), None, None).is_some(), ok);
                }
            }
        }
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        for open in [
            "[",
            r#"{"a":"#,
            r#"{"password":"#,
            r#"{"gone":"#,
            r#"{"x":"#,
        ] {
            let doc = open.repeat(100_000);
            for layer in layers() {
                assert!(layer.redact_json(doc.as_bytes(), None, None).is_none());
            }
        }
    }

    /// Removed members and elements go with one comma each, whatever stays around them, and the
    /// whitespace of what stays is kept.
    #[test]
    fn removed_items_take_their_commas() {
        let layer = RedactLayer::empty()
            .rule(Rule::field("x").mask(Mask::Remove))
            .rule(Rule::path("$.list[1]").unwrap().mask(Mask::Remove))
            .rule(Rule::path("$.list[2]").unwrap().mask(Mask::Remove));
        for (doc, want) in [
            (r#"{"x":1}"#, "{}"),
            (r#"{ "x" : 1 }"#, "{  }"),
            (r#"{"x":1,"a":2}"#, r#"{"a":2}"#),
            (r#"{"a":2,"x":1}"#, r#"{"a":2}"#),
            (r#"{"x":1,"x":[2],"a":2,"x":3,"x":4}"#, r#"{"a":2}"#),
            (
                "{\n  \"a\": 2,\n  \"x\": 1,\n  \"b\": 3\n}",
                "{\n  \"a\": 2,\n  \"b\": 3\n}",
            ),
            (r#"{"list":[0,1,2,3]}"#, r#"{"list":[0,3]}"#),
            (r#"{"list":[0, 1, 2]}"#, r#"{"list":[0]}"#),
        ] {
            let (out, _) = layer.redact_json(doc.as_bytes(), None, None).unwrap();
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{doc}");
        }
        let layer = RedactLayer::empty()
            .rule(Rule::path("$[0]").unwrap().mask(Mask::Remove))
            .rule(Rule::path("$[1]").unwrap().mask(Mask::Remove));
        for (doc, want) in [("[1]", "[]"), ("[1,2]", "[]"), ("[1, 2, 3]", "[3]")] {
            let (out, _) = layer.redact_json(doc.as_bytes(), None, None).unwrap();
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{doc}");
        }
    }
}
