//! Object-level checks: rules that need the resource itself (OWASP API1).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::policy::{Context, Miss, Policy};
use super::roles::RoleModel;
use crate::decision::LayerKind;
use crate::error::Reason;
use crate::error::{Rejection, RejectionKind};
use crate::identity::{Identity, Principal};

/// A rule about one resource, e.g. "the caller owns it, or is an admin".
///
/// Build it from [`owner`], [`same_claim`] and [`check`], mix in route policies with
/// [`ResourcePolicy::and`] / [`ResourcePolicy::or`], and apply it with
/// [`Identity::authorize`](crate::Identity::authorize), which answers the same 403 rejection as
/// the layer.
///
/// ```
/// use portcullis::rbac::{any_role, owner, same_claim, IssuedValue, ResourcePolicy};
/// use portcullis::{AuthMethod, Identity, Principal, PrincipalKind};
///
/// const IDP: &str = "https://sso.example.com";
/// struct Invoice { owner: String, tenant: String }
///
/// let policy: ResourcePolicy<Invoice> = owner(|i: &Invoice| {
///     Principal::new(PrincipalKind::TokenSubject, Some(IDP), &i.owner)
/// })
/// .and(same_claim("tenant_id", |i: &Invoice| IssuedValue::new(Some(IDP), &i.tenant)))
/// .or(any_role(["admin"]));
///
/// let mut claims = serde_json::Map::new();
/// claims.insert("tenant_id".into(), "acme".into());
/// let alice = Identity::builder("alice", AuthMethod::Jwt).issuer(IDP).claims(claims).build();
/// let invoice = Invoice { owner: "alice".into(), tenant: "acme".into() };
/// assert!(alice.authorize(&policy, &invoice).is_ok());
/// let other = Invoice { owner: "bob".into(), tenant: "acme".into() };
/// assert_eq!(alice.authorize(&policy, &other).unwrap_err().status(), 403);
/// // The same subject from another issuer, or as a Basic user, is someone else.
/// let impostor = Identity::builder("alice", AuthMethod::Basic).build();
/// assert!(impostor.authorize(&policy, &invoice).is_err());
/// ```
pub struct ResourcePolicy<R> {
    node: Arc<Node<R>>,
    roles: Arc<RoleModel>,
}

type CheckFn<R> = dyn Fn(&Identity, &R) -> bool + Send + Sync;

enum Node<R> {
    Route(Policy),
    Check {
        description: Cow<'static, str>,
        check: Box<CheckFn<R>>,
    },
    All(Vec<ResourcePolicy<R>>),
    Any(Vec<ResourcePolicy<R>>),
}

impl<R> Clone for ResourcePolicy<R> {
    fn clone(&self) -> Self {
        Self {
            node: self.node.clone(),
            roles: self.roles.clone(),
        }
    }
}

impl<R> From<Policy> for ResourcePolicy<R> {
    fn from(policy: Policy) -> Self {
        Self::new(Node::Route(policy))
    }
}

/// The caller is the resource's owner: the same [`Principal`] (kind of subject, issuer and
/// subject), not merely the same subject, which a Basic user, an API key and the users of two
/// identity providers can share.
///
/// Store the owner's whole principal with the resource (its three parts, or
/// [`Principal::key`]) and return it here.
pub fn owner<R: 'static>(
    owner_of: impl for<'a> Fn(&'a R) -> Principal<'a> + Send + Sync + 'static,
) -> ResourcePolicy<R> {
    check("the owner", move |identity, resource| {
        identity.principal() == owner_of(resource)
    })
}

/// A claim value and the issuer that vouches for it, as stored with a resource (see
/// [`same_claim`]): a `tenant_id` of `acme` from one identity provider says nothing about an
/// `acme` of another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IssuedValue<'a> {
    /// The issuer of the tokens the value comes from (`None`: credentials without an issuer).
    pub issuer: Option<&'a str>,
    /// The value.
    pub value: &'a str,
}

impl<'a> IssuedValue<'a> {
    /// A value vouched for by `issuer`.
    pub fn new(issuer: Option<&'a str>, value: &'a str) -> Self {
        Self { issuer, value }
    }
}

