//! Arbitrary bytes into the redaction pass, as a JSON response body arrives: it never panics,
//! what it returns is valid JSON, and no value a detector flags in the input survives in it.
//! The same bytes, as text, go through `scrub`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::redact::{
    AllowOnly, CardNumber, Detector, Email, Iban, Jwt, KnownApiKey, Mask, RedactLayer, Rule,
};
use serde_json::Value;
use std::sync::LazyLock;

static LAYERS: LazyLock<[RedactLayer; 2]> = LazyLock::new(|| {
    let rules = RedactLayer::new()
        .rule(Rule::detector(KnownApiKey).mask(Mask::Fingerprint))
        .rule(Rule::detector(Iban).mask(Mask::Remove))
        .rule(Rule::path("$.a[*].b").unwrap().mask(Mask::LastFour))
        .rule(Rule::path("$.*[0]").unwrap().mask(Mask::Remove))
        .rule(Rule::field("x").mask(Mask::Fingerprint));
    let allow = rules
        .clone()
        .allow_only(AllowOnly::paths(["$.a[*].b", "$.c", "$[1].d"]).unwrap());
    [rules, allow]
});

fn strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        // Numbers are scanned as the text they were sent as, which a `Value` does not keep.
        Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            strings(v, out);
        }),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let input: Option<Value> = serde_json::from_slice(data).ok();
    for layer in LAYERS.iter() {
        let Some((out, _)) = layer.redact_json(data, None, None) else {
            continue;
        };
        serde_json::from_slice::<serde::de::IgnoredAny>(&out).expect("the output is JSON");
        // Numbers like 4E444 are JSON but not a `Value`: then there is nothing more to compare.
        let Some(input) = &input else {
            continue;
        };
        let output: Value = serde_json::from_slice(&out).expect("the output is a Value too");
        let (mut before, mut after) = (Vec::new(), Vec::new());
        strings(input, &mut before);
        strings(&output, &mut after);
        let detectors: [&dyn Detector; 5] = [&CardNumber, &Jwt, &KnownApiKey, &Email, &Iban];
        let findings = |text: &str| {
            let mut found = Vec::new();
            for detector in detectors {
                detector.find(text, &mut found);
            }
            found.retain(|r| text.get(r.clone()).is_some());
            found
        };
        // Each input string with its findings blanked: the same characters may also appear
        // where no detector flags them (`a@b.co'` is an address, `a@b.co0` is not), and
        // those are rightly left alone.
        let residues: Vec<String> = before
            .iter()
            .map(|text| {
                let mut bytes = text.as_bytes().to_vec();
                for r in findings(text) {
                    bytes[r].fill(0);
                }
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .collect();
        for text in &before {
            for r in findings(text) {
                let secret = &text[r];
                if residues.iter().any(|residue| residue.contains(secret)) {
                    continue;
                }
                {
                    for s in &after {
                        assert!(!s.contains(secret), "{secret:?} survived in {s:?}");
                    }
                }
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = LAYERS[0].scrub(text);
    }
});
