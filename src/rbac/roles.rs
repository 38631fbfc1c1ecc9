//! Roles, the permissions they grant, and inheritance resolved once at build time.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

use crate::error::ConfigError;

/// Which permissions each role grants, inheritance already flattened.
///
/// Built once at start-up from code ([`RoleModel::builder`]) or from a configuration document
/// ([`RoleDocument`], any serde format: TOML, JSON, YAML). An inheritance cycle or a parent that
/// is not defined is a [`ConfigError`], never a loop at request time.
///
/// ```
/// use portcullis::rbac::{RoleDef, RoleModel};
///
/// # fn main() -> Result<(), portcullis::ConfigError> {
/// let roles = RoleModel::builder()
///     .role(RoleDef::new("viewer").grants(["items:read"]))
///     .role(RoleDef::new("editor").inherits(["viewer"]).grants(["items:write"]))
///     .role(RoleDef::new("admin").inherits(["editor"]).grants(["items:delete"]))
///     .build()?;
/// assert!(roles.grants(&["admin".to_owned()], "items:read"));
/// assert!(!roles.grants(&["viewer".to_owned()], "items:write"));
///
/// let cyclic = RoleModel::builder()
///     .role(RoleDef::new("a").inherits(["b"]))
///     .role(RoleDef::new("b").inherits(["a"]))
///     .build();
/// assert!(cyclic.is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct RoleModel {
    grants: HashMap<Box<str>, HashSet<Box<str>>>,
}

/// A role model as written in configuration:
///
/// ```toml
/// [roles.viewer]
/// permissions = ["items:read"]
///
/// [roles.editor]
/// inherits = ["viewer"]
/// permissions = ["items:write"]
/// ```
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoleDocument {
    /// The roles by name.
    pub roles: BTreeMap<String, RoleSpec>,
}

/// One role in a [`RoleDocument`].
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Roles whose permissions this role also grants.
    #[serde(default)]
    pub inherits: Vec<String>,
    /// Permissions this role grants itself.
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// One role for [`RoleModelBuilder::role`].
#[derive(Clone, Debug)]
#[must_use]
pub struct RoleDef {
    name: String,
    spec: RoleSpec,
}

impl RoleDef {
    /// A role that grants nothing yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            spec: RoleSpec::default(),
        }
    }

    /// Also grants every permission of these roles.
    pub fn inherits<I: IntoIterator<Item = T>, T: Into<String>>(mut self, roles: I) -> Self {
        self.spec.inherits.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Grants these permissions.
    pub fn grants<I: IntoIterator<Item = T>, T: Into<String>>(mut self, permissions: I) -> Self {
        self.spec
            .permissions
            .extend(permissions.into_iter().map(Into::into));
        self
    }
}

/// Builds a [`RoleModel`] in code.
#[derive(Debug, Default)]
#[must_use]
pub struct RoleModelBuilder {
    document: RoleDocument,
    duplicate: Option<String>,
}

impl RoleModelBuilder {
    /// Adds a role.
    pub fn role(mut self, role: RoleDef) -> Self {
        if self
            .document
            .roles
            .insert(role.name.clone(), role.spec)
            .is_some()
        {
            self.duplicate.get_or_insert(role.name);
        }
        self
    }

    /// Resolves inheritance.
    pub fn build(self) -> Result<RoleModel, ConfigError> {
        if let Some(name) = self.duplicate {
            return Err(ConfigError::new(format!("role `{name}` is defined twice")));
        }
        RoleModel::from_document(&self.document)
    }
}

impl RoleModel {
    /// Starts a role model in code.
    pub fn builder() -> RoleModelBuilder {
        RoleModelBuilder::default()
    }

