//! Checks an audit log written by the `AuditLayer`'s file sink.
//!
//! ```text
//! cargo run --example audit_verify -- audit.jsonl                 # the file and its rotated files
//! cargo run --example audit_verify -- audit.jsonl.2 audit.jsonl.1 # exactly these, oldest first
//! ```
//!
//! The key comes from `AUDIT_HMAC_KEY` (the demo's development key when unset). Exit status: 0
//! when the chain is intact, 1 with the first broken record (file, line, what is wrong), 2 for
//! usage errors.

use std::path::PathBuf;
use std::process::ExitCode;

use portcullis::audit::{AuditKey, JsonLinesFile, verify_files};

/// Must match the demo's (`examples/secure_api.rs`).
const DEV_AUDIT_KEY: &str = "portcullis-DEVELOPMENT-audit-key-do-not-deploy";

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if args.is_empty() {
        eprintln!("usage: audit_verify FILE [FILE...]");
        return ExitCode::from(2);
    }
    let secret = std::env::var("AUDIT_HMAC_KEY").unwrap_or_else(|_| DEV_AUDIT_KEY.to_owned());
    let key = match AuditKey::new(secret) {
        Ok(key) => key,
        Err(error) => {
            eprintln!("AUDIT_HMAC_KEY: {error}");
            return ExitCode::from(2);
        }
    };
    // One file: verify it with its rotated predecessors, oldest first.
    let files = match args.as_slice() {
        [one] if one.exists() => JsonLinesFile::rotated_files(one),
        _ => args,
    };
    match verify_files(&key, &files) {
        Ok(summary) => {
            println!(
                "ok: {} records, {} to {}, last hash {}",
                summary.records, summary.first_seq, summary.last_seq, summary.last_hash
            );
            if summary.starts_mid_chain() {
                println!(
                    "note: the chain starts at record {}; older records are in files not checked here",
                    summary.first_seq
                );
            }
            ExitCode::SUCCESS
        }
        Err(broken) => {
            println!("BROKEN at {broken}");
            ExitCode::FAILURE
        }
    }
}
