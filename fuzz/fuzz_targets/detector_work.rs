//! Work per input byte of every built-in detector and of `scrub`: the fuzzer's bytes, repeated
//! to 64 KiB (repetition is what turns a super-linear scan into a slow one), go through each
//! detector and through `scrub`. A scan that is not linear takes seconds on 64 KiB, which the
//! slow-unit limit of `scripts/fuzz.sh` (`-timeout`) turns into a failure; what is found must
//! also be in bounds and on character boundaries, and the scrubbed text proportional to the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::redact::{CardNumber, Detector, Email, Iban, Jwt, KnownApiKey, RedactLayer};
use std::sync::LazyLock;

const SIZE: usize = 64 * 1024;

static LAYER: LazyLock<RedactLayer> = LazyLock::new(RedactLayer::new);

fuzz_target!(|data: &[u8]| {
    let Ok(unit) = std::str::from_utf8(data) else {
        return;
    };
    if unit.is_empty() {
        return;
    }
    let text = unit.repeat(SIZE / unit.len() + 1);
    let detectors: [&dyn Detector; 5] = [&CardNumber, &Jwt, &KnownApiKey, &Email, &Iban];
    let mut found = Vec::new();
    for detector in detectors {
        found.clear();
        detector.find(&text, &mut found);
        for range in &found {
            assert!(
                text.get(range.clone()).is_some(),
                "{}: {range:?}",
                detector.name()
            );
        }
    }
    // Every finding is at least 6 bytes and its mask at most 21 (`hmac:` and 16 hex digits):
    // what is written stays proportional to what came in.
    let (scrubbed, _) = LAYER.scrub(&text);
    assert!(scrubbed.len() <= 4 * text.len());
});
