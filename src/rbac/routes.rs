//! Routes declared together with their policies, so the router and the route table cannot drift.

use std::fmt;

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodFilter, on};
use http::Method;

use super::policy::Policy;
use super::table::{RouteTable, RouteTableBuilder, check_pattern};
use crate::error::ConfigError;

/// An axum [`Router`] whose every route is declared with its [`Policy`], building the router and
/// its [`RouteTable`] from the same lines: a route cannot lack a row, and a row (say a typo,
/// `/note` for `/notes`) cannot miss its route, as both can when the two are written apart.
///
/// Mistakes are errors from [`build`](Self::build): a pattern that does not start with `/` or
/// uses axum 0.7 syntax (`:id`), a method axum cannot route, and a method declared twice for one
/// pattern. Patterns that conflict (`/items/{id}` next to `/items/{name}`) panic, as they do in
/// [`Router::route`].
///
/// ```
/// use axum::extract::Path;
/// use portcullis::rbac::{PolicyRouter, RbacLayer, any_role, public, require_scope};
/// use portcullis::{AuthLayer, Portcullis};
/// # use portcullis::{Algorithm, auth::{JwtAuthenticator, JwtKey}};
///
/// async fn list() -> &'static str { "[]" }
/// async fn create() -> &'static str { "{}" }
/// async fn delete(Path(id): Path<u64>) -> String { id.to_string() }
///
/// # fn main() -> Result<(), portcullis::ConfigError> {
/// # let jwt = JwtAuthenticator::builder()
/// #     .key(JwtKey::hmac(b"a secret of at least thirty-two bytes!!", Algorithm::HS256)?)
/// #     .issuer("https://issuer.example").audience(["notes"]).build()?;
/// let (router, table) = PolicyRouter::new()
///     .get("/health", || async { "ok" }, public())
///     .get("/notes", list, require_scope("notes:read"))
///     .post("/notes", create, require_scope("notes:write"))
///     .delete("/notes/{id}", delete, require_scope("notes:write").and(any_role(["admin"])))
///     .build()?;
/// let security = Portcullis::builder()
///     .auth(AuthLayer::optional().with(jwt))
///     .rbac(RbacLayer::table(table))
///     .build()?;
/// let app: axum::Router = router.layer(security);
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct PolicyRouter<S = ()> {
    router: Router<S>,
    table: RouteTableBuilder,
    declared: Vec<(Method, String)>,
    error: Option<ConfigError>,
}

impl<S> PolicyRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    /// No routes yet.
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            table: RouteTable::builder(),
            declared: Vec::new(),
            error: None,
        }
    }

    /// Routes `method` on the pattern `path` (axum syntax, `/items/{id}`) to `handler`, under
    /// `policy`. `GET` also answers `HEAD`, in the router and in the table.
    pub fn route<H, T>(mut self, method: Method, path: &str, handler: H, policy: Policy) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        if self.error.is_some() {
            return self;
        }
        if let Err(error) = self.declare(&method, path) {
            self.error = Some(error);
            return self;
        }
        let Ok(filter) = MethodFilter::try_from(method.clone()) else {
            self.error = Some(ConfigError::new(format!(
                "{method} {path}: axum routes only the standard methods"
            )));
            return self;
        };
        self.router = self.router.route(path, on(filter, handler));
        self.table = self.table.route(method, path, policy);
        self
    }

    /// [`route`](Self::route) for `GET` (and `HEAD`).
    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H, policy: Policy) -> Self {
        self.route(Method::GET, path, handler, policy)
    }

    /// [`route`](Self::route) for `POST`.
    pub fn post<H: Handler<T, S>, T: 'static>(
        self,
        path: &str,
        handler: H,
        policy: Policy,
    ) -> Self {
        self.route(Method::POST, path, handler, policy)
    }

    /// [`route`](Self::route) for `PUT`.
    pub fn put<H: Handler<T, S>, T: 'static>(self, path: &str, handler: H, policy: Policy) -> Self {
        self.route(Method::PUT, path, handler, policy)
    }

    /// [`route`](Self::route) for `PATCH`.
    pub fn patch<H: Handler<T, S>, T: 'static>(
        self,
        path: &str,
        handler: H,
        policy: Policy,
    ) -> Self {
        self.route(Method::PATCH, path, handler, policy)
    }

    /// [`route`](Self::route) for `DELETE`.
    pub fn delete<H: Handler<T, S>, T: 'static>(
        self,
        path: &str,
        handler: H,
        policy: Policy,
    ) -> Self {
        self.route(Method::DELETE, path, handler, policy)
    }

    /// The router (add state with `with_state`, layer the [`RbacLayer`](super::RbacLayer) of the
    /// table onto it) and the table of its routes, or the first mistake.
    pub fn build(self) -> Result<(Router<S>, RouteTable), ConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        Ok((self.router, self.table.build()?))
    }

    /// Checks what [`Router::route`] would panic on, so it is an error instead.
    fn declare(&mut self, method: &Method, path: &str) -> Result<(), ConfigError> {
        check_pattern(path)?;
        // `GET` answers `HEAD` too, in axum and in the table.
        let clash = |m: &Method| {
            m == method
                || (*m == Method::GET && *method == Method::HEAD)
                || (*m == Method::HEAD && *method == Method::GET)
        };
        if let Some((m, _)) = self.declared.iter().find(|(m, p)| clash(m) && p == path) {
            return Err(ConfigError::new(format!(
                "{method} {path} is declared twice (with {m})"
            )));
        }
        self.declared.push((method.clone(), path.to_owned()));
        Ok(())
    }
}

impl<S> Default for PolicyRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

impl<S> fmt::Debug for PolicyRouter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyRouter")
            .field("routes", &self.declared)
            .finish_non_exhaustive()
    }
}
