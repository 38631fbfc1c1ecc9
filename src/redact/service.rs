use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, ETAG};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower_service::Service;

use super::future::{RequestInfo, ResponseFuture};
use super::layer::RedactConfig;
use crate::decision::LayerKind;
use crate::error::Reason;
use crate::error::{Rejection, RejectionKind};
use crate::identity::Identity;

/// The service built by [`RedactLayer`](super::RedactLayer).
#[derive(Clone)]
pub struct Redact<S> {
    pub(super) inner: S,
    pub(super) config: Arc<RedactConfig>,
}

impl<S: fmt::Debug> fmt::Debug for Redact<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redact")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl<S, B> Service<Request<B>> for Redact<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        mark_sensitive(request.headers_mut(), &self.config.sensitive_headers);
        let info = RequestInfo {
            config: self.config.clone(),
            identity: request.extensions().get::<Identity>().cloned(),
            route: request.extensions().get().cloned(),
            head: request.method() == Method::HEAD,
        };
        ResponseFuture::new(self.inner.call(request), info)
    }
}

fn mark_sensitive(headers: &mut HeaderMap, names: &[http::HeaderName]) {
    // One pass over the (few) headers present; `entry()` per name would clone each name and may
    // grow the map.
    for (name, value) in headers.iter_mut() {
        if names.contains(name) {
            value.set_sensitive(true);
        }
    }
}

enum Kind {
    Json,
    /// No `Content-Type`, several, or one that cannot be read: the body decides (see
    /// [`sniff`]).
    Unknown,
    Stream,
    /// JSON in a charset other than UTF-8: the bytes we would check are not the text the client
    /// reads (`+ADQ-` is `4` in UTF-7), so it is withheld.
    ForeignCharset,
    Other,
}

fn kind(headers: &HeaderMap) -> Kind {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        // None at all, or several that a client may read either way: the body decides.
        return Kind::Unknown;
    };
    // What `axum::Json` and `Rejection` send, decided without the parameter parsing below,
    // which cost a tenth of a microsecond per response.
    if [&b"application/json"[..], b"application/problem+json"]
        .iter()
        .any(|plain| value.as_bytes().eq_ignore_ascii_case(plain))
    {
        return Kind::Json;
    }
    let Ok(value) = value.to_str() else {
        // Not even text: it says nothing either way, so the body decides.
        return Kind::Unknown;
    };
    let mut parameters = value.split(';');
    let essence = parameters.next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("multipart/byteranges") {
        // Several ranges, each with its own type: whether any is JSON is not told here.
        return Kind::Unknown;
    }
    if !essence.contains('/') {
        // Not a media type (empty, `json`, ...): clients sniff it, and so does the layer.
        return Kind::Unknown;
    }
    // Lower-cased only when it has to be: this runs on every response.
    let essence: std::borrow::Cow<'_, str> = if essence.bytes().any(|b| b.is_ascii_uppercase()) {
        essence.to_ascii_lowercase().into()
    } else {
        essence.into()
    };
    let foreign_charset = parameters.any(|parameter| {
        let (name, charset) = parameter.split_once('=').unwrap_or((parameter, ""));
        name.trim().eq_ignore_ascii_case("charset")
            && !charset
                .trim()
                .trim_matches('"')
                .eq_ignore_ascii_case("utf-8")
    });
    // Streams by name or suffix (`+json-seq`, ND-JSON, JSON Lines, SSE); anything else that
    // says JSON (`application/json`, `+json`, `text/json`, `application/x-json`, ...) is
    // rewritten, or withheld when it turns out not to parse.
    let kind = if essence == "text/event-stream"
        || essence.ends_with("json-seq")
        || essence.ends_with("stream+json")
        || essence.contains("ndjson")
        || essence.contains("jsonl")
        || essence.contains("jsonlines")
    {
        Kind::Stream
    } else if essence.contains("json") {
        Kind::Json
    } else {
        Kind::Other
    };
    match kind {
        Kind::Json | Kind::Stream if foreign_charset => Kind::ForeignCharset,
        kind => kind,
    }
}

