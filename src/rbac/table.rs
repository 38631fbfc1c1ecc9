//! One policy table for the whole API, keyed by method and route pattern.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Method};
use serde::Serialize;

use super::policy::Policy;
use crate::error::ConfigError;

/// Policies by method and axum route pattern (`/items/{id}`, as `MatchedPath` spells it, nest
/// prefixes included).
///
/// Deny by default: a matched route that is not in the table is refused with 403, so a route
/// added without a policy is closed rather than silently open ([`allow_unlisted`] opts out). A
/// method the table does not list for a known route gets 405 with an `Allow` header built from the
/// table; `HEAD` follows `GET`. A request without a route pattern gets 404: that is axum's
/// fallback, and the inside of a `nest_service` (axum drops `MatchedPath` there), which no row can
/// describe. Protect a fallback or a nested service that serves content with its own
/// `RbacLayer::new(policy)`.
///
/// The table covers the routes of the router it is layered on *at the time `.layer` is called*
/// (that is how axum layers work): add routes before the layer, and prefer `Router::route_layer`
/// or `Router::layer` to `MethodRouter::route_layer`, which does not cover a method fallback.
///
/// [`allow_unlisted`]: RouteTableBuilder::allow_unlisted
#[derive(Clone)]
pub struct RouteTable(Arc<Inner>);

struct Inner {
    paths: std::collections::HashMap<Box<str>, PathRules>,
    allow_unlisted: bool,
}

struct PathRules {
    methods: Vec<(Method, Policy)>,
    allow: HeaderValue,
}

/// What the table says about one request.
pub(crate) enum Rule<'a> {
    Policy(&'a Policy),
    MethodNotAllowed(&'a HeaderValue),
    /// The route matched but has no row: allowed only with `allow_unlisted`.
    Unlisted {
        allowed: bool,
    },
    NoRoute,
}

impl RouteTable {
    /// Starts a table.
    pub fn builder() -> RouteTableBuilder {
        RouteTableBuilder::default()
    }

    pub(crate) fn rule(&self, method: &Method, path: Option<&str>) -> Rule<'_> {
        let Some(path) = path else {
            return Rule::NoRoute;
        };
        let Some(rules) = self.0.paths.get(path) else {
            return Rule::Unlisted {
                allowed: self.0.allow_unlisted,
            };
        };
        let find = |wanted: &Method| {
            rules
                .methods
                .iter()
                .find(|(m, _)| m == wanted)
                .map(|(_, p)| p)
        };
        match find(method).or_else(|| {
            (method == Method::HEAD)
                .then(|| find(&Method::GET))
                .flatten()
        }) {
            Some(policy) => Rule::Policy(policy),
            None => Rule::MethodNotAllowed(&rules.allow),
        }
    }

    /// The policy for `method` on the route pattern `path`, if the table lists one (`HEAD`
    /// falls back to `GET`). Unlisted routes and methods have none.
    pub fn policy(&self, method: &Method, path: &str) -> Option<&Policy> {
        match self.rule(method, Some(path)) {
            Rule::Policy(policy) => Some(policy),
            _ => None,
        }
    }

    /// Every permission the table's policies name.
    pub(crate) fn permissions(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for rules in self.0.paths.values() {
            for (_, policy) in &rules.methods {
                policy.permissions(&mut out);
            }
        }
        out
    }

    /// Every route with its methods, policy and whether anonymous callers get in, sorted by path:
    /// what the API exposes and how (OWASP API9). Serializes to JSON for an admin route.
    pub fn inventory(&self) -> Vec<RouteInfo> {
        let mut routes: Vec<RouteInfo> = Vec::new();
        let sorted: BTreeMap<&str, &PathRules> =
            self.0.paths.iter().map(|(p, r)| (&**p, r)).collect();
        for (path, rules) in sorted {
            for (method, policy) in &rules.methods {
                routes.push(RouteInfo {
                    method: method.to_string(),
                    path: path.to_owned(),
                    policy: policy.to_string(),
                    public: policy.is_public(),
                });
            }
        }
        routes
    }

    /// Logs the inventory at start-up, one `info` event per route on target `portcullis::rbac`,
    /// public routes flagged.
    pub fn log_inventory(&self) {
        for route in self.inventory() {
            tracing::info!(
                target: "portcullis::rbac",
                method = %route.method,
                path = %route.path,
                public = route.public,
                policy = %route.policy,
                "route"
            );
        }
        tracing::info!(
            target: "portcullis::rbac",
            unlisted = if self.0.allow_unlisted { "allowed" } else { "denied" },
            unmatched = "404",
            "routes not in the table"
        );
    }
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("routes", &self.0.paths.len())
            .field("allow_unlisted", &self.0.allow_unlisted)
            .finish_non_exhaustive()
    }
}

