//! Why a request was refused (or let through): one variant per reason portcullis gives, each
//! with a stable snake_case name, as `rustls` names every refusal. Layers hand reasons to each
//! other (the lockout, the audit trail, metrics) as these values, never as strings to match.

use std::fmt;

use super::RejectionKind;

/// The machine-readable reason of a refusal or a decision.
///
/// [`as_str`](Reason::as_str) is the stable name written to audit records, metrics and traces.
/// Your own authenticators and handlers may use any built-in reason (a custom authenticator that
/// refuses with [`Reason::WrongPassword`] is counted by the lockout like the built-in ones) or
/// one of their own with [`Reason::Other`]; a `&'static str` converts to the built-in reason of
/// that name, or to `Other`. Reasons compare by name, so `Other("expired")` is
/// [`Reason::Expired`]; the built-in names are reserved (a later release may add one that is
/// your `Other`'s name).
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub enum Reason {
    /// No reason given (the name is empty).
    #[default]
    Unspecified,
    /// `alg_none`
    AlgNone,
    /// `alg_not_allowed`
    AlgNotAllowed,
    /// `audit_layer_missing`
    AuditLayerMissing,
    /// `bad_audience`
    BadAudience,
    /// `bad_client`
    BadClient,
    /// `bad_host`
    BadHost,
    /// `bad_issuer`
    BadIssuer,
    /// `bad_signature`
    BadSignature,
    /// `bad_tenant`
    BadTenant,
    /// `basic_queue_full`
    BasicQueueFull,
    /// `body_not_allowed`
    BodyNotAllowed,
    /// `body_too_large`
    BodyTooLarge,
    /// `body_unreadable`
    BodyUnreadable,
    /// `claim_type`
    ClaimType,
    /// `claim_not_accepted`
    ClaimNotAccepted,
    /// `claims_shape`
    ClaimsShape,
    /// `credentials_over_http`
    CredentialsOverHttp,
    /// `date_out_of_range`
    DateOutOfRange,
    /// `duplicate_api_key`
    DuplicateApiKey,
    /// `duplicate_authorization`
    DuplicateAuthorization,
    /// `embedded_key`
    EmbeddedKey,
    /// `encoded_response`
    EncodedResponse,
    /// `expired`
    Expired,
    /// `foreign_charset`
    ForeignCharset,
    /// `header_fields_too_large`
    HeaderFieldsTooLarge,
    /// `host_not_allowed`
    HostNotAllowed,
    /// `https_required`
    HttpsRequired,
    /// `inactive`
    Inactive,
    /// `introspection_busy`
    IntrospectionBusy,
    /// `introspection_failed`
    IntrospectionFailed,
    /// `invalid_json`
    InvalidJson,
    /// `issued_in_future`
    IssuedInFuture,
    /// `kid_required`
    KidRequired,
    /// `locked_out`
    LockedOut,
    /// `malformed`
    Malformed,
    /// `malformed_authorization`
    MalformedAuthorization,
    /// `malformed_basic`
    MalformedBasic,
    /// `malformed_input`
    MalformedInput,
    /// `malformed_json`
    MalformedJson,
    /// `method_not_allowed`
    MethodNotAllowed,
    /// `method_not_listed`
    MethodNotListed,
    /// `missing_credentials`
    MissingCredentials,
    /// `missing_exp`
    MissingExp,
    /// `missing_header`
    MissingHeader,
    /// `missing_scope`
    MissingScope,
    /// `missing_sub`
    MissingSub,
    /// `nested_jwt`
    NestedJwt,
    /// `no_route`
    NoRoute,
    /// `not_a_bearer_access_token`
    NotABearerAccessToken,
    /// `not_yet_valid`
    NotYetValid,
    /// `partial_content`
    PartialContent,
    /// `path_extractor_mismatch`
    PathExtractorMismatch,
    /// `policy`
    Policy,
    /// `policy_denied`
    PolicyDenied,
    /// `rate_limited`
    RateLimited,
    /// `redirect_host_invalid`
    RedirectHostInvalid,
    /// `redirect_to_https`
    RedirectToHttps,
    /// `resource_policy_denied`
    ResourcePolicyDenied,
    /// `response_body_error`
    ResponseBodyError,
    /// `response_too_large`
    ResponseTooLarge,
    /// `revoked`
    Revoked,
    /// `sender_constrained`
    SenderConstrained,
    /// `several_credentials`
    SeveralCredentials,
    /// `step_up_required`
    StepUpRequired,
    /// `stream_not_redacted`
    StreamNotRedacted,
    /// `too_large`
    TooLarge,
    /// `typ_mismatch`
    TypMismatch,
    /// `unknown_api_key`
    UnknownApiKey,
    /// `unknown_field`
    UnknownField,
    /// `unknown_kid`
    UnknownKid,
    /// `unknown_user`
    UnknownUser,
    /// `unlisted_route`
    UnlistedRoute,
    /// `unsupported_crit`
    UnsupportedCrit,
    /// `unsupported_media_type`
    UnsupportedMediaType,
    /// `unsupported_scheme`
    UnsupportedScheme,
    /// `uri_too_long`
    UriTooLong,
    /// `validation_failed`
    ValidationFailed,
    /// `wrong_password`
    WrongPassword,
    /// A reason of your own.
    Other(&'static str),
}

impl Reason {
    /// The stable snake_case name (empty for [`Reason::Unspecified`]).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "",
            Self::AlgNone => "alg_none",
            Self::AlgNotAllowed => "alg_not_allowed",
            Self::AuditLayerMissing => "audit_layer_missing",
            Self::BadAudience => "bad_audience",
            Self::BadClient => "bad_client",
            Self::BadHost => "bad_host",
            Self::BadIssuer => "bad_issuer",
            Self::BadSignature => "bad_signature",
            Self::BadTenant => "bad_tenant",
            Self::BasicQueueFull => "basic_queue_full",
            Self::BodyNotAllowed => "body_not_allowed",
            Self::BodyTooLarge => "body_too_large",
            Self::BodyUnreadable => "body_unreadable",
            Self::ClaimType => "claim_type",
            Self::ClaimNotAccepted => "claim_not_accepted",
            Self::ClaimsShape => "claims_shape",
            Self::CredentialsOverHttp => "credentials_over_http",
            Self::DateOutOfRange => "date_out_of_range",
            Self::DuplicateApiKey => "duplicate_api_key",
            Self::DuplicateAuthorization => "duplicate_authorization",
            Self::EmbeddedKey => "embedded_key",
            Self::EncodedResponse => "encoded_response",
            Self::Expired => "expired",
            Self::ForeignCharset => "foreign_charset",
            Self::HeaderFieldsTooLarge => "header_fields_too_large",
            Self::HostNotAllowed => "host_not_allowed",
            Self::HttpsRequired => "https_required",
            Self::Inactive => "inactive",
            Self::IntrospectionBusy => "introspection_busy",
            Self::IntrospectionFailed => "introspection_failed",
            Self::InvalidJson => "invalid_json",
            Self::IssuedInFuture => "issued_in_future",
            Self::KidRequired => "kid_required",
            Self::LockedOut => "locked_out",
            Self::Malformed => "malformed",
            Self::MalformedAuthorization => "malformed_authorization",
            Self::MalformedBasic => "malformed_basic",
            Self::MalformedInput => "malformed_input",
            Self::MalformedJson => "malformed_json",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::MethodNotListed => "method_not_listed",
            Self::MissingCredentials => "missing_credentials",
            Self::MissingExp => "missing_exp",
            Self::MissingHeader => "missing_header",
            Self::MissingScope => "missing_scope",
            Self::MissingSub => "missing_sub",
            Self::NestedJwt => "nested_jwt",
            Self::NoRoute => "no_route",
            Self::NotABearerAccessToken => "not_a_bearer_access_token",
            Self::NotYetValid => "not_yet_valid",
            Self::PartialContent => "partial_content",
            Self::PathExtractorMismatch => "path_extractor_mismatch",
            Self::Policy => "policy",
            Self::PolicyDenied => "policy_denied",
            Self::RateLimited => "rate_limited",
            Self::RedirectHostInvalid => "redirect_host_invalid",
            Self::RedirectToHttps => "redirect_to_https",
            Self::ResourcePolicyDenied => "resource_policy_denied",
            Self::ResponseBodyError => "response_body_error",
            Self::ResponseTooLarge => "response_too_large",
            Self::Revoked => "revoked",
            Self::SenderConstrained => "sender_constrained",
            Self::SeveralCredentials => "several_credentials",
            Self::StepUpRequired => "step_up_required",
            Self::StreamNotRedacted => "stream_not_redacted",
            Self::TooLarge => "too_large",
            Self::TypMismatch => "typ_mismatch",
            Self::UnknownApiKey => "unknown_api_key",
            Self::UnknownField => "unknown_field",
            Self::UnknownKid => "unknown_kid",
            Self::UnknownUser => "unknown_user",
            Self::UnlistedRoute => "unlisted_route",
            Self::UnsupportedCrit => "unsupported_crit",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::UnsupportedScheme => "unsupported_scheme",
            Self::UriTooLong => "uri_too_long",
            Self::ValidationFailed => "validation_failed",
            Self::WrongPassword => "wrong_password",
            Self::Other(name) => name,
        }
    }

    /// The built-in reason with this name, else [`Reason::Other`] (the empty name is
    /// [`Reason::Unspecified`]). For reasons given as text at the API's edge.
    pub fn from_name(name: &'static str) -> Self {
        match name {
            "" => Self::Unspecified,
            "alg_none" => Self::AlgNone,
            "alg_not_allowed" => Self::AlgNotAllowed,
            "audit_layer_missing" => Self::AuditLayerMissing,
            "bad_audience" => Self::BadAudience,
            "bad_client" => Self::BadClient,
            "bad_host" => Self::BadHost,
            "bad_issuer" => Self::BadIssuer,
            "bad_signature" => Self::BadSignature,
            "bad_tenant" => Self::BadTenant,
            "basic_queue_full" => Self::BasicQueueFull,
            "body_not_allowed" => Self::BodyNotAllowed,
            "body_too_large" => Self::BodyTooLarge,
            "body_unreadable" => Self::BodyUnreadable,
            "claim_type" => Self::ClaimType,
            "claim_not_accepted" => Self::ClaimNotAccepted,
            "claims_shape" => Self::ClaimsShape,
            "credentials_over_http" => Self::CredentialsOverHttp,
            "date_out_of_range" => Self::DateOutOfRange,
            "duplicate_api_key" => Self::DuplicateApiKey,
            "duplicate_authorization" => Self::DuplicateAuthorization,
            "embedded_key" => Self::EmbeddedKey,
            "encoded_response" => Self::EncodedResponse,
            "expired" => Self::Expired,
            "foreign_charset" => Self::ForeignCharset,
            "header_fields_too_large" => Self::HeaderFieldsTooLarge,
            "host_not_allowed" => Self::HostNotAllowed,
            "https_required" => Self::HttpsRequired,
            "inactive" => Self::Inactive,
            "introspection_busy" => Self::IntrospectionBusy,
            "introspection_failed" => Self::IntrospectionFailed,
            "invalid_json" => Self::InvalidJson,
            "issued_in_future" => Self::IssuedInFuture,
            "kid_required" => Self::KidRequired,
            "locked_out" => Self::LockedOut,
            "malformed" => Self::Malformed,
            "malformed_authorization" => Self::MalformedAuthorization,
            "malformed_basic" => Self::MalformedBasic,
            "malformed_input" => Self::MalformedInput,
            "malformed_json" => Self::MalformedJson,
            "method_not_allowed" => Self::MethodNotAllowed,
            "method_not_listed" => Self::MethodNotListed,
            "missing_credentials" => Self::MissingCredentials,
            "missing_exp" => Self::MissingExp,
            "missing_header" => Self::MissingHeader,
            "missing_scope" => Self::MissingScope,
            "missing_sub" => Self::MissingSub,
            "nested_jwt" => Self::NestedJwt,
            "no_route" => Self::NoRoute,
            "not_a_bearer_access_token" => Self::NotABearerAccessToken,
            "not_yet_valid" => Self::NotYetValid,
            "partial_content" => Self::PartialContent,
            "path_extractor_mismatch" => Self::PathExtractorMismatch,
            "policy" => Self::Policy,
            "policy_denied" => Self::PolicyDenied,
            "rate_limited" => Self::RateLimited,
            "redirect_host_invalid" => Self::RedirectHostInvalid,
            "redirect_to_https" => Self::RedirectToHttps,
            "resource_policy_denied" => Self::ResourcePolicyDenied,
            "response_body_error" => Self::ResponseBodyError,
            "response_too_large" => Self::ResponseTooLarge,
            "revoked" => Self::Revoked,
            "sender_constrained" => Self::SenderConstrained,
            "several_credentials" => Self::SeveralCredentials,
            "step_up_required" => Self::StepUpRequired,
            "stream_not_redacted" => Self::StreamNotRedacted,
            "too_large" => Self::TooLarge,
            "typ_mismatch" => Self::TypMismatch,
            "unknown_api_key" => Self::UnknownApiKey,
            "unknown_field" => Self::UnknownField,
            "unknown_kid" => Self::UnknownKid,
            "unknown_user" => Self::UnknownUser,
            "unlisted_route" => Self::UnlistedRoute,
            "unsupported_crit" => Self::UnsupportedCrit,
            "unsupported_media_type" => Self::UnsupportedMediaType,
            "unsupported_scheme" => Self::UnsupportedScheme,
            "uri_too_long" => Self::UriTooLong,
            "validation_failed" => Self::ValidationFailed,
            "wrong_password" => Self::WrongPassword,
            other => Self::Other(other),
        }
    }

    /// Whether a refusal of this kind with this reason is evidence that someone is guessing
    /// credentials, which the lockout counts (locally and in Redis alike): a wrong password or
    /// API key, a malformed Basic credential, a token that is forged or malformed (bad
    /// signature, undecodable, an algorithm or key this server never accepts), or a genuine
    /// token from a foreign issuer or for another audience.
    ///
    /// An allowlist, so that a new reason is never counted by accident: refusals that say
    /// nothing about guessing must not lock out a shared address (an office behind one NAT).
    /// Left out on purpose: a token that is stale or not yet valid (`expired`, `not_yet_valid`,
    /// `issued_in_future`, `missing_exp`), revoked, `inactive` at introspection, signed by a key
    /// not yet known (`unknown_kid` during a rotation), one the identity provider could not
    /// check (`introspection_failed`, `introspection_busy`), one that is too large, and every
    /// reason of your own.
    pub(crate) fn is_guess(self, kind: RejectionKind) -> bool {
        let this = match self {
            Self::Other(name) => Self::from_name(name),
            reason => reason,
        };
        match kind {
            RejectionKind::InvalidCredentials => matches!(
                this,
                Self::WrongPassword
                    | Self::UnknownUser
                    | Self::MalformedBasic
                    | Self::UnknownApiKey
            ),
            RejectionKind::InvalidToken => matches!(
                this,
                Self::BadSignature
                    | Self::Malformed
                    | Self::MalformedJson
                    | Self::AlgNone
                    | Self::AlgNotAllowed
                    | Self::EmbeddedKey
                    | Self::BadIssuer
                    | Self::BadAudience
            ),
            _ => false,
        }
    }
}