/// What a body of unknown type is, from its first byte that is not JSON whitespace (`None`
/// while `data` holds only whitespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sniffed {
    /// `{` or `[` (what a client that sniffs parses as a document), or a byte that starts JSON in
    /// another encoding (a UTF-16 or UTF-32 byte-order mark, a NUL): JSON, redacted, or withheld
    /// when the pass cannot read it. A UTF-8 byte-order mark counts as whitespace here, so
    /// `BOM {...}`, which `fetch().json()` reads, is taken as JSON (and then withheld).
    Document,
    /// A string, number or literal (`"...`, `-`, a digit, `t`, `f`, `n`): redacted when the whole
    /// body is JSON (a bare string may hold a token or a document), else text, passed as it came.
    Scalar,
    /// Anything else: text, passed as it came.
    Text,
}

fn sniff(data: &[u8]) -> Option<Sniffed> {
    data.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0xEF | 0xBB | 0xBF))
        .map(|b| match b {
            b'{' | b'[' | 0xFE | 0xFF | 0x00 => Sniffed::Document,
            b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => Sniffed::Scalar,
            _ => Sniffed::Text,
        })
}

/// `prefix` (what was read already) and then the rest of `body`, as they came.
fn resume(parts: http::response::Parts, prefix: Bytes, body: Body) -> Response {
    let head = futures_util::stream::once(async move { Ok(prefix) });
    let stream = head.chain(body.into_data_stream());
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Removes what describes the body as the handler made it.
fn remove_body_headers(headers: &mut HeaderMap, length: bool) {
    if length {
        headers.remove(CONTENT_LENGTH);
    }
    headers.remove(ETAG);
    headers.remove("content-digest");
    headers.remove("digest");
    headers.remove("content-md5");
}

/// The response part of the layer: decides whether the body is rewritten, buffers it (never
/// past the limit), redacts it and fixes the headers; or withholds it.
pub(super) async fn redact_response(info: RequestInfo, mut response: Response) -> Response {
    let config = &info.config;
    mark_sensitive(response.headers_mut(), &config.sensitive_headers);
    let status = response.status();
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return response;
    }
    // `HEAD` goes through the same checks as `GET`: its headers must say nothing the `GET`
    // answer would not (see the end).
    let kind = kind(response.headers());
    if status == StatusCode::PARTIAL_CONTENT && !matches!(kind, Kind::Other) {
        // A range of a JSON document is checked without its context: `"hunter2"`, bytes 20 to
        // 28 of `{"user":"ada","password":"hunter2"}`, is a JSON string no field rule sees.
        // Ranges of other types in `multipart/byteranges` may be JSON too (see `kind`).
        return withhold(Reason::PartialContent, status);
    }
    let mut sniffing = match kind {
        Kind::Other => return response,
        Kind::Stream if config.pass_streams => return response,
        Kind::Stream => return withhold(Reason::StreamNotRedacted, status),
        Kind::ForeignCharset => return withhold(Reason::ForeignCharset, status),
        Kind::Json => false,
        Kind::Unknown => true,
    };
    // An untyped body that starts like a JSON scalar: redacted if it is JSON, else passed.
    let mut lenient = false;
    let encoded = response
        .headers()
        .get_all(CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        // Of unknown type too: compressed bytes cannot be sniffed.
        return if config.pass_encoded {
            response
        } else {
            withhold(Reason::EncodedResponse, status)
        };
    }
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A large body of unknown type (a download) is not refused before it is known to be JSON.
    if !sniffing && declared.is_some_and(|len| len > config.max_body_bytes as u64) {
        return if config.pass_oversized {
            response
        } else {
            withhold(Reason::ResponseTooLarge, status)
        };
    }

    let (mut parts, mut body) = response.into_parts();
    // Most bodies arrive in one frame: keep it as it is, copying only once a second one comes.
    let mut first: Option<Bytes> = None;
    let mut buffer = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return withhold(Reason::ResponseBodyError, status);
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers: JSON responses do not carry any we keep
        };
        if sniffing {
            match sniff(&data) {
                None => {}
                Some(Sniffed::Document) => sniffing = false,
                Some(Sniffed::Scalar) => {
                    sniffing = false;
                    lenient = true;
                }
                Some(Sniffed::Text) => {
                    // Not JSON: it goes as it came, with what was read so far in front.
                    if let Some(first) = first.take() {
                        buffer.extend_from_slice(&first);
                    }
                    buffer.extend_from_slice(&data);
                    return resume(parts, buffer.freeze(), body);
                }
            }
        }
        let held = first.as_ref().map_or(0, Bytes::len);
        let oversized = held + buffer.len() + data.len() > config.max_body_bytes;
        if oversized && !config.pass_oversized && !lenient {
            return withhold(Reason::ResponseTooLarge, status);
        }
        if !oversized && first.is_none() && buffer.is_empty() {
            first = Some(data);
            continue;
        }
        if let Some(first) = first.take() {
            buffer.extend_from_slice(&first);
        }
        buffer.extend_from_slice(&data);
        if oversized {
            return resume(parts, buffer.freeze(), body);
        }
    }
    let bytes = match first {
        Some(first) => first,
        None => buffer.freeze(),
    };
    if info.head && bytes.is_empty() {
        // A `HEAD` answer whose body was dropped before this layer saw it (the layer wraps a
        // whole `Router`, whose method router drops it): its `Content-Length` (and `ETag`,
        // digests) describe the unredacted body, and the redacted one cannot be measured.
        // RFC 9110 §8.6 forbids a `Content-Length` on `HEAD` other than what `GET` would send,
        // and §9.3.2 lets a server omit header fields whose value is only known while
        // generating the content: so they are removed. (Under `Router::layer`, the usual
        // place, the body is still there and is redacted as for `GET`, giving the same
        // headers: axum measures and drops it after this layer.)
        remove_body_headers(&mut parts.headers, true);
        return Response::from_parts(parts, Body::empty());
    }
    if sniffing {
        // Nothing but whitespace (or nothing at all): not JSON, nothing to redact.
        return Response::from_parts(parts, Body::from(bytes));
    }
    let route = info.route.as_ref().map(|r| r.as_str());
    match config.engine.redact(&bytes, info.identity.as_ref(), route) {
        Ok((None, counts)) => {
            parts.extensions.insert(counts);
            Response::from_parts(parts, Body::from(bytes))
        }
        Ok((Some(redacted), counts)) => {
            tracing::debug!(
                target: "portcullis::redact",
                redactions = counts.total(),
                "response redacted"
            );
            parts.extensions.insert(counts);
            // These described the unredacted body.
            remove_body_headers(&mut parts.headers, false);
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(redacted.len()));
            Response::from_parts(parts, Body::from(Bytes::from(redacted)))
        }
        // Untyped text that merely starts like a JSON scalar.
        Err(_) if lenient => Response::from_parts(parts, Body::from(bytes)),
        Err(_) => withhold(Reason::InvalidJson, status),
    }
}

