//! The policy language: leaves, combinators and their evaluation.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::roles::RoleModel;
use crate::error::Reason;
use crate::error::{Rejection, RejectionKind, Scheme};
use crate::identity::{AuthMethod, Identity, missing_identity};

/// A route-level access rule, built from the functions of this module and combined with
/// [`Policy::and`], [`Policy::or`] and [`not`].
///
/// Evaluation is total: every policy answers allow or deny for every caller, anonymous included,
/// without panicking or looping. Cloning is cheap.
#[derive(Clone)]
pub struct Policy(Arc<Node>);

enum Node {
    Public,
    Authenticated,
    Scope(Box<str>),
    AnyRole(Box<[Box<str>]>),
    Permission(Box<str>),
    Amr(Box<str>),
    Acr(Box<[Box<str>]>),
    MaxAuthAge(Duration),
    All(Box<[Policy]>),
    Any(Box<[Policy]>),
    Not(Policy),
}

/// Everyone, signed in or not.
pub fn public() -> Policy {
    Policy(Arc::new(Node::Public))
}

/// Any authenticated caller.
pub fn authenticated() -> Policy {
    Policy(Arc::new(Node::Authenticated))
}

/// Callers whose token grants `scope`.
pub fn require_scope(scope: impl Into<String>) -> Policy {
    Policy(Arc::new(Node::Scope(scope.into().into_boxed_str())))
}

/// Callers with at least one of these roles.
pub fn any_role<I: IntoIterator<Item = T>, T: Into<String>>(roles: I) -> Policy {
    Policy(Arc::new(Node::AnyRole(boxed(roles))))
}

/// Callers whose roles grant `permission` in the [`RoleModel`] (with inheritance).
pub fn permission(permission: impl Into<String>) -> Policy {
    Policy(Arc::new(Node::Permission(
        permission.into().into_boxed_str(),
    )))
}

/// Callers whose `amr` claim (RFC 8176) contains `method`, e.g. `"mfa"`. Otherwise the answer is
/// 401 `insufficient_user_authentication` (RFC 9470), so the client can step up.
pub fn require_amr(method: impl Into<String>) -> Policy {
    Policy(Arc::new(Node::Amr(method.into().into_boxed_str())))
}

/// Callers whose `acr` claim is one of these values. Otherwise 401
/// `insufficient_user_authentication` with `acr_values` naming them (RFC 9470).
pub fn require_acr<I: IntoIterator<Item = T>, T: Into<String>>(values: I) -> Policy {
    Policy(Arc::new(Node::Acr(boxed(values))))
}

/// Callers who authenticated (`auth_time`) at most `max_age` ago. Otherwise 401
/// `insufficient_user_authentication` with `max_age` (RFC 9470).
pub fn max_auth_age(max_age: Duration) -> Policy {
    Policy(Arc::new(Node::MaxAuthAge(max_age)))
}

/// Allows exactly what `policy` denies.
pub fn not(policy: Policy) -> Policy {
    Policy(Arc::new(Node::Not(policy)))
}

fn boxed<I: IntoIterator<Item = T>, T: Into<String>>(items: I) -> Box<[Box<str>]> {
    items
        .into_iter()
        .map(|item| item.into().into_boxed_str())
        .collect()
}

impl Policy {
    /// Allowed only when both allow.
    pub fn and(self, other: Policy) -> Policy {
        let mut parts: Vec<Policy> = Vec::with_capacity(2);
        for policy in [self, other] {
            match &*policy.0 {
                Node::All(inner) => parts.extend(inner.iter().cloned()),
                _ => parts.push(policy),
            }
        }
        Policy(Arc::new(Node::All(parts.into_boxed_slice())))
    }

    /// Allowed when either allows.
    pub fn or(self, other: Policy) -> Policy {
        let mut parts: Vec<Policy> = Vec::with_capacity(2);
        for policy in [self, other] {
            match &*policy.0 {
                Node::Any(inner) => parts.extend(inner.iter().cloned()),
                _ => parts.push(policy),
            }
        }
        Policy(Arc::new(Node::Any(parts.into_boxed_slice())))
    }

    /// Whether `identity` (or an anonymous caller, with `None`) is allowed, e.g. to decide what a
    /// user interface offers. `roles` resolves [`permission`] rules.
    pub fn allows(&self, identity: Option<&Identity>, roles: &RoleModel) -> bool {
        self.evaluate(&Context::new(identity, roles)).is_ok()
    }

