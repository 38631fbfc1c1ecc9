//! Arbitrary bytes as an audit log, alone and appended to a valid sealed log: `verify` never
//! panics, accepts only what was sealed under the key, and reports a break at or after the first
//! foreign line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::audit::{AuditKey, verify};
use std::sync::LazyLock;

static KEY: LazyLock<AuditKey> = LazyLock::new(|| AuditKey::new([7u8; 32]).expect("32 bytes"));

/// Three records sealed under `[7; 32]` (made with Python's `hmac`, independently of the crate).
const SEALED: &str = concat!(
    r#"{"seq":1,"type":"request","path":"/items","status":200,"prev":"0000000000000000000000000000000000000000000000000000000000000000","hash":"a5c4ca6757d553af806ecdc605bb05a1f233d9bc3599608ebcef25f6b6341d04"}"#,
    "\n",
    r#"{"seq":2,"type":"request","path":"/items","status":200,"prev":"a5c4ca6757d553af806ecdc605bb05a1f233d9bc3599608ebcef25f6b6341d04","hash":"d417cd90320cba8872ef508c6865509aed84dd694dcb6e01658cda5faae5cbca"}"#,
    "\n",
    r#"{"seq":3,"type":"request","path":"/items","status":200,"prev":"d417cd90320cba8872ef508c6865509aed84dd694dcb6e01658cda5faae5cbca","hash":"1e6b08b9b74c14d6f4c3ad3273752428b47c38bf5bfd45322d135c4b0da3bd36"}"#,
    "\n",
);

fuzz_target!(|data: &[u8]| {
    let _ = verify(&KEY, data);
    let mut log = SEALED.as_bytes().to_vec();
    log.extend_from_slice(data);
    match verify(&KEY, &log[..]) {
        Ok(summary) => assert!(
            data.is_empty() && summary.records == 3,
            "a foreign line verified"
        ),
        Err(broken) => assert!(
            !data.is_empty() && broken.line >= 4,
            "a sealed line was refused"
        ),
    }
});
