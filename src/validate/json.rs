//! The checks serde_json does not make, done in one pass over the bytes before it parses them.
//!
//! serde_json keeps the last of two members with the same name, and bounds nesting only by its
//! fixed recursion limit of 128. No well-kept crate rejects duplicate members while deserializing
//! into an arbitrary `T`, so this small scanner does both jobs: it walks the text once without
//! recursion (so a 100 000-deep array costs a few dozen steps before it is refused, and can never
//! overflow the stack), counts nesting outside strings, and compares the (unescaped) member
//! names of each object when it closes. It is not a validator: on malformed syntax it simply
//! stops and leaves the error to serde_json, which parses the same text next. A member name it
//! cannot decode (a `\u` escape of a lone surrogate) is refused rather than skipped: serde_json
//! refuses it only where it decodes the name, and lets it through where it does not (a
//! `RawValue`, an ignored member), so stopping there would switch off both checks for the rest
//! of the document.

use std::borrow::Cow;

use super::pointer::Pointer;

/// Why a JSON text was refused before parsing.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ScanError {
    /// An array or object opens deeper than allowed; the pointer names it.
    TooDeep(String),
    /// An object has two members of this name; the pointer names the member.
    DuplicateKey(String),
    /// A member name that cannot be decoded (a lone surrogate escape); the pointer names the
    /// object it is in.
    InvalidKey(String),
}

/// One open array or object.
struct Frame {
    /// For an object, where its member names start in the shared name stack; `None` for an array.
    keys_start: Option<usize>,
    /// For an array, the index of the current element.
    index: usize,
}

