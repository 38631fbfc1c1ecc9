use serde_json::Value;

use crate::redact::{AllowOnly, Mask, RedactLayer, Rule};

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
