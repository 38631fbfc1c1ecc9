//! Only well-formed requests reach handlers.
//!
//! Two halves, both answering with [`Rejection`](crate::Rejection)s:
//!
//! - [`ValidateLayer`] checks the request itself before any body is read: allowed methods (405
//!   with `Allow`; unknown methods like `FOO` never reach a handler), URI length (414), header
//!   size (431), required headers (400), a host allowlist (421), and bodies on methods that should
//!   not have one (400, when configured). It also sets the body limits of the extractors below.
//! - [`Valid<E>`] wraps axum's `Json`, `Query`, `Form` and `Path` extractors: it deserializes
//!   strictly and runs the type's [`validator::Validate`] rules, so a handler receives only typed,
//!   validated input (OWASP API3 mass assignment, API8 injection).
//!
//! # What `Valid` refuses
//!
//! | problem | status | `errors[].code` |
//! |---|---|---|
//! | a rule of the type fails (every failure is listed at once) | 422 | the rule (`length`, `range`, `email`, `regex`, `slug`, ...) |
//! | a member the type has no field for: mass assignment | 422 | `unknown_field` |
//! | wrong type, missing field, unacceptable value | 422 | `invalid_type`, `missing_field`, `invalid_value` |
//! | a member given twice (`{"a":1,"a":2}`, `?a=1&a=2`) | 400 | `duplicate_key` |
//! | not JSON, trailing data, a number out of range | 400 | `syntax` (with `line` and `column`) |
//! | invalid UTF-8 | 400 | `invalid_utf8` |
//! | JSON nested deeper than 32 levels (configurable) | 400 | `too_deep` |
//! | a body over 1 MiB (configurable), declared or streamed | 413 | |
//! | `Content-Type` other than `application/json` (or `application/x-www-form-urlencoded` for `Form`) | 415 | |
//!
//! Input that is well-formed but does not fit the type is content, like a failed rule: one 422
//! lists it with every member the type does not have. Reading stops at the first misfit (serde
//! does), so its rules are checked, and listed with the unknown members, once the types fit; 400
//! is kept for input that is not well-formed at all.
//!
//! Every entry of `errors` is `{ "field": "/json/pointer", "code", "message" }`. Messages are
//! fixed sentences: an error body never echoes the submitted values, and member names from the
//! input are cut to 64 characters.
//!
//! Unknown fields are refused whether or not the type says `#[serde(deny_unknown_fields)]`
//! (except under `#[serde(flatten)]`, which hides them from any checker). Depth and duplicate
//! members are checked in one pass over the bytes before parsing, so a 100 000-deep array is
//! refused after 33 bytes and can never overflow the stack; bodies are parsed once.
//!
//! Floats from a query or form can be `NaN` or `inf`, which validator's `range` lets through:
//! pair it with [`finite`]. The other reusable rules are [`identifier`], [`slug`], [`safe_line`],
//! [`safe_text`], [`iso_date`] and [`https_url`].
//!
//! # Example
//!
//! ```
//! use axum::{Json, Router, http::{Method, StatusCode}, routing::post};
//! use portcullis::{Valid, ValidateLayer};
//! use serde::{Deserialize, Serialize};
//! use validator::Validate;
//!
//! #[derive(Deserialize, Serialize, Validate)]
//! struct NewPage {
//!     #[validate(custom(function = "portcullis::validate::slug"))]
//!     slug: String,
//!     #[validate(length(min = 1, max = 200), custom(function = "portcullis::validate::safe_line"))]
//!     title: String,
//!     #[validate(custom(function = "portcullis::validate::https_url"))]
//!     canonical: Option<String>,
//! }
//!
//! async fn create(Valid(Json(page)): Valid<Json<NewPage>>) -> (StatusCode, Json<NewPage>) {
//!     (StatusCode::CREATED, Json(page))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let app: Router = Router::new().route("/pages", post(create)).layer(
//!     ValidateLayer::builder()
//!         .allowed_methods([Method::GET, Method::POST])
//!         .deny_body_on([Method::GET])
//!         .max_body_bytes(64 * 1024)
//!         .max_json_depth(8)
//!         .build()?,
//! );
//!
//! use tower::ServiceExt;
//! let request = axum::http::Request::post("/pages")
//!     .header("content-type", "application/json")
//!     .body(axum::body::Body::from(r#"{"slug":"Not A Slug","title":"Hi","admin":true}"#))?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
//! let body = axum::body::to_bytes(response.into_body(), 64 * 1024).await?;
//! let problem: serde_json::Value = serde_json::from_slice(&body)?;
//! assert_eq!(problem["errors"][0]["field"], "/admin");
//! assert_eq!(problem["errors"][0]["code"], "unknown_field");
//! assert_eq!(problem["errors"][1]["field"], "/slug");
//! assert_eq!(problem["errors"][1]["code"], "slug");
//! # Ok(())
//! # }
//! ```

mod extract;
mod json;
mod layer;
mod parse;
mod pointer;
mod rules;
mod service;

pub use extract::{Valid, WithProblem};
pub use layer::{ValidateLayer, ValidateLayerBuilder};
pub use rules::{finite, https_url, identifier, iso_date, safe_line, safe_text, slug};
pub use service::{ResponseFuture, Validate};

/// The body limits [`ValidateLayer`] hands to the [`Valid`] extractors through the request
/// extensions (as axum's `DefaultBodyLimit` does for its own extractors).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimits {
    pub(crate) max_body_bytes: usize,
    pub(crate) max_json_depth: usize,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_json_depth: 32,
        }
    }
}

impl BodyLimits {
    fn of(extensions: &http::Extensions) -> Self {
        extensions.get::<Self>().copied().unwrap_or_default()
    }
}
