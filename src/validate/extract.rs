use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::{Form, Json};
use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde_json::json;
use validator::Validate;

use super::BodyLimits;
use super::parse::{from_json, from_urlencoded, validated};
use super::pointer::Pointer;
use crate::decision::LayerKind;
use crate::error::Reason;
use crate::error::{Rejection, RejectionKind};

/// Deserializes with axum's extractor types and then runs [`Validate`]: handlers only ever see
/// well-formed, validated input. See the [module docs](super) for what each form checks.
///
/// The inner type needs [`Validate`] rules: plain path parameters (`Path<u64>`,
/// `Path<(String, u32)>`) have none, so `Valid<Path<u64>>` does not compile (and axum reports
/// it as a handler that is not a `Handler`). Take them with [`WithProblem<Path<u64>>`], which
/// answers a malformed one with problem+json too.
///
/// ```
/// use axum::{Json, Router, routing::post};
/// use portcullis::Valid;
/// use serde::Deserialize;
/// use validator::Validate;
///
/// #[derive(Deserialize, Validate)]
/// struct Signup {
///     #[validate(email)]
///     email: String,
/// }
///
/// async fn signup(Valid(Json(signup)): Valid<Json<Signup>>) -> String {
///     signup.email
/// }
///
/// let app: Router = Router::new().route("/signup", post(signup));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Valid<T>(pub T);

impl<S, T> FromRequest<S> for Valid<Json<T>>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = Rejection;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let limits = BodyLimits::of(request.extensions());
        require_media_type(request.headers(), &mime::APPLICATION_JSON).map_err(refused)?;
        let body = read_body(request, limits.max_body_bytes)
            .await
            .map_err(refused)?;
        from_json(&body, limits.max_json_depth)
            .map(|value| Self(Json(value)))
            .map_err(refused)
    }
}

/// Reads `application/x-www-form-urlencoded` bodies only; use `Valid<Query<T>>` for query strings.
impl<S, T> FromRequest<S> for Valid<Form<T>>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = Rejection;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let limits = BodyLimits::of(request.extensions());
        require_media_type(request.headers(), &mime::APPLICATION_WWW_FORM_URLENCODED)
            .map_err(refused)?;
        let body = read_body(request, limits.max_body_bytes)
            .await
            .map_err(refused)?;
        from_urlencoded(&body)
            .map(|value| Self(Form(value)))
            .map_err(refused)
    }
}

impl<S, T> FromRequestParts<S> for Valid<Query<T>>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        from_urlencoded(query.as_bytes())
            .map(|value| Self(Query(value)))
            .map_err(refused)
    }
}

impl<S, T> FromRequestParts<S> for Valid<Path<T>>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate + Send,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| refused(path_rejection(rejection)))?;
        validated(value, Vec::new())
            .map(|value| Self(Path(value)))
            .map_err(refused)
    }
}

/// Any axum extractor whose rejection is answered as problem+json like every other refusal,
/// instead of axum's `text/plain`: for what [`Valid`] does not cover, such as plain path
/// parameters (`Path<u64>` has no rules, and `Valid` needs a [`Validate`] type), `Query` of an
/// unvalidated type, or `Extension`.
///
/// The status is axum's (one without a problem kind of its own, such as 426, becomes 400) and
/// so are its protocol headers (`Allow`, ...); the detail is a fixed sentence, since axum's
/// messages can quote the request. A 5xx from the extractor (a route that does not match its
/// `Path` type, a missing `Extension`) is a programming error and stays a 500.
///
/// ```
/// use axum::{Router, extract::Path, routing::get};
/// use portcullis::validate::WithProblem;
///
/// async fn note(WithProblem(Path(id)): WithProblem<Path<u64>>) -> String {
///     id.to_string()
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app: Router = Router::new().route("/notes/{id}", get(note));
///
/// use tower::ServiceExt;
/// let request = axum::http::Request::get("/notes/seven").body(axum::body::Body::empty())?;
/// let response = app.oneshot(request).await?;
/// assert_eq!(response.status(), 400);
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct WithProblem<E>(pub E);

impl<S, E> FromRequestParts<S> for WithProblem<E>
where
    S: Send + Sync,
    E: FromRequestParts<S>,
{
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        E::from_request_parts(parts, state)
            .await
            .map(Self)
            .map_err(|rejection| refused(as_problem(rejection)))
    }
}

impl<S, E> FromRequest<S> for WithProblem<E>
where
    S: Send + Sync,
    E: FromRequest<S>,
{
    type Rejection = Rejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        E::from_request(request, state)
            .await
            .map(Self)
            .map_err(|rejection| refused(as_problem(rejection)))
    }
}

