//! The decision record every layer leaves behind, and the names of the deciding layers.

use std::fmt;

use crate::error::Reason;

/// The portcullis layer that made a decision.
///
/// Every refusal records its layer as one of these, never as a string that another layer
/// matches; [`as_str`](LayerKind::as_str) gives the stable snake_case name written to audit
/// records, metrics and traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LayerKind {
    /// [`AuthLayer`](crate::AuthLayer) and the [`Identity`](crate::Identity) /
    /// [`Claims`](crate::Claims) extractors.
    Auth,
    /// [`RbacLayer`](crate::RbacLayer), its route guards and resource policies.
    Rbac,
    /// [`RateLimitLayer`](crate::RateLimitLayer).
    RateLimit,
    /// [`LockoutLayer`](crate::rate_limit::LockoutLayer).
    Lockout,
    /// [`ValidateLayer`](crate::ValidateLayer) and the [`Valid`](crate::Valid) extractors.
    Validate,
    /// [`RedactLayer`](crate::RedactLayer): a response withheld.
    Redact,
    /// [`TransportSecurityLayer`](crate::TransportSecurityLayer).
    Transport,
    /// [`ClientIpLayer`](crate::client_ip::ClientIpLayer); it never refuses.
    ClientIp,
}

impl LayerKind {
    /// The stable snake_case name: `auth`, `rbac`, `rate_limit`, `lockout`, `validate`,
    /// `redact`, `transport`, `client_ip`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Rbac => "rbac",
            Self::RateLimit => "rate_limit",
            Self::Lockout => "lockout",
            Self::Validate => "validate",
            Self::Redact => "redact",
            Self::Transport => "transport",
            Self::ClientIp => "client_ip",
        }
    }
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// The deciding layer.
    pub layer: LayerKind,
    /// Whether the request was let through.
    pub allowed: bool,
    /// Why (`policy`, `missing_scope`, `unlisted_route`, ...).
    pub reason: Reason,
}

impl Decision {
    pub(crate) fn allowed(layer: LayerKind, reason: Reason) -> Self {
        Self {
            layer,
            allowed: true,
            reason,
        }
    }

    pub(crate) fn denied(layer: LayerKind, reason: Reason) -> Self {
        Self {
            layer,
            allowed: false,
            reason,
        }
    }
}