fn withhold(reason: Reason, status: StatusCode) -> Response {
    tracing::warn!(
        target: "portcullis::redact",
        reason = reason.as_str(),
        status = status.as_u16(),
        "response withheld: it could not be redacted"
    );
    let detail = match reason {
        Reason::ResponseTooLarge => "The response is too large to be checked for sensitive data.",
        Reason::EncodedResponse => {
            "The response is compressed and cannot be checked for sensitive data."
        }
        Reason::StreamNotRedacted => "Streamed responses are not checked for sensitive data.",
        Reason::InvalidJson => {
            "The response is not valid JSON and cannot be checked for sensitive data."
        }
        Reason::ForeignCharset => {
            "The response is not UTF-8 JSON and cannot be checked for sensitive data."
        }
        Reason::PartialContent => {
            "A part of a response cannot be checked for sensitive data; request all of it."
        }
        _ => "The response body could not be read.",
    };
    // A refusal made after every layer outside let the request through: the response carries
    // the redaction layer's own `Decision`, so the audit records the refusal under `redact`
    // and not under an earlier allow (the RBAC layer adds its allow only where none is).
    Rejection::new(RejectionKind::ResponseWithheld)
        .with_reason(reason)
        .with_detail(detail)
        .decided_by(LayerKind::Redact)
        .into_response()
}