/// The caller's string claim `claim` (a name, or a JSON Pointer starting with `/`) equals the
/// resource's value, e.g. the tenant, and the caller's credential comes from the issuer the
/// resource's value belongs to.
pub fn same_claim<R: 'static>(
    claim: &'static str,
    value_of: impl for<'a> Fn(&'a R) -> IssuedValue<'a> + Send + Sync + 'static,
) -> ResourcePolicy<R> {
    check(format!("the same `{claim}`"), move |identity, resource| {
        let expected = value_of(resource);
        identity.issuer() == expected.issuer
            && identity
                .claim(claim)
                .and_then(serde_json::Value::as_str)
                .is_some_and(|value| value == expected.value)
    })
}

/// Any rule of your own; `description` names it in 403 details.
pub fn check<R>(
    description: impl Into<Cow<'static, str>>,
    check: impl Fn(&Identity, &R) -> bool + Send + Sync + 'static,
) -> ResourcePolicy<R> {
    ResourcePolicy::new(Node::Check {
        description: description.into(),
        check: Box::new(check),
    })
}

impl<R> ResourcePolicy<R> {
    fn new(node: Node<R>) -> Self {
        Self {
            node: Arc::new(node),
            roles: Arc::new(RoleModel::default()),
        }
    }

    /// Allowed only when both allow.
    pub fn and(self, other: impl Into<ResourcePolicy<R>>) -> Self {
        let roles = self.roles.clone();
        Self {
            node: Arc::new(Node::All(vec![self, other.into()])),
            roles,
        }
    }

    /// Allowed when either allows.
    pub fn or(self, other: impl Into<ResourcePolicy<R>>) -> Self {
        let roles = self.roles.clone();
        Self {
            node: Arc::new(Node::Any(vec![self, other.into()])),
            roles,
        }
    }

    /// The role model for `permission(...)` rules inside this policy (none by default). Set it
    /// on the finished policy: the outermost model is the one used.
    pub fn with_roles(mut self, roles: RoleModel) -> Self {
        self.roles = Arc::new(roles);
        self
    }

    fn evaluate(&self, identity: &Identity, resource: &R, roles: &RoleModel) -> Result<(), Miss> {
        match &*self.node {
            Node::Route(policy) => policy.evaluate(&Context::new(Some(identity), roles)),
            Node::Check { description, check } => {
                if check(identity, resource) {
                    Ok(())
                } else {
                    Err(Miss::Requirement(description.clone()))
                }
            }
            Node::All(parts) => parts
                .iter()
                .try_for_each(|p| p.evaluate(identity, resource, roles)),
            Node::Any(parts) => {
                let mut first = None;
                for part in parts {
                    match part.evaluate(identity, resource, roles) {
                        Ok(()) => return Ok(()),
                        Err(miss) => {
                            first.get_or_insert(miss);
                        }
                    }
                }
                Err(first.unwrap_or_else(|| Miss::Requirement(self.to_string().into())))
            }
        }
    }

    /// `Ok`, 401 when only a step-up is missing, or 403 naming the whole rule.
    pub(crate) fn authorize(&self, identity: &Identity, resource: &R) -> Result<(), Rejection> {
        let rejection = match self.evaluate(identity, resource, &self.roles) {
            Ok(()) => return Ok(()),
            Err(step_up @ Miss::StepUp { .. }) => {
                step_up.into_rejection(&http::Extensions::new(), false)
            }
            Err(_) => Rejection::new(RejectionKind::Forbidden)
                .with_reason(Reason::ResourcePolicyDenied)
                .with_detail(format!("This requires {self}.")),
        };
        Err(rejection.decided_by(LayerKind::Rbac))
    }
}

impl<R> fmt::Display for ResourcePolicy<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[ResourcePolicy<R>], word: &str| {
            for (i, part) in parts.iter().enumerate() {
                if i > 0 {
                    write!(f, " {word} ")?;
                }
                write!(f, "({part})")?;
            }
            Ok(())
        };
        match &*self.node {
            Node::Route(policy) => write!(f, "{policy}"),
            Node::Check { description, .. } => f.write_str(description),
            Node::All(parts) => join(f, parts, "and"),
            Node::Any(parts) => join(f, parts, "or"),
        }
    }
}

impl<R> fmt::Debug for ResourcePolicy<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourcePolicy({self})")
    }
}
