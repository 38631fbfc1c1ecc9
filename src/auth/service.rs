use http::StatusCode;
use http::request::Parts;

use super::layer::AuthLayer;
use super::{Authentication, BoxAuthFuture};
use crate::decision::LayerKind;
use crate::error::Reason;
use crate::error::{Rejection, RejectionKind};
use crate::guard::{self, Check, Denial, Verdict};
use crate::identity::Identity;
use crate::request::attempt::PendingAttempt;
use crate::request::credential;

/// The service built by [`AuthLayer`].
pub type Auth<S> = guard::Guard<S, AuthLayer>;

/// Response future of [`Auth`].
pub type ResponseFuture<S, B> = guard::ResponseFuture<S, AuthLayer, B>;

impl Check for AuthLayer {
    const LAYER: LayerKind = LayerKind::Auth;
    const SERVICE: &'static str = "Auth";
    /// The caller, left in the response extensions for outer layers (the audit layer).
    type Admit = Option<Identity>;
    type Ready = Result<Identity, Rejection>;
    type Pending = BoxAuthFuture;

    fn check<B>(&self, parts: &mut Parts, _: &B) -> Verdict<Self::Admit, Self::Pending> {
        let config = &*self.config;
        let has_authorization = match credential::check_authorization(&parts.headers) {
            Ok(present) => present,
            Err(rejection) => return Verdict::Deny(self.refuse(rejection)),
        };
        let sources = usize::from(has_authorization)
            + config
                .credential_headers
                .iter()
                .filter(|name| parts.headers.contains_key(*name))
                .count();
        if sources > 1 {
            return Verdict::Deny(self.refuse(credential::invalid_request(
                Reason::SeveralCredentials,
                "Send exactly one credential.",
            )));
        }
        for authenticator in &config.authenticators {
            match authenticator.authenticate(parts) {
                Authentication::NotPresent => continue,
                Authentication::Authenticated(identity) => {
                    return Verdict::Allow(admit(parts, identity));
                }
                Authentication::Rejected(rejection) => {
                    return Verdict::Deny(self.refuse(rejection));
                }
                Authentication::Pending(future) => return Verdict::Defer(future),
            }
        }
        if has_authorization {
            return Verdict::Deny(
                self.refuse(
                    Rejection::new(RejectionKind::MissingCredentials)
                        .with_reason(Reason::UnsupportedScheme)
                        .with_detail("This authentication scheme is not accepted here."),
                ),
            );
        }
        if config.required {
            return Verdict::Deny(
                self.refuse(
                    Rejection::new(RejectionKind::MissingCredentials)
                        .with_reason(Reason::MissingCredentials),
                ),
            );
        }
        parts.extensions.insert(config.challenge.clone());
        Verdict::Allow(None)
    }

    fn resume<B>(
        &self,
        parts: &mut Parts,
        _: &B,
        ready: Self::Ready,
    ) -> Verdict<Self::Admit, Self::Pending> {
        match ready {
            Ok(identity) => Verdict::Allow(admit(parts, identity)),
            Err(rejection) => Verdict::Deny(self.refuse(rejection)),
        }
    }

    fn finish<B>(identity: Self::Admit, response: &mut http::Response<B>) {
        if let Some(identity) = identity {
            response.extensions_mut().insert(identity);
        }
    }
}

/// An accepted credential: settles the lockout attempt and hands the caller to the handler.
fn admit(parts: &mut Parts, identity: Identity) -> Option<Identity> {
    if let Some(attempt) = parts.extensions.get::<PendingAttempt>() {
        attempt.accepted();
    }
    parts.extensions.insert(identity.clone());
    Some(identity)
}

impl AuthLayer {
    /// Adds the layer's realm and, where the rejection names no scheme itself (no usable
    /// credential, a malformed request, a custom authenticator's 401), a challenge for every
    /// scheme the layer accepts: RFC 9110 §11.6.1 requires at least one on every 401.
    fn refuse(&self, mut rejection: Rejection) -> Denial {
        let config = &*self.config;
        let needs_challenge = rejection.status() == StatusCode::UNAUTHORIZED
            || rejection.kind() == RejectionKind::InvalidRequest;
        if rejection.kind() == RejectionKind::MissingCredentials
            || (needs_challenge && !rejection.has_challenges())
        {
            rejection.set_challenges(config.schemes());
        }
        rejection.set_realm(&config.realm);
        tracing::debug!(
            target: "portcullis::auth",
            kind = ?rejection.kind(),
            reason = rejection.reason().as_str(),
            "request not authenticated"
        );
        Denial::Refuse(rejection)
    }
}