impl Reason {
    /// The name the problem document shows as its `reason` member: every reason but
    /// [`Unspecified`](Reason::Unspecified) and the two that would tell a guesser which half of
    /// a Basic credential was wrong (`unknown_user`, `wrong_password`: both are refused with the
    /// same detail, and the audit record keeps the difference).
    pub(crate) fn public_name(self) -> Option<&'static str> {
        let this = match self {
            Self::Other(name) => Self::from_name(name),
            reason => reason,
        };
        match this {
            Self::Unspecified | Self::UnknownUser | Self::WrongPassword => None,
            _ => Some(self.as_str()),
        }
    }
}

/// Whether a refusal recorded with this reason name is evidence of guessing (for those that see
/// only the audit record: the alerts).
pub(crate) fn is_guessing_name(name: &str) -> bool {
    [
        Reason::WrongPassword,
        Reason::UnknownUser,
        Reason::MalformedBasic,
        Reason::UnknownApiKey,
        Reason::BadSignature,
        Reason::Malformed,
        Reason::MalformedJson,
        Reason::AlgNone,
        Reason::AlgNotAllowed,
        Reason::EmbeddedKey,
        Reason::BadIssuer,
        Reason::BadAudience,
    ]
    .iter()
    .any(|reason| reason.as_str() == name)
}