/// An axum rejection as a problem of the same status (a status without a problem kind of its
/// own becomes 400), with its protocol headers (`Allow`, `WWW-Authenticate`, ...) but without
/// its text.
fn as_problem(rejection: impl axum::response::IntoResponse) -> Rejection {
    let response = rejection.into_response();
    let status = response.status();
    let (kind, reason, detail) = match status.as_u16() {
        401 => (
            RejectionKind::MissingCredentials,
            Reason::MissingCredentials,
            "This request needs credentials.",
        ),
        403 => (
            RejectionKind::Forbidden,
            Reason::Unspecified,
            "This is not allowed.",
        ),
        404 => (RejectionKind::NotFound, Reason::Unspecified, "Not found."),
        405 => (
            RejectionKind::MethodNotAllowed,
            Reason::MethodNotAllowed,
            "This method is not allowed here.",
        ),
        413 => (
            RejectionKind::PayloadTooLarge,
            Reason::BodyTooLarge,
            "The request body is too large.",
        ),
        414 => (
            RejectionKind::UriTooLong,
            Reason::UriTooLong,
            "The URI is too long.",
        ),
        415 => (
            RejectionKind::UnsupportedMediaType,
            Reason::UnsupportedMediaType,
            "The request body's content type is not accepted here.",
        ),
        422 => (
            RejectionKind::UnprocessableContent,
            Reason::MalformedInput,
            "The request body does not have the expected shape.",
        ),
        429 => (
            RejectionKind::TooManyRequests,
            Reason::Unspecified,
            "Too many requests.",
        ),
        431 => (
            RejectionKind::HeaderFieldsTooLarge,
            Reason::HeaderFieldsTooLarge,
            "The request headers are too large.",
        ),
        500..=599 => (RejectionKind::Internal, Reason::Unspecified, ""),
        _ => (
            RejectionKind::BadRequest,
            Reason::MalformedInput,
            "The request could not be read.",
        ),
    };
    let mut problem = Rejection::new(kind).with_reason(reason);
    if !detail.is_empty() {
        problem = problem.with_detail(detail);
    }
    for (name, value) in response.headers() {
        if name != http::header::CONTENT_TYPE && name != CONTENT_LENGTH {
            problem = problem.with_header(name.clone(), value.clone());
        }
    }
    problem
}

/// A refusal of the extractor: it comes after the layers outside let the request through, so
/// it carries the `validate` layer's own [`Decision`](crate::Decision) and is recorded under it,
/// not under their allow.
fn refused(rejection: Rejection) -> Rejection {
    rejection.decided_by(LayerKind::Validate)
}

/// axum's path errors name the parameter (from the route, not the client) and quote the value;
/// keep the first, drop the second.
fn path_rejection(rejection: PathRejection) -> Rejection {
    use axum::extract::path::ErrorKind;
    if rejection.status().is_server_error() {
        // A route that does not match its extractor: a programming error no client can cause.
        return Rejection::new(RejectionKind::Internal).with_reason(Reason::PathExtractorMismatch);
    }
    let mut field = Pointer::default();
    if let PathRejection::FailedToDeserializePathParams(error) = &rejection {
        match error.kind() {
            ErrorKind::ParseErrorAtKey { key, .. }
            | ErrorKind::InvalidUtf8InPathParam { key }
            | ErrorKind::DeserializeError { key, .. } => field.key(key),
            ErrorKind::ParseErrorAtIndex { index, .. } => field.index(*index),
            _ => {}
        }
    }
    Rejection::new(RejectionKind::BadRequest)
        .with_reason(Reason::MalformedInput)
        .with_detail("The request could not be read; see `errors` for where.")
        .with_member(
            "errors",
            json!([{
                "field": field.finish(),
                "code": "invalid_value",
                "message": "is not a valid path parameter",
            }]),
        )
}

/// Exactly one `Content-Type` of the expected media type, without a `+suffix`, and a charset (if
/// any) of UTF-8. Anything else is 415, so a body is only ever parsed the way the client meant.
fn require_media_type(headers: &HeaderMap, expected: &mime::Mime) -> Result<(), Rejection> {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let accepted = match (values.next(), values.next()) {
        (Some(value), None) => value
            .to_str()
            .ok()
            .and_then(|value| value.parse::<mime::Mime>().ok())
            .is_some_and(|found| {
                found.type_() == expected.type_()
                    && found.subtype() == expected.subtype()
                    && found.suffix().is_none()
                    && found
                        .get_param(mime::CHARSET)
                        .is_none_or(|charset| charset.as_str().eq_ignore_ascii_case("utf-8"))
            }),
        _ => false,
    };
    if accepted {
        Ok(())
    } else {
        Err(Rejection::new(RejectionKind::UnsupportedMediaType)
            .with_reason(Reason::UnsupportedMediaType)
            .with_detail(format!("Send the body as {}.", expected.essence_str())))
    }
}

/// Reads the body, refusing at once a declared length over `limit` and stopping as soon as a
/// streamed body passes it: never more than `limit` bytes are buffered.
async fn read_body(request: Request, limit: usize) -> Result<Bytes, Rejection> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large(limit));
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&*error);
            while let Some(error) = source {
                if error.is::<LengthLimitError>() {
                    return Err(too_large(limit));
                }
                source = error.source();
            }
            Err(Rejection::new(RejectionKind::BadRequest)
                .with_reason(Reason::BodyUnreadable)
                .with_detail("The request body could not be read."))
        }
    }
}

fn too_large(limit: usize) -> Rejection {
    Rejection::new(RejectionKind::PayloadTooLarge)
        .with_reason(Reason::BodyTooLarge)
        .with_detail(format!("The request body is larger than {limit} bytes."))
}
