//! ValidateLayer rules and the Valid<...> extractors, driven through a real Router: statuses,
//! `Allow`, problem bodies with their `errors` arrays, and that nothing submitted is echoed.

mod common;

use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::{Form, Path, Query};
use axum::routing::{get, post};
use axum::{Json, Router};
use common::*;
use http::{HeaderName, Method, Request};
use portcullis::{Valid, ValidateLayer};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use validator::Validate;

static SKU: LazyLock<Regex> = LazyLock::new(|| Regex::new("^[A-Z0-9-]{3,32}$").unwrap());

#[derive(Debug, Deserialize, Serialize, Validate)]
struct NewItem {
    #[validate(
        length(min = 1, max = 100),
        custom(function = "portcullis::validate::safe_line")
    )]
    name: String,
    #[validate(regex(path = *SKU))]
    sku: String,
    #[validate(
        range(min = 0.0, max = 1_000_000.0),
        custom(function = "portcullis::validate::finite")
    )]
    price: f64,
    #[validate(range(max = 10_000))]
    quantity: u32,
    #[validate(length(max = 10))]
    tags: Option<Vec<String>>,
    #[validate(email)]
    contact_email: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, Validate)]
struct Search {
    #[validate(
        length(min = 1, max = 50),
        custom(function = "portcullis::validate::safe_line")
    )]
    q: String,
    #[validate(
        range(min = 0.0, max = 100.0),
        custom(function = "portcullis::validate::finite")
    )]
    min_price: Option<f64>,
}

#[derive(Debug, Deserialize, Validate)]
struct ItemPath {
    #[validate(range(min = 1, max = 1_000_000))]
    id: u64,
}

fn valid_item() -> Value {
    json!({
        "name": "Gate", "sku": "GATE-001", "price": 12.5, "quantity": 3,
        "tags": ["iron"], "contact_email": "ops@example.com"
    })
}

/// Routes for every extractor, plus a counter of handler calls.
fn routes(layer: Option<ValidateLayer>) -> (Router, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let (c1, c2, c3, c4, c5) = (
        calls.clone(),
        calls.clone(),
        calls.clone(),
        calls.clone(),
        calls.clone(),
    );
    let router = Router::new()
        .route(
            "/items",
            post(move |Valid(Json(item)): Valid<Json<NewItem>>| async move {
                c1.fetch_add(1, Ordering::SeqCst);
                (http::StatusCode::CREATED, Json(item))
            })
            .get(
                move |Valid(Query(search)): Valid<Query<Search>>| async move {
                    c2.fetch_add(1, Ordering::SeqCst);
                    Json(search)
                },
            ),
        )
        .route(
            "/items/{id}",
            get(move |Valid(Path(path)): Valid<Path<ItemPath>>| async move {
                c3.fetch_add(1, Ordering::SeqCst);
                path.id.to_string()
            }),
        )
        .route(
            "/form",
            post(move |Valid(Form(search)): Valid<Form<Search>>| async move {
                c4.fetch_add(1, Ordering::SeqCst);
                Json(search)
            }),
        )
        .route(
            "/any",
            get(move || async move {
                c5.fetch_add(1, Ordering::SeqCst);
                "ok"
            })
            .post(|| async { "posted" }),
        );
    let router = match layer {
        Some(layer) => router.layer(layer),
        None => router,
    };
    (router, calls)
}

fn json_post(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

fn request(method: &str, uri: &str, headers: &[(&str, &str)], body: Body) -> Request<Body> {
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body).unwrap()
}

