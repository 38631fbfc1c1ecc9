//! The decision record every layer leaves behind.

use std::borrow::Cow;

/// What a layer decided about a request, and why.
///
/// A layer that allows a request puts its `Decision` into the request extensions (handlers can
/// read it) and into the response extensions; a layer that refuses one leaves a `Decision` and
/// the [`Rejection`](crate::Rejection) in the response extensions. The audit layer reads them.
///
/// A refusal made after an outer layer let the request through (a response the
/// [`RedactLayer`](crate::RedactLayer) withholds, a [`Valid`](crate::Valid),
/// [`RequireScope`](crate::rbac::RequireScope), [`Identity`](crate::Identity) or
/// [`Claims`](crate::Claims) extractor refusing in the handler) carries the
/// refusing layer's own `Decision`; an outer layer never replaces a `Decision` it finds in the
/// response, so the refusal is recorded under the layer that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The deciding layer: `auth`, `rbac`, ...
    pub layer: &'static str,
    /// Whether the request was let through.
    pub allowed: bool,
    /// A short machine-readable reason (`policy`, `missing_scope`, `unlisted_route`, ...).
    pub reason: Cow<'static, str>,
}

impl Decision {
    pub(crate) fn allowed(layer: &'static str, reason: &'static str) -> Self {
        Self {
            layer,
            allowed: true,
            reason: Cow::Borrowed(reason),
        }
    }

    pub(crate) fn denied(layer: &'static str, reason: &'static str) -> Self {
        Self {
            layer,
            allowed: false,
            reason: Cow::Borrowed(reason),
        }
    }
}
