use std::convert::Infallible;

use http::HeaderName;
use http::header::{ALLOW, CONTENT_LENGTH, HOST};
use http::request::Parts;
use serde_json::json;

use super::layer::{AllowedHost, ValidateConfig, ValidateLayer};
use crate::decision::LayerKind;
use crate::error::Reason;
use crate::error::{Rejection, RejectionKind};
use crate::guard::{self, Check, Denial, Never, Verdict};

/// The service built by [`ValidateLayer`].
pub type Validate<S> = guard::Guard<S, ValidateLayer>;

/// Response future of [`Validate`].
pub type ResponseFuture<S, B> = guard::ResponseFuture<S, ValidateLayer, B>;

impl Check for ValidateLayer {
    const LAYER: LayerKind = LayerKind::Validate;
    const SERVICE: &'static str = "Validate";
    type Admit = ();
    type Ready = Infallible;
    type Pending = Never;

    fn check<B: http_body::Body>(
        &self,
        parts: &mut Parts,
        body: &B,
    ) -> Verdict<Self::Admit, Self::Pending> {
        if let Err(rejection) = self.config.check(parts, body) {
            tracing::debug!(
                target: "portcullis::validate",
                kind = ?rejection.kind(),
                reason = rejection.reason().as_str(),
                "request refused"
            );
            return Verdict::Deny(Denial::Refuse(rejection));
        }
        parts.extensions.insert(self.config.limits);
        Verdict::Allow(())
    }

    fn finish<B>((): Self::Admit, _: &mut http::Response<B>) {}
}

impl ValidateConfig {
    /// The rules in a fixed order, cheapest and most fundamental first: an unknown method is
    /// refused before anything else about the request is looked at.
    fn check<B: http_body::Body>(&self, request: &Parts, body: &B) -> Result<(), Rejection> {
        if !self.methods.contains(&request.method) {
            return Err(Rejection::new(RejectionKind::MethodNotAllowed)
                .with_reason(Reason::MethodNotAllowed)
                .with_header(ALLOW, self.allow.clone()));
        }
        let uri = &request.uri;
        let uri_bytes = uri.scheme_str().map_or(0, |s| s.len() + 3)
            + uri.authority().map_or(0, |a| a.as_str().len())
            + uri.path_and_query().map_or(0, |p| p.as_str().len());
        if uri_bytes > self.max_uri_bytes {
            return Err(Rejection::new(RejectionKind::UriTooLong).with_reason(Reason::UriTooLong));
        }
        let header_bytes: usize = request
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if header_bytes > self.max_header_bytes {
            return Err(Rejection::new(RejectionKind::HeaderFieldsTooLarge)
                .with_reason(Reason::HeaderFieldsTooLarge));
        }
        if !self.hosts.is_empty() {
            self.check_host(request)?;
        }
        if let Some(name) = self
            .required_headers
            .iter()
            .find(|name| !request.headers.contains_key(*name))
        {
            return Err(missing_header(name));
        }
        if self.bodiless.contains(&request.method) && has_body(request, body) {
            return Err(Rejection::new(RejectionKind::BadRequest)
                .with_reason(Reason::BodyNotAllowed)
                .with_detail("This method does not take a request body."));
        }
        Ok(())
    }

    /// Every place the request names its host must be on the allowlist: the target's authority
    /// (HTTP/2 `:authority`, HTTP/1.1 absolute form) and the `Host` header, so a request cannot
    /// show one host to this check and another to the application.
    fn check_host(&self, request: &Parts) -> Result<(), Rejection> {
        let mut hosts = request.headers.get_all(HOST).iter();
        let header = match (hosts.next(), hosts.next()) {
            (None, _) => None,
            (Some(value), None) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(AllowedHost::parse)
                    .ok_or_else(|| bad_host("The Host header is malformed."))?,
            ),
            (Some(_), Some(_)) => return Err(bad_host("Send exactly one Host header.")),
        };
        let target = match request.uri.authority() {
            Some(authority) => Some(
                AllowedHost::parse(authority.as_str())
                    .ok_or_else(|| bad_host("The request target's host is malformed."))?,
            ),
            None => None,
        };
        if header.is_none() && target.is_none() {
            return Err(bad_host("The request does not name a host."));
        }
        let allowed = |host: &AllowedHost| self.hosts.iter().any(|entry| entry.matches(host));
        if header.iter().chain(target.iter()).all(allowed) {
            Ok(())
        } else {
            Err(Rejection::new(RejectionKind::MisdirectedRequest)
                .with_reason(Reason::HostNotAllowed))
        }
    }
}

/// Whether the request carries a body: a non-zero `Content-Length`, or a body that is not known
/// to be empty (a chunked one, or HTTP/2 data frames).
fn has_body<B: http_body::Body>(request: &Parts, body: &B) -> bool {
    let declared_empty = request
        .headers
        .get(CONTENT_LENGTH)
        .is_some_and(|value| value.as_bytes() == b"0");
    !declared_empty && !body.is_end_stream()
}

fn missing_header(name: &HeaderName) -> Rejection {
    Rejection::new(RejectionKind::BadRequest)
        .with_reason(Reason::MissingHeader)
        .with_detail("A required header is missing.")
        .with_member("header", json!(name.as_str()))
}

fn bad_host(detail: &'static str) -> Rejection {
    Rejection::new(RejectionKind::BadRequest)
        .with_reason(Reason::BadHost)
        .with_detail(detail)
}
