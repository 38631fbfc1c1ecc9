//! The one error type every portcullis layer answers with.
//!
//! A [`Rejection`] renders as an RFC 9457 `application/problem+json` document with a stable `type`
//! URI per [`RejectionKind`], a `title`, the `status` and a `detail`. The detail is always one of
//! portcullis's own fixed sentences (or one you set yourself): it never contains a token, a key, a
//! password or the text of an internal error, so a rejection can be shown to anyone.
//!
//! 401 responses carry `WWW-Authenticate` challenges (RFC 9110 §11.6.1): for bearer tokens in the
//! RFC 6750 form (`Bearer realm="api", error="invalid_token", error_description="..."`, or no
//! `error` when no credentials were sent), for Basic `Basic realm="api", charset="UTF-8"`.
//!
//! Every rejection response also carries the [`Rejection`] itself in its extensions, so outer layers
//! can see why a request was refused (the audit layer reads it) and so [`RenderRejectionLayer`] can
//! replace the body with your API's own error shape in one place.
//!
//! # Example
//!
//! ```
//! use axum::response::IntoResponse;
//! use portcullis::{Rejection, RejectionKind};
//!
//! let response = Rejection::new(RejectionKind::NotFound)
//!     .with_detail("No item has this id.")
//!     .into_response();
//! assert_eq!(response.status(), 404);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! assert!(response.extensions().get::<Rejection>().is_some());
//! ```

mod reason;
mod render;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde::Serialize;

use crate::decision::{Decision, LayerKind};

pub use reason::Reason;
pub(crate) use reason::is_guessing_name;
pub use render::{RenderFuture, RenderRejection, RenderRejectionLayer, RenderRejectionService};

/// The media type of every rejection body (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// What went wrong, at the granularity a client can act on.
///
/// Each kind has a fixed HTTP status, title and `type` URI. The URIs are URNs
/// (`urn:portcullis:problem:<slug>`): stable identifiers that never change between releases,
/// not links.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credentials were presented where they are required (401).
    MissingCredentials,
    /// The bearer token is expired, revoked, malformed or otherwise invalid (401, RFC 6750
    /// `invalid_token`).
    InvalidToken,
    /// An API key or user name and password was presented but not accepted (401).
    InvalidCredentials,
    /// The credentials could not be read at all: repeated `Authorization` headers, two tokens, a
    /// broken header (400, RFC 6750 `invalid_request`).
    InvalidRequest,
    /// The caller is authenticated but lacks a required scope (403, RFC 6750 `insufficient_scope`).
    InsufficientScope,
    /// The caller must authenticate again more strongly or more recently (401, RFC 9470
    /// `insufficient_user_authentication`, with `acr_values` / `max_age` in the challenge).
    InsufficientUserAuthentication,
    /// The caller is authenticated but not allowed to do this (403).
    Forbidden,
    /// The request is malformed in a way not covered by a more specific kind (400).
    BadRequest,
    /// The resource does not exist (404).
    NotFound,
    /// The method is not allowed on this resource (405, with `Allow`).
    MethodNotAllowed,
    /// The request was meant for another host (421): not in the host allowlist.
    MisdirectedRequest,
    /// The request body is larger than allowed (413).
    PayloadTooLarge,
    /// The request target is longer than allowed (414).
    UriTooLong,
    /// The request body has a media type the route does not accept (415).
    UnsupportedMediaType,
    /// The request is well-formed but its content is not acceptable (422).
    UnprocessableContent,
    /// Too many requests, or too many waiting for the same resource (429).
    TooManyRequests,
    /// The request's header fields are larger than allowed (431).
    HeaderFieldsTooLarge,
    /// The response could not be redacted (too large, compressed, a stream, not JSON), so it was
    /// withheld rather than sent (406; see [`redact`](crate::redact)).
    ResponseWithheld,
    /// The server failed; the detail never says how (500).
    Internal,
}

