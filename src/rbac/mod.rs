//! Authorization: what the caller may do. Deny by default.
//!
//! Policies are written in Rust: [`require_scope`], [`any_role`], [`permission`] (through a
//! [`RoleModel`] with inheritance resolved at build time), [`authenticated`], [`public`], the
//! step-up rules [`require_amr`], [`require_acr`] and [`max_auth_age`] (RFC 9470), combined with
//! [`Policy::and`], [`Policy::or`] and [`not`].
//!
//! Three ways to attach them, all giving the same decision and the same rejection:
//!
//! 1. [`RbacLayer::new(policy)`](RbacLayer::new) on a router, or with `route_layer` on one route;
//! 2. [`RbacLayer::table`] with a [`RouteTable`] keyed by method and route pattern, which refuses
//!    routes it does not list (403) and methods it does not list (405 with `Allow`), and can list
//!    every route with its policy ([`RouteTable::inventory`]). Declare each route with its policy
//!    in a [`PolicyRouter`], which builds the router and the table from the same lines, so a
//!    route cannot lack its row nor a row miss its route;
//! 3. extractor guards such as [`RequireScope<ItemsWrite>`](RequireScope), so the requirement shows
//!    in the handler signature.
//!
//! For rules that need the resource (owner, tenant), build a [`ResourcePolicy`] and call
//! [`Identity::authorize`](crate::Identity::authorize).
//!
//! Answers: 401 when nobody is signed in (with the `WWW-Authenticate` challenge of the
//! [`AuthLayer`](crate::AuthLayer) in front), 401 `insufficient_user_authentication` with
//! `acr_values` / `max_age` when a step-up rule fails, 403 naming the missing requirement otherwise
//! ([`RbacLayer::hide_details`] keeps it vague). Each request's [`Decision`](crate::Decision) is
//! left in the request and response extensions for the audit layer.
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use http::Method;
//! use portcullis::rbac::{RbacLayer, RoleDef, RoleModel, RouteTable, any_role, permission, public, require_scope};
//!
//! # fn main() -> Result<(), portcullis::ConfigError> {
//! let roles = RoleModel::builder()
//!     .role(RoleDef::new("viewer").grants(["items:read"]))
//!     .role(RoleDef::new("admin").inherits(["viewer"]).grants(["items:delete"]))
//!     .build()?;
//! let table = RouteTable::builder()
//!     .route(Method::GET, "/health", public())
//!     .route(Method::GET, "/items", require_scope("read:items").or(permission("items:read")))
//!     .route(Method::DELETE, "/items/{id}", permission("items:delete").and(any_role(["admin"])))
//!     .build()?;
//! table.log_inventory();
//!
//! let app: Router = Router::new()
//!     .route("/health", get(|| async { "ok" }))
//!     .route("/items", get(|| async { "[]" }))
//!     .route("/items/{id}", get(|| async { "{}" }).delete(|| async { "" }))
//!     .layer(RbacLayer::table(table).roles(roles));
//! # Ok(())
//! # }
//! ```
//!
//! Put the [`AuthLayer`](crate::AuthLayer) outside (after, in `.layer` order) so the identity is
//! known when the policy runs; make it `optional()` when some routes are public.

mod guard;
mod layer;
mod policy;
mod resource;
mod roles;
mod routes;
mod service;
mod table;

pub use guard::{RequireRole, RequireScope, Role, Scope};
pub use layer::RbacLayer;
pub use policy::{
    Policy, any_role, authenticated, max_auth_age, not, permission, public, require_acr,
    require_amr, require_scope,
};
pub use resource::{IssuedValue, ResourcePolicy, check, owner, same_claim};
pub use roles::{RoleDef, RoleDocument, RoleModel, RoleModelBuilder, RoleSpec};
pub use routes::PolicyRouter;
pub use service::{Rbac, ResponseFuture};
pub use table::{RouteInfo, RouteTable, RouteTableBuilder};