impl From<&'static str> for Reason {
    fn from(name: &'static str) -> Self {
        Self::from_name(name)
    }
}

impl PartialEq for Reason {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Reason {}

impl std::hash::Hash for Reason {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// Compares the name: `rejection.reason() == "expired"`.
impl PartialEq<&str> for Reason {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

/// Serialized as its name.
impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rejection;

    #[test]
    fn the_body_names_every_reason_but_the_halves_of_a_basic_credential() {
        let body = |rejection: Rejection| -> serde_json::Value {
            serde_json::from_slice(&rejection.problem_json()).unwrap()
        };
        let refused = |reason: Reason| {
            Rejection::new(RejectionKind::InvalidCredentials)
                .with_detail("invalid user name or password")
                .with_reason(reason)
        };
        assert_eq!(body(refused(Reason::Expired))["reason"], "expired");
        assert_eq!(body(refused(Reason::Other("mine")))["reason"], "mine");
        // A guesser learns nothing from the body about which half was wrong.
        let unknown = body(refused(Reason::UnknownUser));
        assert_eq!(unknown, body(refused(Reason::WrongPassword)));
        assert_eq!(unknown, body(refused(Reason::Other("wrong_password"))));
        assert!(unknown.get("reason").is_none());
        assert!(body(Rejection::new(RejectionKind::Forbidden)).get("reason").is_none());
        // A member of your own named `reason` wins, once.
        let own = refused(Reason::Expired).with_member("reason", "renew".into());
        let bytes = own.problem_json();
        assert_eq!(body(own)["reason"], "renew");
        assert_eq!(String::from_utf8_lossy(&bytes).matches("\"reason\"").count(), 1);
    }