impl RejectionKind {
    /// The HTTP status this kind is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::MissingCredentials
            | Self::InvalidToken
            | Self::InvalidCredentials
            | Self::InsufficientUserAuthentication => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest | Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::InsufficientScope | Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::HeaderFieldsTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::UnprocessableContent => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::ResponseWithheld => StatusCode::NOT_ACCEPTABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable problem `type` URI.
    pub fn type_uri(self) -> &'static str {
        match self {
            Self::MissingCredentials => "urn:portcullis:problem:missing-credentials",
            Self::InvalidToken => "urn:portcullis:problem:invalid-token",
            Self::InvalidCredentials => "urn:portcullis:problem:invalid-credentials",
            Self::InvalidRequest => "urn:portcullis:problem:invalid-request",
            Self::InsufficientScope => "urn:portcullis:problem:insufficient-scope",
            Self::InsufficientUserAuthentication => {
                "urn:portcullis:problem:insufficient-user-authentication"
            }
            Self::Forbidden => "urn:portcullis:problem:forbidden",
            Self::BadRequest => "urn:portcullis:problem:bad-request",
            Self::NotFound => "urn:portcullis:problem:not-found",
            Self::MethodNotAllowed => "urn:portcullis:problem:method-not-allowed",
            Self::MisdirectedRequest => "urn:portcullis:problem:misdirected-request",
            Self::UriTooLong => "urn:portcullis:problem:uri-too-long",
            Self::HeaderFieldsTooLarge => "urn:portcullis:problem:header-fields-too-large",
            Self::PayloadTooLarge => "urn:portcullis:problem:payload-too-large",
            Self::UnsupportedMediaType => "urn:portcullis:problem:unsupported-media-type",
            Self::UnprocessableContent => "urn:portcullis:problem:unprocessable-content",
            Self::TooManyRequests => "urn:portcullis:problem:too-many-requests",
            Self::ResponseWithheld => "urn:portcullis:problem:response-withheld",
            Self::Internal => "urn:portcullis:problem:internal",
        }
    }

    /// The short, human-readable summary (RFC 9457 `title`); the same for every occurrence.
    pub fn title(self) -> &'static str {
        match self {
            Self::MissingCredentials => "Authentication required",
            Self::InvalidToken => "Invalid access token",
            Self::InvalidCredentials => "Invalid credentials",
            Self::InvalidRequest => "Invalid authentication request",
            Self::InsufficientScope => "Insufficient scope",
            Self::InsufficientUserAuthentication => "Stronger authentication required",
            Self::Forbidden => "Forbidden",
            Self::BadRequest => "Bad request",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::MisdirectedRequest => "Misdirected request",
            Self::UriTooLong => "URI too long",
            Self::HeaderFieldsTooLarge => "Request header fields too large",
            Self::PayloadTooLarge => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::UnprocessableContent => "Unprocessable content",
            Self::TooManyRequests => "Too many requests",
            Self::ResponseWithheld => "Response withheld",
            Self::Internal => "Internal server error",
        }
    }

    fn default_detail(self) -> &'static str {
        match self {
            Self::MissingCredentials => "This resource requires authentication.",
            Self::InvalidToken => "The access token is not valid.",
            Self::InvalidCredentials => "The credentials were not accepted.",
            Self::InvalidRequest => "The authentication part of the request is malformed.",
            Self::InsufficientScope => "The access token does not carry a required scope.",
            Self::InsufficientUserAuthentication => {
                "Authenticate again with a stronger or more recent method."
            }
            Self::Forbidden => "You are not allowed to do this.",
            Self::BadRequest => "The request is malformed.",
            Self::NotFound => "The resource does not exist.",
            Self::MethodNotAllowed => "This method is not allowed on this resource.",
            Self::MisdirectedRequest => "This server does not serve the requested host.",
            Self::UriTooLong => "The request URI is too long.",
            Self::HeaderFieldsTooLarge => "The request header fields are too large.",
            Self::PayloadTooLarge => "The request body is too large.",
            Self::UnsupportedMediaType => "The request body has an unsupported media type.",
            Self::UnprocessableContent => "The request content is not acceptable.",
            Self::TooManyRequests => "Too many requests; retry later.",
            Self::ResponseWithheld => {
                "The response could not be checked for sensitive data, so it was not sent."
            }
            Self::Internal => "The server could not complete the request.",
        }
    }

    /// The RFC 6750 `error` code that goes into a `Bearer` challenge, if any.
    fn bearer_error(self) -> Option<&'static str> {
        match self {
            Self::InvalidToken => Some("invalid_token"),
            Self::InvalidRequest => Some("invalid_request"),
            Self::InsufficientScope => Some("insufficient_scope"),
            Self::InsufficientUserAuthentication => Some("insufficient_user_authentication"),
            _ => None,
        }
    }
}

