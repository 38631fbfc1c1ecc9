//! The request id: taken from `X-Request-Id` when it is safe to log, generated otherwise.

use std::fmt;

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::error::Reason;
use crate::error::{Rejection, RejectionKind};

/// The header a request id is read from and echoed back in.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest caller-supplied id accepted; a longer one is replaced.
const MAX_LEN: usize = 128;

/// The id of one request, shared by its audit event, its response (`X-Request-Id`) and, through
/// this extractor, its handler's own logs.
///
/// The caller's `X-Request-Id` is kept when it is 1 to 128 characters of `A-Z a-z 0-9 - _ . :`
/// (enough for UUIDs, ULIDs and trace ids, too little to smuggle log syntax); anything else is
/// replaced by 32 random hex digits. Generated ids are unique (not secret); a caller's id is
/// kept as sent, so two requests may carry the same one: use
/// [`generate_request_ids`](super::AuditLayerBuilder::generate_request_ids) when clients are not
/// trusted to name their requests. The request's own `X-Request-Id` header is set to the id, so
/// inner layers and handlers that read the header see the recorded one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII (checked or generated), so this cannot fail.
        self.0.to_str().unwrap_or_default()
    }

    pub(crate) fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The caller's id when acceptable (and `trust` is set), else a fresh one.
    pub(crate) fn resolve(headers: &HeaderMap, trust: bool) -> Self {
        if trust {
            let mut values = headers.get_all(&X_REQUEST_ID).iter();
            if let (Some(value), None) = (values.next(), values.next())
                && acceptable(value.as_bytes())
            {
                return Self(value.clone());
            }
        }
        Self::generate()
    }

    fn generate() -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = [0u8; 32];
        let mut bits = fastrand::u128(..);
        for digit in id.iter_mut().rev() {
            *digit = HEX[(bits & 0xf) as usize];
            bits >>= 4;
        }
        // One allocation shared by every clone (request extension, request and response
        // headers); hex digits are always a valid header value.
        HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(id))
            .map_or_else(|_| Self(HeaderValue::from_static("0")), Self)
    }
}

fn acceptable(id: &[u8]) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().cloned().ok_or_else(|| {
            tracing::error!(
                target: "portcullis::audit",
                "RequestId extractor used on a route without AuditLayer"
            );
            Rejection::new(RejectionKind::Internal).with_reason(Reason::AuditLayerMissing)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(&X_REQUEST_ID, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn keeps_a_safe_id_and_replaces_the_rest() {
        let uuid = "3f2c1a8e-5b7d-4c1e-9a0b-2d4e6f8a0c1e";
        assert_eq!(RequestId::resolve(&headers(&[uuid]), true).as_str(), uuid);
        for hostile in ["", "a b", "x\"y", "{\"json\":1}", &"a".repeat(129), "é"] {
            let Ok(value) = HeaderValue::from_bytes(hostile.as_bytes()) else {
                continue;
            };
            let mut map = HeaderMap::new();
            map.insert(&X_REQUEST_ID, value);
            let id = RequestId::resolve(&map, true);
            assert_ne!(id.as_str(), hostile);
            assert_eq!(id.as_str().len(), 32);
        }
        // Two ids: neither is believed.
        assert_eq!(
            RequestId::resolve(&headers(&["a", "b"]), true)
                .as_str()
                .len(),
            32
        );
        // Not trusted: always generated.
        assert_ne!(
            RequestId::resolve(&headers(&["abc"]), false).as_str(),
            "abc"
        );
    }

    #[test]
    fn generated_ids_differ() {
        let a = RequestId::resolve(&HeaderMap::new(), true);
        let b = RequestId::resolve(&HeaderMap::new(), true);
        assert_ne!(a, b);
        assert!(a.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