    #[test]
    fn every_name_converts_back_to_its_reason() {
        for reason in [
            Reason::AlgNone,
            Reason::AlgNotAllowed,
            Reason::AuditLayerMissing,
            Reason::BadAudience,
            Reason::BadClient,
            Reason::BadHost,
            Reason::BadIssuer,
            Reason::BadSignature,
            Reason::BadTenant,
            Reason::BasicQueueFull,
            Reason::BodyNotAllowed,
            Reason::BodyTooLarge,
            Reason::BodyUnreadable,
            Reason::ClaimType,
            Reason::ClaimNotAccepted,
            Reason::ClaimsShape,
            Reason::CredentialsOverHttp,
            Reason::DateOutOfRange,
            Reason::DuplicateApiKey,
            Reason::DuplicateAuthorization,
            Reason::EmbeddedKey,
            Reason::EncodedResponse,
            Reason::Expired,
            Reason::ForeignCharset,
            Reason::HeaderFieldsTooLarge,
            Reason::HostNotAllowed,
            Reason::HttpsRequired,
            Reason::Inactive,
            Reason::IntrospectionBusy,
            Reason::IntrospectionFailed,
            Reason::InvalidJson,
            Reason::IssuedInFuture,
            Reason::KidRequired,
            Reason::LockedOut,
            Reason::Malformed,
            Reason::MalformedAuthorization,
            Reason::MalformedBasic,
            Reason::MalformedInput,
            Reason::MalformedJson,
            Reason::MethodNotAllowed,
            Reason::MethodNotListed,
            Reason::MissingCredentials,
            Reason::MissingExp,
            Reason::MissingHeader,
            Reason::MissingScope,
            Reason::MissingSub,
            Reason::NestedJwt,
            Reason::NoRoute,
            Reason::NotABearerAccessToken,
            Reason::NotYetValid,
            Reason::PartialContent,
            Reason::PathExtractorMismatch,
            Reason::Policy,
            Reason::PolicyDenied,
            Reason::RateLimited,
            Reason::RedirectHostInvalid,
            Reason::RedirectToHttps,
            Reason::ResourcePolicyDenied,
            Reason::ResponseBodyError,
            Reason::ResponseTooLarge,
            Reason::Revoked,
            Reason::SenderConstrained,
            Reason::SeveralCredentials,
            Reason::StepUpRequired,
            Reason::StreamNotRedacted,
            Reason::TooLarge,
            Reason::TypMismatch,
            Reason::UnknownApiKey,
            Reason::UnknownField,
            Reason::UnknownKid,
            Reason::UnknownUser,
            Reason::UnlistedRoute,
            Reason::UnsupportedCrit,
            Reason::UnsupportedMediaType,
            Reason::UnsupportedScheme,
            Reason::UriTooLong,
            Reason::ValidationFailed,
            Reason::WrongPassword,
        ] {
            assert_eq!(Reason::from_name(reason.as_str()), reason);
        }
        assert_eq!(Reason::from_name("mine"), Reason::Other("mine"));
        // By name: a built-in name given as `Other` is that reason, for the lockout too.
        assert_eq!(Reason::Other("expired"), Reason::Expired);
        assert!(Reason::Other("wrong_password").is_guess(RejectionKind::InvalidCredentials));
        assert!(!Reason::Other("mine").is_guess(RejectionKind::InvalidCredentials));
        assert_eq!(Reason::from_name(""), Reason::Unspecified);
    }
}