    /// Resolves a document into a model.
    pub fn from_document(document: &RoleDocument) -> Result<Self, ConfigError> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        // Depth-first over an explicit stack (no recursion to overflow on long chains).
        let mut marks: HashMap<&str, Mark> = HashMap::new();
        let mut grants: HashMap<Box<str>, HashSet<Box<str>>> = HashMap::new();
        for root in document.roles.keys() {
            let mut stack: Vec<(&str, usize)> = vec![(root.as_str(), 0)];
            while let Some((name, next_parent)) = stack.pop() {
                if next_parent == 0 {
                    match marks.get(name) {
                        Some(Mark::Done) => continue,
                        Some(Mark::Visiting) => {
                            return Err(ConfigError::new(format!(
                                "role inheritance has a cycle through `{name}`"
                            )));
                        }
                        None => {
                            marks.insert(name, Mark::Visiting);
                        }
                    }
                }
                let spec = &document.roles[name];
                if let Some(parent) = spec.inherits.get(next_parent) {
                    if !document.roles.contains_key(parent) {
                        return Err(ConfigError::new(format!(
                            "role `{name}` inherits from undefined role `{parent}`"
                        )));
                    }
                    stack.push((name, next_parent + 1));
                    match marks.get(parent.as_str()) {
                        Some(Mark::Visiting) => {
                            return Err(ConfigError::new(format!(
                                "role inheritance has a cycle through `{parent}`"
                            )));
                        }
                        Some(Mark::Done) => {}
                        None => stack.push((parent.as_str(), 0)),
                    }
                    continue;
                }
                // All parents are resolved: this role grants its own and its parents' permissions.
                let mut all: HashSet<Box<str>> =
                    spec.permissions.iter().map(|p| p.as_str().into()).collect();
                for parent in &spec.inherits {
                    if let Some(inherited) = grants.get(parent.as_str()) {
                        all.extend(inherited.iter().cloned());
                    }
                }
                grants.insert(name.into(), all);
                marks.insert(name, Mark::Done);
            }
        }
        Ok(Self { grants })
    }

    /// Whether any of `roles` grants `permission`.
    pub fn grants(&self, roles: &[String], permission: &str) -> bool {
        roles.iter().any(|role| {
            self.grants
                .get(role.as_str())
                .is_some_and(|granted| granted.contains(permission))
        })
    }

    /// Whether some role grants `permission`.
    pub(crate) fn is_granted_by_any_role(&self, permission: &str) -> bool {
        self.grants
            .values()
            .any(|granted| granted.contains(permission))
    }

    /// Every permission `role` grants, inheritance included (sorted).
    pub fn permissions(&self, role: &str) -> Vec<&str> {
        let mut permissions: Vec<&str> = self
            .grants
            .get(role)
            .map(|granted| granted.iter().map(|p| &**p).collect())
            .unwrap_or_default();
        permissions.sort_unstable();
        permissions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inheritance_is_flattened_three_levels_deep() {
        let model = RoleModel::builder()
            .role(RoleDef::new("viewer").grants(["read"]))
            .role(
                RoleDef::new("editor")
                    .inherits(["viewer"])
                    .grants(["write"]),
            )
            .role(
                RoleDef::new("admin")
                    .inherits(["editor", "auditor"])
                    .grants(["delete"]),
            )
            .role(RoleDef::new("auditor").grants(["audit"]))
            .build()
            .unwrap();
        assert_eq!(
            model.permissions("admin"),
            ["audit", "delete", "read", "write"]
        );
        assert_eq!(model.permissions("editor"), ["read", "write"]);
        assert_eq!(model.permissions("nobody"), Vec::<&str>::new());
        assert!(model.grants(&["viewer".into(), "auditor".into()], "audit"));
        assert!(!model.grants(&["viewer".into()], "delete"));
    }

    #[test]
    fn cycles_duplicates_and_unknown_parents_are_errors() {
        let self_loop = RoleModel::builder()
            .role(RoleDef::new("a").inherits(["a"]))
            .build();
        assert!(self_loop.unwrap_err().to_string().contains("cycle"));
        let long = RoleModel::builder()
            .role(RoleDef::new("a").inherits(["b"]))
            .role(RoleDef::new("b").inherits(["c"]))
            .role(RoleDef::new("c").inherits(["a"]))
            .build();
        assert!(long.unwrap_err().to_string().contains("cycle"));
        let unknown = RoleModel::builder()
            .role(RoleDef::new("a").inherits(["ghost"]))
            .build();
        assert!(unknown.unwrap_err().to_string().contains("ghost"));
        let twice = RoleModel::builder()
            .role(RoleDef::new("a").grants(["x"]))
            .role(RoleDef::new("a").grants(["y"]))
            .build();
        assert!(twice.is_err());
    }

    #[test]
    fn a_long_chain_does_not_recurse() {
        let mut builder = RoleModel::builder().role(RoleDef::new("r0").grants(["p"]));
        for i in 1..20_000 {
            builder = builder.role(RoleDef::new(format!("r{i}")).inherits([format!("r{}", i - 1)]));
        }
        let model = builder.build().unwrap();
        assert!(model.grants(&["r19999".into()], "p"));
    }
}
