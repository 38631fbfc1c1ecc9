//! The detectors' pass over one string.

use super::*;

/// A detector, its rule and its [`min_len`](Detector::min_len), asked once rather than once
/// per string.
#[derive(Clone)]
pub(super) struct Scanner {
    pub(super) detector: Arc<dyn Detector>,
    pub(super) rule: usize,
    pub(super) min_len: usize,
}

impl Scanner {
    pub(super) fn new(detector: Arc<dyn Detector>, rule: usize) -> Self {
        Self {
            min_len: detector.min_len(),
            detector,
            rule,
        }
    }
}

/// Runs `detectors` over `text`; returns it with every finding masked (borrowed if none).
pub(super) fn scan<'t>(
    engine: &Engine,
    detectors: &[Scanner],
    text: &'t str,
    identity: Option<&Identity>,
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
        let rule = engine.rules.get(scanner.rule);
        for range in found.drain(..) {
            let Some(finding) = text.get(range.clone()).filter(|f| !f.is_empty()) else {
                continue;
            };
            // The caller's own value, where the rule lets owners see theirs.
            if rule.is_some_and(|rule| rule.owned_by(finding, identity)) {
                continue;
            }
            hits.push((range, scanner.rule));
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
pub(super) fn looks_like_document(text: &str) -> bool {
    let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    let b = trimmed.as_bytes();
    b.len() >= 2
        && matches!(
            (b.first(), b.last()),
            (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']')) | (Some(b'"'), Some(b'"'))
        )
}