    /// Every permission this policy names (to check them against a role model).
    pub(crate) fn permissions<'a>(&'a self, out: &mut Vec<&'a str>) {
        match &*self.0 {
            Node::Permission(permission) => out.push(permission),
            Node::All(parts) | Node::Any(parts) => {
                for part in parts.iter() {
                    part.permissions(out);
                }
            }
            Node::Not(inner) => inner.permissions(out),
            _ => {}
        }
    }

    /// Whether anonymous callers are allowed (for the route inventory).
    pub fn is_public(&self) -> bool {
        self.evaluate(&Context::new(None, &RoleModel::default()))
            .is_ok()
    }

    /// Decides for one caller.
    pub(crate) fn evaluate(&self, cx: &Context<'_>) -> Result<(), Miss> {
        // Every leaf but `public` needs a caller; the combinators decide from their parts.
        let caller = || cx.identity.ok_or(Miss::Anonymous);
        match &*self.0 {
            Node::Public => Ok(()),
            Node::Authenticated => caller().map(drop),
            Node::All(parts) => all(parts, cx),
            Node::Any(parts) => any(parts, cx),
            // A negation is about a signed-in caller: `not(any_role(["banned"]))` must not let
            // anonymous callers in.
            Node::Not(inner) => {
                caller()?;
                match inner.evaluate(cx) {
                    Ok(()) => Err(Miss::Requirement(format!("not ({inner})").into())),
                    Err(_) => Ok(()),
                }
            }
            leaf => evaluate_leaf(self, leaf, caller()?, cx),
        }
    }
}

fn evaluate_leaf(
    policy: &Policy,
    leaf: &Node,
    identity: &Identity,
    cx: &Context<'_>,
) -> Result<(), Miss> {
    match leaf {
        Node::Scope(scope) => {
            if identity.has_scope(scope) {
                Ok(())
            } else {
                Err(Miss::Scope(scope.to_string().into()))
            }
        }
        Node::AnyRole(roles) => {
            if roles.iter().any(|role| identity.has_role(role)) {
                Ok(())
            } else {
                Err(Miss::Requirement(policy.to_string().into()))
            }
        }
        Node::Permission(permission) => {
            if cx.roles.grants(identity.roles(), permission) {
                Ok(())
            } else {
                Err(Miss::Requirement(policy.to_string().into()))
            }
        }
        // Step-up asks the caller to log in again at the identity provider, which only a token
        // holder can do; an API key or a password can never satisfy it.
        Node::Amr(_) | Node::Acr(_) | Node::MaxAuthAge(_)
            if !matches!(
                identity.method(),
                AuthMethod::Jwt | AuthMethod::Introspection
            ) =>
        {
            Err(Miss::Requirement(policy.to_string().into()))
        }
        Node::Acr(values) if values.is_empty() => Err(Miss::Requirement(policy.to_string().into())),
        Node::Amr(method) => {
            let present = match identity.claim("amr") {
                Some(Value::Array(items)) => items.iter().any(|m| m.as_str() == Some(method)),
                _ => false,
            };
            if present {
                Ok(())
            } else {
                Err(Miss::StepUp {
                    acr_values: None,
                    max_age: None,
                })
            }
        }
        Node::Acr(values) => match identity.claim("acr") {
            Some(Value::String(acr)) if values.iter().any(|v| **v == **acr) => Ok(()),
            _ => Err(Miss::StepUp {
                acr_values: Some(values.join(" ").into()),
                max_age: None,
            }),
        },
        Node::MaxAuthAge(max_age) => {
            let auth_time = identity.claim("auth_time").and_then(Value::as_u64);
            let now = cx.now();
            match auth_time {
                // An `auth_time` in the future (beyond a minute of skew) is not believed.
                Some(at)
                    if at <= now.saturating_add(60)
                        && now.saturating_sub(at) <= max_age.as_secs() =>
                {
                    Ok(())
                }
                _ => Err(Miss::StepUp {
                    acr_values: None,
                    max_age: Some(max_age.as_secs()),
                }),
            }
        }
        // Handled by `Policy::evaluate` before it gets here; fail closed all the same.
        Node::Public | Node::Authenticated | Node::All(_) | Node::Any(_) | Node::Not(_) => {
            Err(Miss::Requirement(policy.to_string().into()))
        }
    }
}

/// `All` allows when every part allows. Otherwise it reports what the caller can act on, in this
/// order: sign in; what is missing for good (a role, a scope: stepping up would not help); only
/// then stepping up, with the step-up rules of every part merged into one challenge.
fn all(parts: &[Policy], cx: &Context<'_>) -> Result<(), Miss> {
    let mut step_up: Option<(Option<Cow<'static, str>>, Option<u64>)> = None;
    let mut missing: Option<Miss> = None;
    for part in parts {
        match part.evaluate(cx) {
            Ok(()) => {}
            Err(Miss::Anonymous) => return Err(Miss::Anonymous),
            Err(Miss::StepUp {
                acr_values,
                max_age,
            }) => {
                let (acr, age) = step_up.take().unwrap_or((None, None));
                let age = match (age, max_age) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                };
                step_up = Some((acr.or(acr_values), age));
            }
            Err(other) => {
                missing.get_or_insert(other);
            }
        }
    }
    if let Some(miss) = missing {
        return Err(miss);
    }
    match step_up {
        Some((acr_values, max_age)) => Err(Miss::StepUp {
            acr_values,
            max_age,
        }),
        None => Ok(()),
    }
}