/// Checks nesting depth and duplicate member names of a JSON text.
pub(crate) fn scan(text: &str, max_depth: usize) -> Result<(), ScanError> {
    let bytes = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    // The member names of every open object, innermost last; each object owns a tail segment.
    let mut keys: Vec<Cow<'_, str>> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        match byte {
            b'"' => {
                let Some((end, escaped)) = string_end(bytes, i + 1) else {
                    return Ok(()); // unterminated string: serde_json reports it
                };
                let in_object = stack.last().is_some_and(|f| f.keys_start.is_some());
                if expect_key && in_object {
                    let key = if escaped {
                        // Let serde_json unescape (and check) the name, so `"\u0061"` and `"a"`
                        // compare equal exactly as serde_json will see them.
                        match text.get(i..=end).map(serde_json::from_str::<String>) {
                            Some(Ok(name)) => Cow::Owned(name),
                            // Refused, not skipped: giving up here would let duplicates and
                            // depth through for the rest of the document.
                            _ => {
                                // The object's own names are left out: its pointer, not a
                                // sibling's.
                                let own = stack.last().and_then(|f| f.keys_start);
                                let outer = keys.get(..own.unwrap_or(keys.len()));
                                let at = pointer(&stack, outer.unwrap_or_default());
                                return Err(ScanError::InvalidKey(at));
                            }
                        }
                    } else {
                        Cow::Borrowed(text.get(i + 1..end).unwrap_or_default())
                    };
                    keys.push(key);
                    expect_key = false;
                }
                i = end;
            }
            b'{' | b'[' => {
                if stack.len() >= max_depth {
                    return Err(ScanError::TooDeep(pointer(&stack, &keys)));
                }
                let object = byte == b'{';
                stack.push(Frame {
                    keys_start: object.then_some(keys.len()),
                    index: 0,
                });
                expect_key = object;
            }
            b'}' | b']' => {
                let Some(frame) = stack.pop() else {
                    return Ok(()); // unbalanced: serde_json reports it
                };
                if let Some(start) = frame.keys_start {
                    // `start <= keys.len()`: names are only removed by closing inner objects,
                    // which truncate to their own (later) start.
                    if let Some(name) = duplicate(&mut keys[start..]) {
                        let mut at = Pointer::default();
                        at.push_str(&pointer(&stack, &keys[..start]));
                        at.key(&name);
                        return Err(ScanError::DuplicateKey(at.finish()));
                    }
                    keys.truncate(start);
                }
                expect_key = false;
            }
            b',' => match stack.last_mut() {
                Some(frame) if frame.keys_start.is_some() => expect_key = true,
                Some(frame) => frame.index += 1,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The index of the closing quote of the string whose content starts at `start`, and whether the
/// string contains escapes. `memchr2` skips the plain stretches quickly.
fn string_end(bytes: &[u8], mut start: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        let offset = memchr::memchr2(b'"', b'\\', bytes.get(start..)?)?;
        let at = start + offset;
        if bytes[at] == b'"' {
            return Some((at, escaped));
        }
        escaped = true;
        start = at + 2; // the backslash and the character it escapes
    }
}

/// A name that occurs twice, if any. Sorting beats a hash set for the small objects APIs get, and
/// stays O(n log n) for large ones; the segment is discarded right after.
fn duplicate(names: &mut [Cow<'_, str>]) -> Option<String> {
    if names.len() < 2 {
        return None;
    }
    names.sort_unstable();
    names
        .windows(2)
        .find(|pair| pair[0] == pair[1])
        .map(|pair| pair[0].clone().into_owned())
}

/// The JSON Pointer of the innermost open container, from the frames and their current names.
fn pointer(stack: &[Frame], keys: &[Cow<'_, str>]) -> String {
    let mut out = Pointer::default();
    for (depth, frame) in stack.iter().enumerate() {
        match frame.keys_start {
            Some(start) => {
                // This object's names end where the next open object's names start.
                let end = stack[depth + 1..]
                    .iter()
                    .find_map(|f| f.keys_start)
                    .unwrap_or(keys.len());
                if end > start
                    && let Some(name) = keys.get(end - 1)
                {
                    out.key(name);
                }
            }
            None => out.index(frame.index),
        }
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> bool {
        scan(text, 32).is_ok()
    }

    #[test]
    fn accepts_well_formed_json() {
        for text in [
            "{}",
            "[]",
            "1",
            r#"{"a":1,"b":{"a":2},"c":[{"a":1},{"a":1}]}"#,
            r#"{"a":"{[\"","b":"]}\\","c":"\\\""}"#,
            r#"{"a":{"b":1},"b":{"b":1}}"#,
        ] {
            assert!(ok(text), "{text}");
        }
    }

    #[test]
    fn finds_duplicates_at_any_depth_with_their_pointer() {
        let cases = [
            (r#"{"a":1,"a":2}"#, "/a"),
            (r#"{"x":{"b":1,"b":2}}"#, "/x/b"),
            (r#"{"x":[1,{"c":1,"c":[]}]}"#, "/x/1/c"),
            (r#"[{},{"y":{"a/b":1,"a/b":2}}]"#, "/1/y/a~1b"),
            // Escaped names are compared after unescaping, as serde_json will read them.
            (r#"{"alg":1,"\u0061lg":2}"#, "/alg"),
        ];
        for (text, want) in cases {
            assert_eq!(
                scan(text, 32),
                Err(ScanError::DuplicateKey(want.to_owned())),
                "{text}"
            );
        }
    }

    #[test]
    fn counts_depth_outside_strings_only() {
        assert!(scan(&format!("{}{}", "[".repeat(32), "]".repeat(32)), 32).is_ok());
        assert_eq!(
            scan(&format!("{}{}", "[".repeat(33), "]".repeat(33)), 32),
            Err(ScanError::TooDeep("/0".repeat(32)))
        );
        assert!(scan(&format!("[\"{}\"]", "[".repeat(1000)), 2).is_ok());
        let deep = format!("{{\"a\":{}", "[".repeat(100_000));
        assert_eq!(
            scan(&deep, 32),
            Err(ScanError::TooDeep(format!("/a{}", "/0".repeat(31))))
        );
    }

    #[test]
    fn leaves_malformed_input_to_serde_json() {
        for text in ["\"abc", "]]]", "{\"a\":\"\\", ""] {
            assert!(ok(text), "{text}");
        }
    }

    /// A name that cannot be decoded stops the scan with an error, never with `Ok`: what
    /// follows it would go unchecked where serde_json does not decode names (a `RawValue`).
    #[test]
    fn undecodable_names_are_refused_not_skipped() {
        for (text, want) in [
            (r#"{"\ud800":1,"\ud800":1}"#, ""),
            (r#"{"a":1,"\ud800":2,"a":3}"#, ""),
            (r#"{"a":{"\udc00":1,"b":1,"b":2}}"#, "/a"),
            (r#"[1,{"x\ud83dy":[[[[[[]]]]]]}]"#, "/1"),
        ] {
            assert_eq!(
                scan(text, 4),
                Err(ScanError::InvalidKey(want.to_owned())),
                "{text}"
            );
        }
        // A paired surrogate is a name like any other.
        assert_eq!(
            scan(r#"{"\ud83d\ude00":1,"\ud83d\ude00":2}"#, 4),
            Err(ScanError::DuplicateKey("/\u{1f600}".to_owned()))
        );
    }
}