/// `(field, code)` of every entry of the `errors` array, after checking each entry's shape.
fn errors(answer: &Answer) -> Vec<(String, String)> {
    answer.body["errors"]
        .as_array()
        .expect("an errors array")
        .iter()
        .map(|entry| {
            assert!(entry["message"].is_string(), "{entry}");
            (
                entry["field"].as_str().unwrap().to_owned(),
                entry["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// ValidateLayer

#[tokio::test]
async fn unknown_and_unlisted_methods_get_405_with_allow_and_never_reach_a_handler() {
    let (app, calls) = routes(Some(ValidateLayer::new()));
    for method in ["FOO", "TRACE", "CONNECT", "PROPFIND"] {
        let answer = send(&app, request(method, "/any", &[], Body::empty())).await;
        answer.problem(405, "method-not-allowed");
        assert_eq!(
            answer.headers["allow"],
            "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let answer = send(&app, request("GET", "/any", &[], Body::empty())).await;
    assert_eq!(answer.status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let (app, _) = routes(Some(
        ValidateLayer::builder()
            .allowed_methods([Method::GET])
            .build()
            .unwrap(),
    ));
    let answer = send(&app, request("POST", "/any", &[], Body::empty())).await;
    answer.problem(405, "method-not-allowed");
    assert_eq!(answer.headers["allow"], "GET");
}

#[tokio::test]
async fn long_uris_get_414_and_large_headers_431() {
    let (app, _) = routes(Some(
        ValidateLayer::builder()
            .max_uri_bytes(100)
            .max_header_bytes(200)
            .build()
            .unwrap(),
    ));
    let at_limit = format!("/any?{}", "a".repeat(95));
    assert_eq!(at_limit.len(), 100);
    assert_eq!(send(&app, get_with(&at_limit, &[])).await.status, 200);
    let over = format!("/any?{}", "a".repeat(96));
    send(&app, get_with(&over, &[]))
        .await
        .problem(414, "uri-too-long")
        .leaks_nothing_of("aaaaaaaa");

    let big = "x".repeat(150);
    assert_eq!(
        send(&app, get_with("/any", &[("x-a", &big)])).await.status,
        200
    );
    send(&app, get_with("/any", &[("x-a", &big), ("x-b", &big)]))
        .await
        .problem(431, "header-fields-too-large")
        .leaks_nothing_of(&big);
    // Many small headers count as much as one big one.
    let many: Vec<(String, String)> = (0..30).map(|i| (format!("x-{i}"), "v".into())).collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    send(&app, get_with("/any", &refs))
        .await
        .problem(431, "header-fields-too-large");
}

#[tokio::test]
async fn required_headers_are_enforced_and_named() {
    let (app, calls) = routes(Some(
        ValidateLayer::builder()
            .require_header(HeaderName::from_static("x-request-id"))
            .build()
            .unwrap(),
    ));
    let answer = send(&app, get_with("/any", &[])).await;
    answer.problem(400, "bad-request");
    assert_eq!(answer.body["header"], "x-request-id");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let answer = send(&app, get_with("/any", &[("x-request-id", "r1")])).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn only_allowlisted_hosts_are_served() {
    let layer = ValidateLayer::builder()
        .allowed_hosts(["api.example.com", "127.0.0.1:3000"])
        .build()
        .unwrap();
    let (app, calls) = routes(Some(layer));
    for host in [
        "api.example.com",
        "API.example.com",
        "api.example.com:8443",
        "127.0.0.1:3000",
    ] {
        let answer = send(&app, get_with("/any", &[("host", host)])).await;
        assert_eq!(answer.status, 200, "{host}");
    }
    for host in [
        "evil.example",
        "127.0.0.1:3001",
        "127.0.0.1",
        "api.example.com.evil",
    ] {
        send(&app, get_with("/any", &[("host", host)]))
            .await
            .problem(421, "misdirected-request");
    }
    // No host at all, a malformed one, or two of them.
    send(&app, get_with("/any", &[]))
        .await
        .problem(400, "bad-request");
    send(&app, get_with("/any", &[("host", "a b")]))
        .await
        .problem(400, "bad-request");
    send(
        &app,
        get_with(
            "/any",
            &[("host", "api.example.com"), ("host", "evil.example")],
        ),
    )
    .await
    .problem(400, "bad-request");
    // An absolute-form target names a host too: both must be allowed.
    send(
        &app,
        get_with("http://evil.example/any", &[("host", "api.example.com")]),
    )
    .await
    .problem(421, "misdirected-request");
    assert_eq!(
        send(&app, get_with("http://api.example.com/any", &[]))
            .await
            .status,
        200
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn bodies_on_bodiless_methods_are_refused_when_configured() {
    let (app, calls) = routes(Some(
        ValidateLayer::builder()
            .deny_body_on([Method::GET, Method::DELETE])
            .build()
            .unwrap(),
    ));
    let answer = send(&app, request("GET", "/any", &[], Body::from("smuggled"))).await;
    answer
        .problem(400, "bad-request")
        .leaks_nothing_of("smuggled");
    let answer = send(
        &app,
        request(
            "GET",
            "/any",
            &[("content-length", "8")],
            Body::from("smuggled"),
        ),
    )
    .await;
    answer.problem(400, "bad-request");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let empty = request("GET", "/any", &[("content-length", "0")], Body::empty());
    assert_eq!(send(&app, empty).await.status, 200);
    // POST is not on the list.
    let post = request("POST", "/any", &[], Body::from("fine"));
    assert_eq!(send(&app, post).await.status, 200);
    // Without the setting, a GET body passes through.
    let (app, _) = routes(Some(ValidateLayer::new()));
    let answer = send(&app, request("GET", "/any", &[], Body::from("x"))).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn the_layer_sets_the_extractor_limits() {
    let layer = ValidateLayer::builder()
        .max_body_bytes(200)
        .max_json_depth(2)
        .build()
        .unwrap();
    let (app, _) = routes(Some(layer));
    let mut item = valid_item();
    item["tags"] = json!(["x".repeat(150)]);
    send(&app, json_post("/items", item.to_string()))
        .await
        .problem(413, "payload-too-large");
    // {"tags":[...]} is depth 2; one level more is refused before parsing.
    let mut item = valid_item();
    item["tags"] = json!([["nested"]]);
    let answer = send(&app, json_post("/items", item.to_string())).await;
    answer.problem(400, "bad-request");
    assert_eq!(errors(&answer), pairs(&[("/tags/0", "too_deep")]));
    assert_eq!(
        send(&app, json_post("/items", valid_item().to_string()))
            .await
            .status,
        201
    );
}

// ---------------------------------------------------------------------------------------------
// Valid<Json<T>>

#[tokio::test]
async fn a_valid_item_reaches_the_handler() {
    let (app, calls) = routes(None);
    let answer = send(&app, json_post("/items", valid_item().to_string())).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    assert_eq!(answer.body, valid_item());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Optional fields may be left out; a UTF-8 charset parameter is fine.
    let minimal = json!({ "name": "G", "sku": "ABC", "price": 0, "quantity": 0 });
    let request = Request::post("/items")
        .header("content-type", "Application/JSON; charset=UTF-8")
        .body(Body::from(minimal.to_string()))
        .unwrap();
    assert_eq!(send(&app, request).await.status, 201);
}

#[tokio::test]
async fn every_failed_rule_is_reported_at_once_without_the_values() {
    let (app, calls) = routes(None);
    let body = json!({
        "name": "", "sku": "lower-case-secret", "price": 2_000_000.0, "quantity": 10_001,
        "tags": ["a","b","c","d","e","f","g","h","i","j","k"],
        "contact_email": "not-an-email-secret"
    });
    let answer = send(&app, json_post("/items", body.to_string())).await;
    answer
        .problem(422, "unprocessable-content")
        .leaks_nothing_of("secret")
        .leaks_nothing_of("2000000")
        .leaks_nothing_of("10001");
    assert_eq!(
        errors(&answer),
        pairs(&[
            ("/contact_email", "email"),
            ("/name", "length"),
            ("/price", "range"),
            ("/quantity", "range"),
            ("/sku", "regex"),
            ("/tags", "length"),
        ])
    );
    let name = &answer.body["errors"][1];
    assert_eq!(name["message"], "length must be between 1 and 100");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn unknown_fields_are_refused_all_at_once_with_the_failed_rules() {
    let (app, calls) = routes(None);
    let mut body = valid_item();
    body["is_admin"] = json!(true);
    body["owner_id"] = json!(1);
    body["quantity"] = json!(20_000);
    let answer = send(&app, json_post("/items", body.to_string())).await;
    answer.problem(422, "unprocessable-content");
    assert_eq!(
        errors(&answer),
        pairs(&[
            ("/is_admin", "unknown_field"),
            ("/owner_id", "unknown_field"),
            ("/quantity", "range"),
        ])
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn misfit_bodies_are_422_and_malformed_ones_400_with_the_location() {
    let (app, _) = routes(None);
    // Well-formed JSON that does not fit the type: content, like a failed rule.
    let misfits: Vec<(String, &str, &str)> = vec![
        (
            r#"{"name":"G","sku":"ABC","price":"12","quantity":1}"#.into(),
            "/price",
            "invalid_type",
        ),
        (
            r#"{"name":"G","sku":"ABC","price":1}"#.into(),
            "/quantity",
            "missing_field",
        ),
        (
            r#"{"name":"G","sku":"ABC","price":1,"quantity":-1}"#.into(),
            "/quantity",
            "invalid_value",
        ),
        ("\"text\"".into(), "", "invalid_type"),
    ];
    for (body, field, code) in misfits {
        let answer = send(&app, json_post("/items", body.clone())).await;
        answer.problem(422, "unprocessable-content");
        assert_eq!(errors(&answer), pairs(&[(field, code)]), "{body}");
    }
    // A missing field and a member the type does not have, in one list.
    let answer = send(
        &app,
        json_post(
            "/items",
            r#"{"name":"G","sku":"ABC","price":1,"admin":true}"#,
        ),
    )
    .await;
    answer.problem(422, "unprocessable-content");
    assert_eq!(
        errors(&answer),
        pairs(&[("/admin", "unknown_field"), ("/quantity", "missing_field")])
    );
    let malformed: Vec<(String, &str, &str)> = vec![
        (
            r#"{"name":"G","name":"H","sku":"ABC","price":1,"quantity":1}"#.into(),
            "/name",
            "duplicate_key",
        ),
        (
            r#"{"name":"G","sku":"ABC","price":1,"quantity":1,"tags":["a",]}"#.into(),
            "/tags",
            "syntax",
        ),
        (
            r#"{"name":"G","sku":"ABC","price":1,"quantity":1} {}"#.into(),
            "",
            "syntax",
        ),
        (String::new(), "", "syntax"),
    ];
    for (body, field, code) in malformed {
        let answer = send(&app, json_post("/items", body.clone())).await;
        answer.problem(400, "bad-request");
        assert_eq!(errors(&answer), pairs(&[(field, code)]), "{body}");
    }
    // Syntax errors say where, by line and column.
    let answer = send(&app, json_post("/items", "{\n  \"name\": @\n}")).await;
    assert_eq!(answer.body["errors"][0]["line"], 2);
    assert!(answer.body["errors"][0]["column"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn only_json_is_accepted() {
    let (app, calls) = routes(None);
    let body = valid_item().to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/merge-patch+json"),
        Some("application/json; charset=latin1"),
        Some("application/jsonx"),
        Some("json"),
    ] {
        let mut builder = Request::post("/items");
        if let Some(value) = content_type {
            builder = builder.header("content-type", value);
        }
        let answer = send(&app, builder.body(Body::from(body.clone())).unwrap()).await;
        answer.problem(415, "unsupported-media-type");
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .contains("application/json")
        );
    }
    let twice = Request::post("/items")
        .header("content-type", "application/json")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    send(&app, twice)
        .await
        .problem(415, "unsupported-media-type");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------------
// Valid<Query<T>>, Valid<Form<T>>, Valid<Path<T>>

#[tokio::test]
async fn queries_are_typed_and_validated() {
    let (app, _) = routes(None);
    let answer = send(&app, get_with("/items?q=gate&min_price=2.5", &[])).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, json!({ "q": "gate", "min_price": 2.5 }));
    let cases = [
        ("/items?q=a&q=b", 400, "/q", "duplicate_key"),
        ("/items?min_price=1", 422, "/q", "missing_field"),
        (
            "/items?q=a&min_price=cheap",
            422,
            "/min_price",
            "invalid_value",
        ),
        ("/items?q=%FF", 400, "/q", "invalid_utf8"),
        ("/items?q=a&min_price=NaN", 422, "/min_price", "finite"),
        ("/items?q=a&min_price=inf", 422, "/min_price", "finite"),
        ("/items?q=a%0d%0aSet-Cookie:x", 422, "/q", "safe_line"),
        ("/items?q=a&debug=1", 422, "/debug", "unknown_field"),
    ];
    for (uri, status, field, code) in cases {
        let answer = send(&app, get_with(uri, &[])).await;
        let kind = if status == 400 {
            "bad-request"
        } else {
            "unprocessable-content"
        };
        answer.problem(status, kind).leaks_nothing_of("cheap");
        assert!(
            errors(&answer).contains(&(field.to_owned(), code.to_owned())),
            "{uri}: {}",
            answer.text
        );
    }
}

#[tokio::test]
async fn forms_are_typed_and_validated() {
    let (app, _) = routes(None);
    let form = |body: &str, content_type: &str| {
        Request::post("/form")
            .header("content-type", content_type)
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let urlencoded = "application/x-www-form-urlencoded";
    let answer = send(&app, form("q=gate+post&min_price=3", urlencoded)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body, json!({ "q": "gate post", "min_price": 3.0 }));
    let answer = send(&app, form("q=&min_price=300", urlencoded)).await;
    answer.problem(422, "unprocessable-content");
    assert_eq!(
        errors(&answer),
        pairs(&[("/min_price", "range"), ("/q", "length")])
    );
    send(&app, form(r#"{"q":"gate"}"#, "application/json"))
        .await
        .problem(415, "unsupported-media-type");
}

#[tokio::test]
async fn path_parameters_are_typed_and_validated() {
    let (app, _) = routes(None);
    let answer = send(&app, get_with("/items/42", &[])).await;
    assert_eq!((answer.status.as_u16(), answer.text.as_str()), (200, "42"));
    let answer = send(&app, get_with("/items/0", &[])).await;
    answer.problem(422, "unprocessable-content");
    assert_eq!(errors(&answer), pairs(&[("/id", "range")]));
    let answer = send(&app, get_with("/items/abc-secret", &[])).await;
    answer
        .problem(400, "bad-request")
        .leaks_nothing_of("abc-secret");
    assert_eq!(errors(&answer), pairs(&[("/id", "invalid_value")]));
}

/// Plain path parameters have no rules, so `Valid` does not take them; `WithProblem` answers
/// a malformed one (and any axum extractor's rejection) with problem+json instead of axum's
/// `text/plain`, without quoting the request.
#[tokio::test]
async fn axum_extractor_rejections_are_problems_with_with_problem() {
    use portcullis::validate::WithProblem;

    #[derive(Clone)]
    struct Missing;
    let app =
        Router::new()
            .route(
                "/notes/{id}",
                get(|WithProblem(Path(id)): WithProblem<Path<u64>>| async move { id.to_string() }),
            )
            .route(
                "/echo",
                post(
                    |WithProblem(Json(value)): WithProblem<Json<Value>>| async move { Json(value) },
                ),
            )
            .route(
                "/extension",
                get(
                    |WithProblem(axum::Extension(Missing)): WithProblem<
                        axum::Extension<Missing>,
                    >| async { "unreachable" },
                ),
            );
    assert_eq!(send(&app, get_with("/notes/7", &[])).await.text, "7");
    let answer = send(&app, get_with("/notes/%3Cscript%3E", &[])).await;
    answer.problem(400, "bad-request");
    assert_eq!(answer.body["reason"], "malformed_input");
    assert!(!answer.text.contains("script"), "{}", answer.text);
    assert_eq!(
        send(&app, json_post("/echo", r#"{"a":1}"#)).await.body,
        json!({ "a": 1 })
    );
    let plain = request(
        "POST",
        "/echo",
        &[("content-type", "text/plain")],
        Body::from("{}"),
    );
    send(&app, plain)
        .await
        .problem(415, "unsupported-media-type");
    send(&app, json_post("/echo", "{not json"))
        .await
        .problem(400, "bad-request");
    // A missing extension is the server's mistake: still a 500, as problem+json, naming no
    // internals.
    let answer = send(&app, get_with("/extension", &[])).await;
    answer.problem(500, "internal");
    assert!(answer.body.get("reason").is_none());

    // Another extractor's status and protocol headers are kept, its text is not.
    struct OnlyGet;
    impl<S: Send + Sync> axum::extract::FromRequestParts<S> for OnlyGet {
        type Rejection = (
            http::StatusCode,
            [(&'static str, &'static str); 1],
            &'static str,
        );
        async fn from_request_parts(
            _: &mut http::request::Parts,
            _: &S,
        ) -> Result<Self, Self::Rejection> {
            Err((
                http::StatusCode::METHOD_NOT_ALLOWED,
                [("allow", "GET")],
                "secret internal text",
            ))
        }
    }
    let app = Router::new().route(
        "/only",
        get(|WithProblem(OnlyGet): WithProblem<OnlyGet>| async { "" }),
    );
    let answer = send(&app, get_with("/only", &[])).await;
    answer
        .problem(405, "method-not-allowed")
        .leaks_nothing_of("secret");
    assert_eq!(answer.headers["allow"], "GET");
}