/// An authentication scheme that can be named in a `WWW-Authenticate` challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// RFC 6750 bearer tokens.
    Bearer,
    /// RFC 7617 Basic.
    Basic,
    /// API keys (`Authorization: ApiKey ...` or a key header); not a registered scheme, but the
    /// conventional name, so clients can see that a key is expected.
    ApiKey,
}

impl Scheme {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Basic => "Basic",
            Self::ApiKey => "ApiKey",
        }
    }
}

/// The `realm` of `WWW-Authenticate` challenges (RFC 9110 §11.5): 1 to 128 printable ASCII
/// characters without quotes or backslashes, so it is placed in a quoted string as it is.
/// [`Default`] is `api`.
///
/// ```
/// use portcullis::{AuthLayer, Realm};
///
/// # fn main() -> Result<(), portcullis::ConfigError> {
/// let layer = AuthLayer::required().realm(Realm::new("tickets")?);
/// assert!(Realm::new("say \"hi\"").is_err());
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Realm(Arc<str>);

impl Realm {
    /// A realm, or a [`ConfigError`] naming what is wrong with it.
    pub fn new(realm: &str) -> Result<Self, crate::ConfigError> {
        if realm.is_empty()
            || realm.len() > 128
            || !realm
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err(crate::ConfigError::new(
                "realm must be 1-128 printable ASCII characters without quotes or backslashes",
            ));
        }
        Ok(Self(realm.into()))
    }
}

impl Default for Realm {
    fn default() -> Self {
        Self("api".into())
    }
}

/// A refused request: the single error type of portcullis.
///
/// Build one with [`Rejection::new`] (or a layer builds it for you), return it from a handler or an
/// extractor, and it renders as problem+json with the right status and headers. Cheap to move (one
/// pointer); it is only ever built on the error path.
#[derive(Clone)]
pub struct Rejection(Box<Inner>);

#[derive(Clone)]
struct Inner {
    kind: RejectionKind,
    detail: Cow<'static, str>,
    reason: Reason,
    /// Schemes to challenge with when the status is 401 (or 403 for `insufficient_scope`).
    challenges: Vec<Scheme>,
    realm: Option<Realm>,
    /// Extra parameters of the `Bearer` challenge: `scope` (RFC 6750 §3), `acr_values` and
    /// `max_age` (RFC 9470 §3).
    bearer_params: Vec<(&'static str, Cow<'static, str>)>,
    headers: HeaderMap,
    members: Option<serde_json::Map<String, serde_json::Value>>,
    /// The portcullis layer that refused, when it is known where the rejection is built (an
    /// extractor guard, the redaction of a response): the response then carries its
    /// [`Decision`], so the refusal is recorded under that layer and not under an outer
    /// layer's earlier allow.
    layer: Option<LayerKind>,
    /// The problem document leaves the `reason` out (see [`Rejection::hide_reason`]).
    hide_reason: bool,
}

impl Rejection {
    /// A rejection of this kind with its default detail and no challenges.
    pub fn new(kind: RejectionKind) -> Self {
        Self(Box::new(Inner {
            kind,
            detail: Cow::Borrowed(kind.default_detail()),
            reason: Reason::Unspecified,
            challenges: Vec::new(),
            realm: None,
            bearer_params: Vec::new(),
            headers: HeaderMap::new(),
            members: None,
            layer: None,
            hide_reason: false,
        }))
    }

