//! `Sensitive<T>`: a value that never shows itself in logs or serialized output.

use std::fmt;

use http::HeaderName;
use http::header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, SET_COOKIE};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Headers whose values must never reach logs: [`RedactLayer`](crate::RedactLayer) marks them
/// sensitive ([`http::HeaderValue::set_sensitive`]) on requests and responses, which is what
/// tower-http's `SetSensitiveHeadersLayer` does and what its `TraceLayer` and `Debug` honour.
/// Pass the same list to `SetSensitiveHeadersLayer` to cover layers outside the `RedactLayer`.
pub const SENSITIVE_HEADERS: [HeaderName; 6] = [
    AUTHORIZATION,
    PROXY_AUTHORIZATION,
    COOKIE,
    SET_COOKIE,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("x-auth-token"),
];

/// A value that prints and serializes as `[REDACTED]`: wrap secrets in structs that are logged
/// (`tracing::info!(?request)`) or serialized, and read them with [`expose`](Self::expose).
/// It deserializes as the inner value, so it can sit in request types.
///
/// ```
/// use portcullis::redact::Sensitive;
/// let password = Sensitive::new("hunter2".to_owned());
/// assert_eq!(format!("{password:?} {password}"), "[REDACTED] [REDACTED]");
/// assert_eq!(serde_json::to_string(&password).unwrap(), r#""[REDACTED]""#);
/// assert_eq!(password.expose(), "hunter2");
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself, for the code that really needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Sensitive<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<T> Serialize for Sensitive<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[REDACTED]")
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sensitive<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self)
    }
}
