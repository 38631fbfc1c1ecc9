use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::{Policy, Rbac, RoleModel, RouteTable};

/// Authorizes requests with one [`Policy`] or a [`RouteTable`]; see the [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct RbacLayer {
    pub(super) config: Arc<RbacConfig>,
}

#[derive(Clone)]
pub(super) struct RbacConfig {
    pub(super) rules: Rules,
    pub(super) roles: RoleModel,
    pub(super) hide_details: bool,
    /// When (unix minute) an unlisted route was last reported, to report it once a minute.
    pub(super) unlisted_reported: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Clone)]
pub(super) enum Rules {
    Single(Policy),
    Table(RouteTable),
}

impl RbacLayer {
    /// Every request must satisfy `policy` (use `route_layer` to scope it to some routes).
    pub fn new(policy: Policy) -> Self {
        Self::with_rules(Rules::Single(policy))
    }

    /// Each request is judged by its row in `table`.
    pub fn table(table: RouteTable) -> Self {
        Self::with_rules(Rules::Table(table))
    }

    fn with_rules(rules: Rules) -> Self {
        Self {
            config: Arc::new(RbacConfig {
                rules,
                roles: RoleModel::default(),
                hide_details: false,
                unlisted_reported: Arc::default(),
            }),
        }
    }

    /// The role model that [`permission`](super::permission) rules are checked against. A
    /// permission the table names but no role grants is reported (it can only ever deny: most
    /// likely a typo).
    pub fn roles(self, roles: RoleModel) -> Self {
        if let Rules::Table(table) = &self.config.rules {
            for permission in table.permissions() {
                if !roles.is_granted_by_any_role(permission) {
                    tracing::warn!(
                        target: "portcullis::rbac",
                        permission,
                        "no role grants this permission; the routes needing it deny everyone"
                    );
                }
            }
        }
        self.update(|config| config.roles = roles)
    }

    /// Answers 403 without saying which requirement was missing (for production APIs that do
    /// not want to describe their authorization rules to callers).
    pub fn hide_details(self) -> Self {
        self.update(|config| config.hide_details = true)
    }

    fn update(mut self, change: impl FnOnce(&mut RbacConfig)) -> Self {
        change(Arc::make_mut(&mut self.config));
        self
    }
}

impl RbacLayer {
    /// The rows of its table that let anonymous callers in, as `METHOD /path`.
    #[cfg(feature = "auth")]
    pub(crate) fn public_routes(&self) -> Vec<String> {
        match &self.config.rules {
            Rules::Single(_) => Vec::new(),
            Rules::Table(table) => table
                .inventory()
                .into_iter()
                .filter(|route| route.public)
                .map(|route| format!("{} {}", route.method, route.path))
                .collect(),
        }
    }
}

impl fmt::Debug for RbacLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("RbacLayer");
        match &self.config.rules {
            Rules::Single(policy) => debug.field("policy", policy),
            Rules::Table(table) => debug.field("table", table),
        };
        debug
            .field("hide_details", &self.config.hide_details)
            .finish()
    }
}

impl<S> Layer<S> for RbacLayer {
    type Service = Rbac<S>;

    fn layer(&self, inner: S) -> Self::Service {
        crate::guard::Guard::new(inner, self.clone())
    }
}