    /// Replaces the `detail`. It is shown to clients: never put a secret or an internal error
    /// message here.
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.0.detail = detail.into();
        self
    }

    /// Sets the machine-readable reason (e.g. [`Reason::Expired`], or `"expired"`, which
    /// converts to it), recorded by the audit layer and in traces. It is not part of the
    /// response body.
    pub fn with_reason(mut self, reason: impl Into<Reason>) -> Self {
        self.0.reason = reason.into();
        self
    }

    /// Adds a `WWW-Authenticate` challenge for this scheme (in the order added).
    pub fn with_challenge(mut self, scheme: Scheme) -> Self {
        if !self.0.challenges.contains(&scheme) {
            self.0.challenges.push(scheme);
        }
        self
    }

    /// Names the scope whose absence caused an `insufficient_scope` rejection.
    pub fn with_scope(self, scope: impl Into<Cow<'static, str>>) -> Self {
        self.with_bearer_param("scope", scope)
    }

    /// Adds a parameter to the `Bearer` challenge, e.g. RFC 9470's `acr_values` or `max_age`.
    /// Values are filtered to the characters RFC 6750 allows in a quoted string.
    pub fn with_bearer_param(
        mut self,
        name: &'static str,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.0.bearer_params.push((name, value.into()));
        self
    }

    /// Adds a response header (e.g. `Retry-After`, `Allow`).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.0.headers.append(name, value);
        self
    }

    /// Adds a member to the problem document (RFC 9457 §3.2 extension members). The standard
    /// members (`type`, `title`, `status`, `detail`) cannot be overridden this way.
    pub fn with_member(mut self, name: impl Into<String>, value: serde_json::Value) -> Self {
        let name = name.into();
        if !matches!(name.as_str(), "type" | "title" | "status" | "detail") {
            self.0
                .members
                .get_or_insert_with(serde_json::Map::new)
                .insert(name, value);
        }
        self
    }

    /// Names the layer that refused: the response will carry a denied [`Decision`] of that
    /// layer (with this rejection's reason), which outer layers do not replace with their own
    /// allow. For refusals made after the request was let through: extractor guards and
    /// response-side checks.
    pub(crate) fn decided_by(mut self, layer: LayerKind) -> Self {
        self.0.layer = Some(layer);
        self
    }

    /// Leaves the `reason` out of the problem document, for refusals that must not say more
    /// than their status (`RbacLayer::hide_details`). The audit record keeps it.
    pub(crate) fn hide_reason(mut self) -> Self {
        self.0.hide_reason = true;
        self
    }

    pub(crate) fn set_realm(&mut self, realm: &Realm) {
        if self.0.realm.is_none() {
            self.0.realm = Some(realm.clone());
        }
    }

    pub(crate) fn set_challenges(&mut self, schemes: &[Scheme]) {
        self.0.challenges = schemes.to_vec();
    }

    pub(crate) fn has_challenges(&self) -> bool {
        !self.0.challenges.is_empty()
    }

    /// What went wrong.
    pub fn kind(&self) -> RejectionKind {
        self.0.kind
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        self.0.kind.status()
    }

    /// The `detail` shown to clients.
    pub fn detail(&self) -> &str {
        &self.0.detail
    }

    /// The machine-readable reason ([`Reason::Unspecified`] when none was set).
    pub fn reason(&self) -> Reason {
        self.0.reason
    }

    /// Whether this refusal is evidence that someone is guessing credentials, which the
    /// [`LockoutLayer`](crate::rate_limit::LockoutLayer) counts (locally and in Redis alike).
    /// See [`Reason::is_guess`].
    pub(crate) fn is_guess(&self) -> bool {
        self.0.reason.is_guess(self.0.kind)
    }

    /// The extension members of the problem document.
    pub fn members(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.0.members.as_ref()
    }

    /// The protocol headers of this rejection: `WWW-Authenticate` challenges and any header added
    /// with [`Rejection::with_header`]. A custom renderer keeps these.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = self.0.headers.clone();
        for scheme in &self.0.challenges {
            if let Some(value) = self.challenge_value(*scheme) {
                headers.append(WWW_AUTHENTICATE, value);
            }
        }
        headers
    }

    /// The RFC 9457 problem document as JSON bytes: `type`, `title`, `status`, `detail`, the
    /// machine-readable `reason` (its stable name; absent when unspecified, for server errors,
    /// for refusals that hide their details, and for the two Basic reasons that would tell
    /// which half of a credential was wrong) and your
    /// [members](Self::with_member).
    ///
    /// ```
    /// use portcullis::{Reason, Rejection, RejectionKind};
    ///
    /// let rejection = Rejection::new(RejectionKind::InvalidToken)
    ///     .with_detail("the token has expired")
    ///     .with_reason(Reason::Expired);
    /// let body: serde_json::Value = serde_json::from_slice(&rejection.problem_json()).unwrap();
    /// assert_eq!(body["reason"], "expired");
    /// ```
    pub fn problem_json(&self) -> Bytes {
        #[derive(Serialize)]
        struct Problem<'a> {
            #[serde(rename = "type")]
            type_uri: &'static str,
            title: &'static str,
            status: u16,
            detail: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'static str>,
            #[serde(flatten, skip_serializing_if = "Option::is_none")]
            members: Option<&'a serde_json::Map<String, serde_json::Value>>,
        }
        let kind = self.0.kind;
        let members = self.0.members.as_ref();
        let problem = Problem {
            type_uri: kind.type_uri(),
            title: kind.title(),
            status: kind.status().as_u16(),
            detail: &self.0.detail,
            // A `reason` member of your own takes its place.
            reason: self
                .0
                .reason
                .public_name()
                .filter(|_| !self.0.hide_reason && kind != RejectionKind::Internal)
                .filter(|_| members.is_none_or(|m| !m.contains_key("reason"))),
            members,
        };
        // Serializing strings, integers and a `serde_json::Map` cannot fail.
        serde_json::to_vec(&problem)
            .map(Bytes::from)
            .unwrap_or_else(|_| Bytes::from_static(b"{}"))
    }

    fn challenge_value(&self, scheme: Scheme) -> Option<HeaderValue> {
        let mut value = String::with_capacity(96);
        value.push_str(scheme.as_str());
        let mut params = Vec::<(&str, &str)>::new();
        let realm = self.0.realm.as_ref().map(|r| &*r.0);
        if let Some(realm) = realm {
            params.push(("realm", realm));
        }
        match scheme {
            Scheme::Bearer => {
                if let Some(code) = self.0.kind.bearer_error() {
                    params.push(("error", code));
                    params.push(("error_description", &self.0.detail));
                }
                for (name, value) in &self.0.bearer_params {
                    params.push((name, value));
                }
            }
            Scheme::Basic => params.push(("charset", "UTF-8")),
            Scheme::ApiKey => {}
        }
        for (i, (name, raw)) in params.iter().enumerate() {
            value.push_str(if i == 0 { " " } else { ", " });
            value.push_str(name);
            value.push_str("=\"");
            // RFC 6750 §3 restricts these values to %x20-21 / %x23-5B / %x5D-7E; drop anything else
            // rather than fail, so a user-supplied detail can never break the header.
            value.extend(
                raw.chars()
                    .filter(|c| matches!(*c, ' '..='~') && *c != '"' && *c != '\\'),
            );
            value.push('"');
        }
        HeaderValue::from_str(&value).ok()
    }
}