/// One row of [`RouteTable::inventory`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteInfo {
    /// The method.
    pub method: String,
    /// The route pattern.
    pub path: String,
    /// The policy, in words.
    pub policy: String,
    /// Whether anonymous callers are allowed.
    pub public: bool,
}

/// Builds a [`RouteTable`].
#[derive(Default)]
#[must_use]
pub struct RouteTableBuilder {
    routes: Vec<(Method, String, Policy)>,
    allow_unlisted: bool,
}

impl RouteTableBuilder {
    /// The policy for `method` on the route pattern `path` (e.g. `/items/{id}`).
    pub fn route(mut self, method: Method, path: impl Into<String>, policy: Policy) -> Self {
        self.routes.push((method, path.into(), policy));
        self
    }

    /// Lets requests to matched routes missing from the table through. Not recommended: a new
    /// route then has no access control until someone remembers to add it.
    pub fn allow_unlisted(mut self) -> Self {
        self.allow_unlisted = true;
        self
    }

    /// Checks the table: paths are axum 0.8 patterns starting with `/` (`{id}`, not `:id`), each
    /// method and path appears once.
    pub fn build(self) -> Result<RouteTable, ConfigError> {
        let mut paths: std::collections::HashMap<Box<str>, Vec<(Method, Policy)>> =
            std::collections::HashMap::new();
        for (method, path, policy) in self.routes {
            check_pattern(&path)?;
            let methods = paths.entry(path.as_str().into()).or_default();
            if methods.iter().any(|(m, _)| *m == method) {
                return Err(ConfigError::new(format!("{method} {path} is listed twice")));
            }
            methods.push((method, policy));
        }
        let paths = paths
            .into_iter()
            .map(|(path, methods)| {
                let mut names: Vec<&str> = methods.iter().map(|(m, _)| m.as_str()).collect();
                if names.contains(&"GET") && !names.contains(&"HEAD") {
                    names.push("HEAD");
                }
                names.sort_unstable();
                // Method names are tokens, so the joined list is always a valid header value.
                let allow = HeaderValue::from_str(&names.join(", "))
                    .unwrap_or_else(|_| HeaderValue::from_static(""));
                (path, PathRules { methods, allow })
            })
            .collect();
        Ok(RouteTable(Arc::new(Inner {
            paths,
            allow_unlisted: self.allow_unlisted,
        })))
    }
}

/// An axum 0.8 route pattern: starts with `/`, `{id}` rather than `:id`.
pub(super) fn check_pattern(path: &str) -> Result<(), ConfigError> {
    if !path.starts_with('/') {
        return Err(ConfigError::new(format!(
            "route pattern `{path}` must start with `/`"
        )));
    }
    if path
        .split('/')
        .any(|segment| segment.starts_with(':') || segment.starts_with('*'))
    {
        return Err(ConfigError::new(format!(
            "route pattern `{path}` uses axum 0.7 syntax; write `{{id}}` / `{{*rest}}`"
        )));
    }
    Ok(())
}

impl fmt::Debug for RouteTableBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTableBuilder")
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}
