//! Arbitrary bytes into `Valid<Json<T>>`, the way a request body arrives: the extractor must
//! answer (an in-memory body never makes it wait), and every refusal must be a 4xx that echoes
//! none of the input.
#![no_main]

use axum::Json;
use axum::body::Body;
use axum::extract::FromRequest;
use axum::response::IntoResponse;
use futures_util::FutureExt;
use libfuzzer_sys::fuzz_target;
use portcullis::Valid;
use serde::Deserialize;
use validator::Validate;

#[derive(Deserialize, Validate)]
#[allow(dead_code)]
struct Target {
    #[validate(
        length(min = 1, max = 100),
        custom(function = "portcullis::validate::safe_line")
    )]
    name: String,
    #[validate(custom(function = "portcullis::validate::slug"))]
    slug: Option<String>,
    #[validate(
        range(min = 0.0, max = 1e6),
        custom(function = "portcullis::validate::finite")
    )]
    price: Option<f64>,
    #[validate(length(max = 10))]
    tags: Option<Vec<String>>,
    #[validate(nested)]
    parts: Option<Vec<Part>>,
    extra: Option<serde_json::Value>,
}

#[derive(Deserialize, Validate, serde::Serialize)]
#[allow(dead_code)]
struct Part {
    #[validate(range(max = 1000))]
    n: u32,
}

fuzz_target!(|data: &[u8]| {
    let request = http::Request::post("/")
        .header("content-type", "application/json")
        .body(Body::from(data.to_vec()))
        .expect("a static request");
    let outcome = Valid::<Json<Target>>::from_request(request, &())
        .now_or_never()
        .expect("an in-memory body is read without waiting");
    if let Err(rejection) = outcome {
        let status = rejection.status().as_u16();
        assert!(matches!(status, 400 | 413 | 422), "status {status}");
        let body = rejection.problem_json();
        assert!(body.len() < 16 * 1024, "error body of {} bytes", body.len());
        let _ = rejection.into_response();
    }
});