impl fmt::Debug for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejection")
            .field("kind", &self.0.kind)
            .field("reason", &self.0.reason)
            .field("detail", &self.0.detail)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.0.kind.title(), self.0.detail)
    }
}

impl std::error::Error for Rejection {}

impl From<RejectionKind> for Rejection {
    fn from(kind: RejectionKind) -> Self {
        Self::new(kind)
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.into_http()
    }
}

impl Rejection {
    /// The problem+json response, with any response body type that can hold bytes.
    pub(crate) fn into_http<B: From<Bytes>>(self) -> http::Response<B> {
        let mut response = http::Response::new(B::from(self.problem_json()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        for (name, value) in &self.headers() {
            headers.append(name, value.clone());
        }
        if let Some(layer) = self.0.layer {
            response
                .extensions_mut()
                .insert(Decision::denied(layer, self.0.reason));
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// A configuration mistake found while building a layer (a weak HMAC secret, an unparsable key, a
/// realm that cannot be quoted, ...). Returned at start-up, never at request time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(Cow<'static, str>);

impl ConfigError {
    pub(crate) fn new(message: impl Into<Cow<'static, str>>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A keyed-hash secret (the audit chain's key, the redaction fingerprint key): at least 32
/// bytes, the output size of the HMAC-SHA256 it keys, or `refused` as the error.
#[cfg(feature = "redact")]
pub(crate) fn hmac_secret(
    secret: &[u8],
    refused: &'static str,
) -> Result<std::sync::Arc<[u8]>, ConfigError> {
    if secret.len() < 32 {
        return Err(ConfigError::new(refused));
    }
    Ok(secret.into())
}
