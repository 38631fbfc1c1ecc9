//! Sensitive data never leaves in responses or logs (OWASP API3, excessive data exposure).
//!
//! [`RedactLayer`] rewrites JSON response bodies before they leave:
//!
//! - **field rules** mask members by name, at any depth, case- and punctuation-insensitively
//!   (`password`, `token`, `api_key`, `card_number`, ... see [`DEFAULT_FIELDS`]);
//! - **path rules** mask the values at a JSON path with wildcards (`$.users[*].email`);
//! - **detectors** find secrets inside any string or number, whatever the field: payment cards
//!   (Luhn-checked), JWTs, API keys (AWS, GitHub, Stripe, Slack, `Bearer ...`), e-mail
//!   addresses, IBANs (mod-97-checked). Implement [`Detector`] to add your own.
//! - **allowlists** ([`AllowOnly`]) drop every member not on a listed path, per route and role,
//!   so a handler that returns a whole database row cannot leak a new column.
//!
//! - **nested documents**: a string value that is itself a JSON object or array (a stored
//!   webhook, an event blob: `{"payload":"{\"password\":\"x\"}"}`) is redacted as a document
//!   too, and written back correctly escaped; see [below](#nested-documents).
//!
//! Each rule has a [`Mask`]: remove, `"[REDACTED]"`, keep the last four characters, or a keyed
//! HMAC fingerprint; and roles that see the value unmasked ([`Rule::except_roles`], read from the
//! [`Identity`](crate::Identity) the [`AuthLayer`](crate::AuthLayer) put in the request, so the
//! `RedactLayer` goes inside the `AuthLayer`). Exemptions compose: a caller a field or path rule
//! spares sees that string or number as written, the detectors included (inside a spared
//! object or array they still run). A rule can also be limited to
//! routes ([`Rule::on_routes`]), keep a detector out of free-text members
//! ([`Rule::except_fields`]), or let a caller see their own value
//! ([`Rule::visible_to_owner`]); [`RedactLayer::without_rule`] switches a default off. Each response that was examined carries a
//! [`Redactions`] extension: how many values each rule (by detector name, or `field`, `path`,
//! `allow_only`, `nested_json`) masked, for metrics and audit.
//!
//! # Nested documents
//!
//! A string value whose text, whitespace aside, starts with `{` and ends with `}` (or `[` and
//! `]`, or is itself a quoted JSON string: JSON encoded twice) and parses as JSON is walked as a
//! document with the same rules: field rules and detectors apply inside it, and **paths
//! continue through the string as if the document were the value** (`$.payload.password` masks
//! the `password` inside
//! `{"payload":"{\"password\":\"x\"}"}`). The redacted document is written back into the
//! string, escaped; what is not redacted keeps its text. Allowlists do not look inside strings
//! (a string where an allowlist expects members is dropped, as any other string). A string that
//! does not parse is text, scanned by the detectors.
//!
//! Documents are followed at most four deep inside strings, and the nesting of arrays and
//! objects counts across them toward the same limit of 127 levels, so the work stays linear in
//! the size of the body (at most five walks over any byte). A document string beyond either
//! bound is masked whole (`"[REDACTED]"`, counted as `nested_json`) rather than passed
//! unchecked. [`nested_json_as_text`](RedactLayer::nested_json_as_text) turns all of this off:
//! such strings are then text, seen only by the detectors.
//!
//! # HTTP
//!
//! Bodies whose `Content-Type` says JSON (`application/json`, `*+json`, `text/json`, ...) are
//! rewritten; other declared types pass untouched. A body without a usable `Content-Type` (none,
//! several, one that is not readable text or not a media type) is **decided by its content**,
//! since a client may well parse it as JSON: when its first byte that is not whitespace (nor a
//! UTF-8 byte-order mark) is `{` or `[` (or starts JSON in another encoding: a UTF-16 or UTF-32
//! byte-order mark, a NUL), it is treated as JSON (rewritten, or withheld as `invalid_json` when
//! it does not parse); when it starts like a JSON string, number or literal, it is rewritten if
//! the whole body is JSON (a bare string may hold a token or a document) and passes as it came
//! otherwise; anything else passes as it came, and a large body of unknown type is not refused
//! for its size unless it turns out to be a document. The rewritten body keeps member order, numbers and escapes of
//! everything not redacted, and gets a new `Content-Length` (`ETag` and digests of the original
//! are removed). A body is buffered only up to [`max_body_bytes`](RedactLayer::max_body_bytes)
//! (4 MiB).
//!
//! A `HEAD` request is answered with the headers a `GET` would get, never with ones describing
//! the unredacted body: under `Router::layer`, where axum still hands the layer the `GET`
//! body, it is redacted (or withheld) exactly as for `GET`; when the layer wraps a whole
//! `Router`, which drops the body first, the `Content-Length`, `ETag` and digests of the
//! unredacted body are removed (RFC 9110 §9.3.2 lets a `HEAD` answer omit them; §8.6 forbids a
//! length other than the `GET` one).
//!
//! A JSON body that cannot be redacted is **withheld**, never passed through by accident: it is
//! replaced by a problem+json response with status **406** (`urn:portcullis:problem:response-withheld`)
//! and a `reason`: `response_too_large`, `encoded_response` (it has a `Content-Encoding`),
//! `stream_not_redacted` (`text/event-stream`, NDJSON, JSON sequences), `invalid_json`,
//! `foreign_charset` (JSON declared in another charset than UTF-8), `partial_content` (a `206`
//! range of JSON, of unknown type or `multipart/byteranges`: a range is checked without the
//! document around it, so `"hunter2"` cut out of `{"password":"hunter2"}` would pass) or
//! `response_body_error`. The refusal carries a [`Decision`](crate::Decision) of layer
//! `redact`, so the audit records it under this layer, not under the allow of the layers
//! outside. 406 ("no acceptable representation can be sent") was chosen because it
//! is not a 5xx: the layer does not turn responses into server errors, and clients and monitors
//! do not retry it as an outage. Each case can be allowed to pass unredacted explicitly
//! ([`allow_oversized_unredacted`](RedactLayer::allow_oversized_unredacted),
//! [`allow_encoded_unredacted`](RedactLayer::allow_encoded_unredacted),
//! [`allow_streams_unredacted`](RedactLayer::allow_streams_unredacted)).
//!
//! **Put the `RedactLayer` inside (closer to the handler than) any `CompressionLayer`**, so it
//! sees the JSON before it is compressed: `.layer(RedactLayer::new()).layer(CompressionLayer::new())`.
//!
//! # Logs
//!
//! [`Sensitive<T>`] prints and serializes as `[REDACTED]`. The layer marks the headers in
//! [`SENSITIVE_HEADERS`] (and any added with [`sensitive_header`](RedactLayer::sensitive_header))
//! as sensitive on requests and responses, as tower-http's `SetSensitiveHeadersLayer` does, so
//! `TraceLayer` and `Debug` print them as `Sensitive`. [`RedactLayer::scrub`] runs the same
//! detectors over free text.
//!
//! # Example
//!
//! ```
//! use axum::{Json, Router, routing::get};
//! use portcullis::redact::{Email, Mask, RedactLayer, Redactions, Rule};
//! use serde_json::{Value, json};
//!
//! async fn user() -> Json<Value> {
//!     Json(json!({
//!         "name": "Ada",
//!         "email": "ada@example.com",
//!         "password": "hunter2",
//!         "card": "4111 1111 1111 1111",
//!         "note": "call ada@example.com",
//!     }))
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let layer = RedactLayer::new()
//!     .rule(Rule::path("$.email")?.mask(Mask::Fingerprint))
//!     .rule(Rule::detector(Email).except_roles(["admin"]));
//! let app: Router = Router::new().route("/user", get(user)).layer(layer);
//!
//! use tower::ServiceExt;
//! let request = axum::http::Request::get("/user").body(axum::body::Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.extensions().get::<Redactions>().map(Redactions::total), Some(4));
//! let body = axum::body::to_bytes(response.into_body(), 64 * 1024).await?;
//! let user: Value = serde_json::from_slice(&body)?;
//! assert_eq!(user["name"], "Ada");
//! assert!(user["email"].as_str().unwrap().starts_with("hmac:"));
//! assert_eq!(user["password"], "[REDACTED]");
//! assert_eq!(user["card"], "****1111");
//! assert_eq!(user["note"], "call [REDACTED]");
//! # Ok(())
//! # }
//! ```

mod future;
mod layer;
mod service;

pub use crate::scrub::{
    AllowOnly, CardNumber, DEFAULT_FIELDS, Detector, Email, Iban, Jwt, KnownApiKey, Mask,
    Redactions, Rule, SENSITIVE_HEADERS, Scrubber, Sensitive,
};
pub use future::ResponseFuture;
pub use layer::{FingerprintKey, RedactLayer};
pub use service::Redact;
