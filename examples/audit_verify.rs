//! Checks an audit log written by the `AuditLayer`'s file sink.
//!
//! ```text
//! AUDIT_HMAC_KEY=... cargo run --example audit_verify -- audit.jsonl    # with its rotated files
//! cargo run --example audit_verify -- --dev-key audit.jsonl             # the demo's dev key
//! cargo run --example audit_verify -- --allow-partial audit.jsonl.3 audit.jsonl.2
//! cargo run --example audit_verify -- --allow-gaps audit.jsonl         # loss accepted
//! ```
//!
//! The key comes from `AUDIT_HMAC_KEY`; `--dev-key` uses the demo's published development key
//! instead (anyone can forge a log under it: never for a real log). A log must start at the
//! first record, unless `--allow-partial` says that older files were rotated away on purpose, and
//! must hold no gap record (events dropped because the audit queue was full), unless
//! `--allow-gaps` accepts the loss.
//! Records that name their replica (`AuditLayerBuilder::replica`) are verified replica by replica,
//! in any number of files or one merged stream, and each replica's chain is reported on its own
//! line with its last record: compare it with what that replica last wrote. `--replicas=a,b`
//! names the replicas you run: one without any record (all of them removed) is reported too.
//! Exit status: 0 when the chain is intact, 1 with the first broken record (file, line, what is
//! wrong), 2 for usage errors. Compare the printed last record with the `last_seq` the service
//! logged when it closed the trail: records cut from the end cannot be seen in the log itself.

use std::path::PathBuf;
use std::process::ExitCode;

use portcullis::audit::{AuditKey, JsonLinesFile, verify_replicas};

/// Must match the demo's (`examples/secure_api.rs`).
const DEV_AUDIT_KEY: &str = "portcullis-DEVELOPMENT-audit-key-do-not-deploy";

fn main() -> ExitCode {
    let mut dev_key = false;
    let mut allow_partial = false;
    let mut allow_gaps = false;
    let mut expected: Vec<String> = Vec::new();
    let mut files = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.to_str() {
            Some("--dev-key") => dev_key = true,
            Some(flag) if flag.starts_with("--replicas=") => {
                expected = flag["--replicas=".len()..]
                    .split(',')
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            Some("--allow-partial") => allow_partial = true,
            Some("--allow-gaps") => allow_gaps = true,
            Some(flag) if flag.starts_with("--") => {
                eprintln!("unknown option {flag}");
                return ExitCode::from(2);
            }
            _ => files.push(PathBuf::from(arg)),
        }
    }
    if files.is_empty() {
        eprintln!(
            "usage: audit_verify [--dev-key] [--allow-partial] [--allow-gaps] [--replicas=a,b] \
             FILE [FILE...]"
        );
        return ExitCode::from(2);
    }
    let secret = match (std::env::var("AUDIT_HMAC_KEY"), dev_key) {
        (Ok(secret), false) => secret,
        (Err(_), true) => DEV_AUDIT_KEY.to_owned(),
        (Ok(_), true) => {
            eprintln!("AUDIT_HMAC_KEY is set: drop --dev-key");
            return ExitCode::from(2);
        }
        (Err(_), false) => {
            eprintln!("set AUDIT_HMAC_KEY to the log's key (or pass --dev-key for the demo's)");
            return ExitCode::from(2);
        }
    };
    let key = match AuditKey::new(secret) {
        Ok(key) => key,
        Err(error) => {
            eprintln!("AUDIT_HMAC_KEY: {error}");
            return ExitCode::from(2);
        }
    };
    // One file: verify it with all its rotated predecessors, oldest first.
    let files = match files.as_slice() {
        [one] if one.exists() => JsonLinesFile::rotated_files(one),
        _ => files,
    };
    let summaries = match verify_replicas(&key, &files) {
        Ok(summaries) => summaries,
        Err(broken) => {
            println!("BROKEN at {broken}");
            return ExitCode::FAILURE;
        }
    };
    // Each replica's chain on its own (one, unnamed, for a service that runs alone).
    let mut code = ExitCode::SUCCESS;
    // A replica whose records are all gone leaves no chain to break: name the ones you run.
    for replica in &expected {
        if !summaries
            .iter()
            .any(|s| s.replica.as_ref() == Some(replica))
        {
            println!("BROKEN: replica {replica}: no record at all");
            code = ExitCode::FAILURE;
        }
    }
    for summary in &summaries {
        let whose = summary
            .replica
            .as_ref()
            .map_or_else(String::new, |replica| format!("replica {replica}: "));
        if summary.starts_mid_chain() && !allow_partial {
            println!(
                "BROKEN: {whose}the log starts at record {}, not 1: its beginning is missing \
                 (pass --allow-partial if older files were rotated away on purpose)",
                summary.first_seq
            );
            code = ExitCode::FAILURE;
        } else if summary.gaps > 0 && !allow_gaps {
            println!(
                "INCOMPLETE: {whose}the chain is intact, but {} gap records say {} events were \
                 dropped before they were sealed (the audit queue was full); pass --allow-gaps \
                 to accept",
                summary.gaps, summary.dropped
            );
            code = ExitCode::FAILURE;
        } else {
            println!(
                "ok: {whose}{} records, {} to {}, last hash {}",
                summary.records, summary.first_seq, summary.last_seq, summary.last_hash
            );
            if summary.gaps > 0 {
                println!(
                    "gaps: {whose}{} events dropped, in {} gap records",
                    summary.dropped, summary.gaps
                );
            }
        }
    }
    code
}