/// `Any` allows when one part allows; otherwise it reports the most actionable miss: signing in
/// first, then stepping up, then what was required.
fn any(parts: &[Policy], cx: &Context<'_>) -> Result<(), Miss> {
    let mut misses = Vec::with_capacity(parts.len());
    for part in parts {
        match part.evaluate(cx) {
            Ok(()) => return Ok(()),
            Err(miss) => misses.push(miss),
        }
    }
    if misses.iter().any(|m| matches!(m, Miss::Anonymous)) {
        return Err(Miss::Anonymous);
    }
    if let Some(index) = misses.iter().position(|m| matches!(m, Miss::StepUp { .. })) {
        return Err(misses.swap_remove(index));
    }
    let described: Vec<String> = parts.iter().map(ToString::to_string).collect();
    Err(Miss::Requirement(described.join(" or ").into()))
}

/// What a policy needs to decide.
pub(crate) struct Context<'a> {
    pub(crate) identity: Option<&'a Identity>,
    pub(crate) roles: &'a RoleModel,
    /// Seconds since the epoch, read only if a policy asks for it.
    now: std::cell::OnceCell<u64>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(identity: Option<&'a Identity>, roles: &'a RoleModel) -> Self {
        Self {
            identity,
            roles,
            now: std::cell::OnceCell::new(),
        }
    }

    fn now(&self) -> u64 {
        *self.now.get_or_init(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        })
    }
}

/// Why a policy denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Miss {
    /// Nobody is signed in.
    Anonymous,
    /// A scope is missing (RFC 6750 `insufficient_scope`).
    Scope(Cow<'static, str>),
    /// Something else is missing; the text names it.
    Requirement(Cow<'static, str>),
    /// The caller must authenticate more strongly or more recently.
    StepUp {
        acr_values: Option<Cow<'static, str>>,
        max_age: Option<u64>,
    },
}

impl Miss {
    /// The shared rejection for a miss: 401 to sign in or step up, 403 otherwise. With
    /// `hide_details` the 403 does not say what was missing.
    pub(crate) fn into_rejection(
        self,
        extensions: &http::Extensions,
        hide_details: bool,
    ) -> Rejection {
        match self {
            Miss::Anonymous => missing_identity(extensions),
            Miss::Scope(scope) => {
                let rejection = Rejection::new(RejectionKind::InsufficientScope)
                    .with_reason(Reason::MissingScope)
                    .with_challenge(Scheme::Bearer);
                if hide_details {
                    rejection.hide_reason()
                } else {
                    rejection
                        .with_detail(format!("This requires the scope `{scope}`."))
                        .with_scope(scope)
                }
            }
            Miss::Requirement(requirement) => {
                let rejection =
                    Rejection::new(RejectionKind::Forbidden).with_reason(Reason::PolicyDenied);
                if hide_details {
                    rejection.hide_reason()
                } else {
                    rejection.with_detail(format!("This requires {requirement}."))
                }
            }
            Miss::StepUp {
                acr_values,
                max_age,
            } => {
                let mut rejection = Rejection::new(RejectionKind::InsufficientUserAuthentication)
                    .with_reason(Reason::StepUpRequired)
                    .with_challenge(Scheme::Bearer);
                if let Some(acr_values) = acr_values {
                    rejection = rejection.with_bearer_param("acr_values", acr_values);
                }
                if let Some(max_age) = max_age {
                    rejection = rejection.with_bearer_param("max_age", max_age.to_string());
                }
                rejection
            }
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[Policy], word: &str| {
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    write!(f, " {word} ")?;
                }
                if matches!(&*part.0, Node::All(_) | Node::Any(_)) {
                    write!(f, "({part})")?;
                } else {
                    write!(f, "{part}")?;
                }
            }
            Ok(())
        };
        match &*self.0 {
            Node::Public => f.write_str("public"),
            Node::Authenticated => f.write_str("authenticated"),
            Node::Scope(scope) => write!(f, "scope `{scope}`"),
            Node::AnyRole(roles) => write!(f, "any role of [{}]", roles.join(", ")),
            Node::Permission(permission) => write!(f, "permission `{permission}`"),
            Node::Amr(method) => write!(f, "amr `{method}`"),
            Node::Acr(values) => write!(f, "acr in [{}]", values.join(", ")),
            Node::MaxAuthAge(age) => write!(f, "authenticated within {}s", age.as_secs()),
            Node::All(parts) => join(f, parts, "and"),
            Node::Any(parts) => join(f, parts, "or"),
            Node::Not(inner) => write!(f, "not ({inner})"),
        }
    }
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Policy({self})")
    }
}
