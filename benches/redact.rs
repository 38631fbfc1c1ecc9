//! Redaction cost of `RedactLayer` with the default rules (21 field names, 5 detectors) for
//! 1 KiB, 100 KiB and 1 MiB JSON responses: `redact_json` alone (validation, the redaction pass,
//! output), on documents where about one record in four carries secrets and on documents with
//! none; and the whole layer in a `Router` for the "secrets" case (the handler serializing the document,
//! buffering, the pass, headers, extension).

use std::hint::black_box;

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::{Json, Router};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use portcullis::RedactLayer;
use serde_json::{Value, json};
use tower::ServiceExt;

/// An array of user-like records serialized to at least `size` bytes.
fn document(size: usize, secrets: bool) -> Vec<u8> {
    let mut users = Vec::new();
    let mut i = 0u64;
    let mut total = 12;
    loop {
        let secret = secrets && i.is_multiple_of(4);
        users.push(json!({
            "id": i,
            "name": format!("User number {i}"),
            "role": if i.is_multiple_of(3) { "editor" } else { "viewer" },
            "email": if secret { format!("user{i}@example.com") } else { format!("user {i} at home") },
            "created_at": "2026-11-24T12:00:00Z",
            "balance": 1234.5 + i as f64,
            "active": i.is_multiple_of(2),
            "tags": ["alpha", "beta", "gamma"],
            "card_number": if secret { Value::from("4111 1111 1111 1111") } else { Value::Null },
            "bio": "Likes long walks, short meetings and well-formed JSON documents; lives in room 42.",
        }));
        i += 1;
        total += users.last().map_or(0, |u| u.to_string().len() + 1);
        if total >= size {
            return serde_json::to_vec(&json!({ "users": users })).unwrap_or_default();
        }
    }
}

fn redact_json(c: &mut Criterion) {
    let layer = RedactLayer::new();
    let mut group = c.benchmark_group("redact_json");
    for (label, size) in [
        ("1KiB", 1024),
        ("100KiB", 100 * 1024),
        ("1MiB", 1024 * 1024),
    ] {
        for secrets in [true, false] {
            let doc = document(size, secrets);
            group.throughput(Throughput::Bytes(doc.len() as u64));
            let case = if secrets { "secrets" } else { "clean" };
            group.bench_with_input(BenchmarkId::new(case, label), &doc, |b, doc| {
                b.iter(|| black_box(layer.redact_json(black_box(doc), None, None)))
            });
        }
    }
    group.finish();
}

fn through_layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("redact_layer");
    for (label, size) in [
        ("1KiB", 1024),
        ("100KiB", 100 * 1024),
        ("1MiB", 1024 * 1024),
    ] {
        let doc: Value = serde_json::from_slice(&document(size, true)).unwrap_or_default();
        let app = Router::new()
            .route(
                "/users",
                get(move || {
                    let doc = doc.clone();
                    async move { Json(doc) }
                }),
            )
            .layer(RedactLayer::new());
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("secrets", label), |b| {
            b.to_async(&runtime).iter(|| {
                let app = app.clone();
                async move {
                    let request = Request::get("/users")
                        .body(Body::empty())
                        .unwrap_or_default();
                    let response = app.oneshot(request).await;
                    black_box(response.map(|r| r.into_body()))
                }
            })
        });
    }
    group.finish();
}

/// Units that repeated make the worst inputs known for each detector (the same list as the
/// detectors' linearity property test): digit groups, `eyJ` runs, `@` and `.` runs, IBAN-like
/// groups, key prefixes that fall just short.
const HOSTILE_UNITS: &[(&str, &str)] = &[
    ("digits_dashes", "1-"),
    ("digits_spaces", "1 "),
    ("card_groups", "4111-"),
    ("eyJ", "eyJ"),
    ("eyJ_dots", "eyJ."),
    ("eyJ_short_header", "eyJa.b."),
    ("at_signs", "a@"),
    ("at_dots", "a@b."),
    ("iban_groups", "DE89 "),
    ("iban_like", "AA11 "),
    ("aws_prefix", "AKIA"),
    ("bearer", "Bearer "),
];

/// A 1 MiB JSON array of 1000-character strings, each `unit` repeated (what a validated
/// `notes` field lets through): the pass runs every detector over every string.
fn hostile_document(unit: &str) -> Vec<u8> {
    let item = unit.repeat(1000 / unit.len());
    let items = vec![item; (1 << 20) / 1003];
    serde_json::to_vec(&items).unwrap_or_default()
}

/// The worst inputs against the benign documents of `redact_json`: one walk over 1 MiB, and
/// `scrub` over 4 KiB of free text (what the audit trail scrubs of a path or `User-Agent`).
fn hostile(c: &mut Criterion) {
    let layer = RedactLayer::new();
    let mut group = c.benchmark_group("redact_hostile");
    let benign = document(1 << 20, false);
    group.throughput(Throughput::Bytes(benign.len() as u64));
    group.bench_with_input(BenchmarkId::new("json", "benign"), &benign, |b, doc| {
        b.iter(|| black_box(layer.redact_json(black_box(doc), None, None)))
    });
    let benign_text =
        "Mozilla/5.0 (X11; Linux x86_64) /api/v1/notes/42/comments?page=3 ".repeat(64);
    group.throughput(Throughput::Bytes(benign_text.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("scrub", "benign"),
        &benign_text,
        |b, text| b.iter(|| black_box(layer.scrub(black_box(text)))),
    );
    for (name, unit) in HOSTILE_UNITS {
        let doc = hostile_document(unit);
        group.throughput(Throughput::Bytes(doc.len() as u64));
        group.bench_with_input(BenchmarkId::new("json", name), &doc, |b, doc| {
            b.iter(|| black_box(layer.redact_json(black_box(doc), None, None)))
        });
        let text = unit.repeat(4096 / unit.len());
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("scrub", name), &text, |b, text| {
            b.iter(|| black_box(layer.scrub(black_box(text))))
        });
    }
    group.finish();
}

criterion_group!(benches, redact_json, through_layer, hostile);
criterion_main!(benches);
