//! The walk over one document: syntax check and redaction in one pass.

use super::lex::{escape_end, string_stop};
use super::scan::looks_like_document;
use super::*;

pub(super) struct Walk<'a> {
    pub(super) engine: &'a Engine,
    /// The engine's, unless some rule is off this route (then only the rules on it).
    pub(super) fields: Cow<'a, [(Box<[u8]>, usize)]>,
    pub(super) paths: SmallVec<[(&'a [Segment], usize); 4]>,
    pub(super) detectors: Cow<'a, [Scanner]>,
    /// By rule index: the rule spares this caller (empty when no rule spares anyone).
    pub(super) spared: Cow<'a, [bool]>,
    /// The caller, for rules that let owners see their own values.
    pub(super) identity: Option<&'a Identity>,
    pub(super) allow: Option<&'a AllowOnly>,
    /// The input, checked to be UTF-8 once: every string's content is then a slice of it.
    pub(super) text: &'a str,
    pub(super) input: &'a [u8],
    pub(super) pos: usize,
    /// The input up to `copied`, with the changes made so far; empty until the first change.
    pub(super) out: Vec<u8>,
    pub(super) copied: usize,
    pub(super) changed: bool,
    pub(super) counts: Redactions,
    pub(super) found: Vec<Range<usize>>,
    /// How many more levels of documents in strings may be walked.
    pub(super) nested_left: u8,
    /// The walk stopped at [`MAX_DEPTH`] (not at a syntax error).
    pub(super) deep: bool,
}

/// What came of walking a string as a document.
pub(super) enum Nested {
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
pub(super) struct Items {
    /// An earlier item stays in the output.
    kept: bool,
    /// The end of the previous item.
    prev_end: usize,
}

impl<'a> Walk<'a> {
    pub(super) fn peek(&self) -> u8 {
        self.input.get(self.pos).copied().unwrap_or(0)
    }

    pub(super) fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\n' | b'\r') {
            self.pos += 1;
        }
    }

    /// Nothing but whitespace may follow the document.
    pub(super) fn end(&mut self) -> Pass {
        self.ws();
        if self.pos == self.input.len() {
            Ok(())
        } else {
            Err(NotJson)
        }
    }

    /// Moves past `:` between a member's name and value, with the whitespace around it.
    pub(super) fn colon(&mut self) -> Pass {
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
    pub(super) fn more(&mut self, close: u8) -> Pass<bool> {
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
    pub(super) fn string_token(&mut self) -> Pass<(Range<usize>, bool)> {
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
    pub(super) fn number(&mut self) -> Pass<Range<usize>> {
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
    pub(super) fn digits(&mut self) -> Pass {
        let rest = self.input.get(self.pos..).unwrap_or_default();
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        self.pos += n;
        if n == 0 { Err(NotJson) } else { Ok(()) }
    }

    /// Moves past a string, number, `true`, `false` or `null`; returns its span.
    pub(super) fn scalar(&mut self) -> Pass<Range<usize>> {
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
    pub(super) fn skip(&mut self, depth: usize) -> Pass<Range<usize>> {
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
    pub(super) fn replace(&mut self, span: Range<usize>, with: &[u8]) -> Pass {
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
    pub(super) fn replace_with_string(&mut self, span: Range<usize>, text: &str) -> Pass {
        self.replace(span.start..span.start, b"")?;
        serde_json::to_writer(&mut self.out, text).map_err(|_| NotJson)?;
        self.copied = span.end;
        Ok(())
    }

    /// Cuts a dropped member or element out with one comma next to it: the one before it when
    /// an earlier item stays, else the one after it (if `more` items follow, up to the next).
    pub(super) fn cut(&mut self, items: &Items, span: Range<usize>, more: bool) -> Pass {
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
    pub(super) fn decode(&self, token: Range<usize>, escaped: bool) -> Pass<Cow<'a, str>> {
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
    pub(super) fn scrub(&mut self, token: Range<usize>, text: &str) -> Pass {
        let scrubbed = scan(
            self.engine,
            &self.detectors,
            text,
            self.identity,
            &mut self.found,
            &mut self.counts,
        );
        match scrubbed {
            Cow::Borrowed(_) => Ok(()),
            Cow::Owned(new) => self.replace_with_string(token, &new),
        }
    }

    /// Writes the replacement of a whole value masked by `rule`.
    pub(super) fn mask_value(&mut self, span: Range<usize>, rule: usize) -> Pass {
        let raw = self.input.get(span.clone()).ok_or(NotJson)?;
        let text: Cow<'_, str> = match raw.first() {
            Some(b'"') => self.decode(span.clone(), true)?,
            _ => Cow::Borrowed(self.text.get(span.clone()).ok_or(NotJson)?),
        };
        let is_scalar = !matches!(raw.first(), Some(b'{' | b'['));
        let Some(rule_ref) = self.engine.rules.get(rule) else {
            return Err(NotJson);
        };
        // The caller's own value, where the rule lets owners see theirs: left as written.
        if raw.first() == Some(&b'"') && rule_ref.owned_by(&text, self.identity) {
            return Ok(());
        }
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
    pub(super) fn value(&mut self, paths: &[State], allow: Option<&[State]>, depth: usize) -> Pass {
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
    pub(super) fn string_value(
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
    pub(super) fn over(engine: &'a Engine, text: &'a str, nested_left: u8) -> Self {
        Walk {
            engine,
            fields: Cow::Borrowed(&[]),
            paths: SmallVec::new(),
            detectors: Cow::Borrowed(&[]),
            spared: Cow::Borrowed(&[]),
            identity: None,
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
    pub(super) fn nested(&mut self, text: &str, paths: &[State], depth: usize) -> Nested {
        let mut walk = Walk {
            fields: Cow::Borrowed(&self.fields),
            paths: self.paths.iter().copied().collect(),
            detectors: Cow::Borrowed(&self.detectors),
            spared: Cow::Borrowed(&self.spared),
            identity: self.identity,
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
    pub(super) fn number_value(&mut self, span: Range<usize>) -> Pass {
        if span.len() < 8 {
            return Ok(());
        }
        let text: &'a str = self.text;
        let text = text.get(span.clone()).ok_or(NotJson)?;
        self.scrub(span, text)
    }

    /// Advances path states by one step; returns the new states and the rule (or allowed path)
    /// matched completely: the first that is `preferred`, else the first.
    pub(super) fn advance<'s>(
        states: &[State],
        segments: impl Fn(u32) -> Option<&'s [Segment]>,
        matches: impl Fn(&Segment) -> bool,
        preferred: impl Fn(u32) -> bool,
    ) -> (States, Option<u32>) {
        let mut next = States::new();
        let mut done: Option<u32> = None;
        for &(which, at) in states {
            let Some(segs) = segments(which) else {
                continue;
            };
            if segs.get(at as usize).is_some_and(&matches) {
                if at as usize + 1 == segs.len() {
                    // A rule that spares this caller must not shadow one that does not.
                    done = match done {
                        Some(first) if preferred(first) || !preferred(which) => Some(first),
                        _ => Some(which),
                    };
                } else {
                    next.push((which, at + 1));
                }
            }
        }
        (next, done)
    }

    /// What happens to a member or element: dropped by the allowlist, masked by a rule, or
    /// walked with these states.
    pub(super) fn step(
        &mut self,
        paths: &[State],
        allow: Option<&[State]>,
        matches: impl Fn(&Segment) -> bool + Copy,
    ) -> Step {
        let engine_paths = &self.paths;
        let spared = &self.spared;
        let (child_paths, path_rule) = Self::advance(
            paths,
            |i| engine_paths.get(i as usize).map(|p| p.0),
            matches,
            |i| {
                engine_paths
                    .get(i as usize)
                    .is_some_and(|p| !spared.get(p.1).copied().unwrap_or(false))
            },
        );
        let child_allow = match (allow, self.allow) {
            (Some(states), Some(list)) => {
                let (next, done) = Self::advance(
                    states,
                    |i| list.paths.get(i as usize).map(|p| p.segments.as_slice()),
                    matches,
                    |_| true,
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

    /// Of the field rule and the path rule matching a member, the one that masks it (the first
    /// that does not spare the caller), and whether one spares it.
    pub(super) fn masking_rule(
        &self,
        field: Option<usize>,
        path: Option<usize>,
    ) -> (Option<usize>, bool) {
        let spared = |rule: usize| self.spared.get(rule).copied().unwrap_or(false);
        let masking = field
            .filter(|r| !spared(*r))
            .or(path.filter(|r| !spared(*r)));
        let any_spared = field.is_some_and(spared) || path.is_some_and(spared);
        (masking, any_spared)
    }

    /// The detectors that look inside the member `key` (the value at `pos`): none inside a
    /// string or number a rule spares the caller (they see that value as written), and not
    /// those told to stay out of members of its name. Inside a spared object or array the
    /// detectors still run: sparing a whole subtree must not switch them off for all of it.
    pub(super) fn detectors_inside(&self, key: &str, spared: bool) -> Option<Cow<'a, [Scanner]>> {
        if spared && !matches!(self.peek(), b'{' | b'[') {
            return Some(Cow::Borrowed(&[]));
        }
        if !self.engine.index.scoped_detectors || key.is_empty() || self.detectors.is_empty() {
            return None;
        }
        let name = crate::scrub::rules::normalize(key.as_bytes());
        let excluded = |scanner: &Scanner| {
            self.engine.rules.get(scanner.rule).is_some_and(|rule| {
                rule.except_fields
                    .iter()
                    .any(|field| **field == *name.as_slice())
            })
        };
        if !self.detectors.iter().any(excluded) {
            return None;
        }
        let kept = self.detectors.iter().filter(|s| !excluded(s)).cloned();
        Some(Cow::Owned(kept.collect()))
    }

    /// Runs `walk` with these detectors (when given) instead of the current ones.
    pub(super) fn with_detectors(
        &mut self,
        detectors: Option<Cow<'a, [Scanner]>>,
        walk: impl FnOnce(&mut Self) -> Pass,
    ) -> Pass {
        let Some(detectors) = detectors else {
            return walk(self);
        };
        let saved = std::mem::replace(&mut self.detectors, detectors);
        let result = walk(self);
        self.detectors = saved;
        result
    }

    pub(super) fn field_rule(&self, key: &str) -> Option<usize> {
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
    pub(super) fn scalar_blocked(&self, allow: &Option<States>) -> bool {
        allow.is_some() && !matches!(self.peek(), b'{' | b'[')
    }

    pub(super) fn object(
        &mut self,
        paths: &[State],
        allow: Option<&[State]>,
        depth: usize,
    ) -> Pass {
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
                    let (rule, spared) = self.masking_rule(self.field_rule(&key), path_rule);
                    let name = Some((key_token, &*key));
                    let children = (child_paths.as_slice(), child_allow.as_deref());
                    self.item_value(name, rule, spared, children, depth)?
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

    pub(super) fn array(&mut self, paths: &[State], allow: Option<&[State]>, depth: usize) -> Pass {
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
                } => {
                    let (rule, spared) = self.masking_rule(None, rule);
                    let children = (child_paths.as_slice(), child_allow.as_deref());
                    self.item_value(None, rule, spared, children, depth)?
                }
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

    /// The value of a member (`name`: its name's token, scrubbed when the member stays, and
    /// text) or of an element (`None`): dropped by a removing `rule` (whose name is returned),
    /// masked by `rule`, or walked with the detectors that look inside it (`children`: its
    /// path and allowlist states).
    pub(super) fn item_value(
        &mut self,
        name: Option<(Range<usize>, &str)>,
        rule: Option<usize>,
        spared: bool,
        (paths, allow): (&[State], Option<&[State]>),
        depth: usize,
    ) -> Pass<Option<&'static str>> {
        if let Some(removing) = rule.and_then(|r| self.engine.rules.get(r))
            && removing.mask == Mask::Remove
            && removing.owner_claim.is_none()
        {
            return Ok(Some(removing.name()));
        }
        let key = match name {
            Some((token, key)) => {
                self.scrub(token, key)?;
                key
            }
            None => "",
        };
        match rule {
            Some(rule) => {
                let span = self.skip(depth + 1)?;
                self.mask_value(span, rule)?;
            }
            None => {
                let detectors = self.detectors_inside(key, spared);
                self.with_detectors(detectors, |walk| walk.value(paths, allow, depth + 1))?;
            }
        }
        Ok(None)
    }

    /// Records a member or element just walked; one `dropped` (by the rule of that name) is cut
    /// out and counted.
    pub(super) fn item_done(
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

pub(super) enum Step {
    Drop,
    Walk {
        paths: States,
        allow: Option<States>,
        rule: Option<usize>,
    },
}
