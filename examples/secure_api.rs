//! A small items API behind portcullis: the demo the README starts with.
//!
//! ```text
//! cargo run --example secure_api                      # serve on 127.0.0.1:3000, print curl commands
//! cargo run --example secure_api -- token reader      # print a token (reader | writer | admin) and exit
//! ```
//!
//! Contract (scripts depend on it; extend, never break):
//! - `BIND_ADDR` (default `127.0.0.1:3000`); an invalid value stops start-up with a message, and
//!   so does a non-loopback address while the development key is trusted.
//! - `GET /health` is public; `GET /me` returns the caller's subject, scopes and roles;
//!   `GET /items` and `GET /items/{id}` need scope `read:items`; `POST /items` needs
//!   `write:items` and answers 201; `DELETE /items/{id}` needs scope `admin`;
//!   `GET /admin/audit` needs scope `admin` and role `admin`; so does `GET /admin/routes`, the
//!   route inventory (every route, its methods and policy, and whether it is public).
//! - Scopes come from the space-separated `scope` claim, roles from `roles`.
//! - Without configuration it trusts the embedded DEVELOPMENT key below (ES256). Never deploy it.
//! - `OIDC_ISSUER_URL` set: it trusts that OpenID provider instead (discovery, JWKS rotation),
//!   with audience `API_AUDIENCE` (default `portcullis-demo`): RS256 and ES256 RFC 9068 access
//!   tokens only (`typ` `at+jwt`), a plain `http://` issuer only on a loopback address. An invalid
//!   value or an unreachable provider stops start-up with a message (needs `--features oidc`). The dev keys are then not
//!   trusted, so a non-loopback `BIND_ADDR` is allowed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{EncodingKey, Header};
use portcullis::auth::{JwtAuthenticator, JwtKey};
#[cfg(feature = "oidc")]
use portcullis::oidc::{Issuer, OidcAuthenticator};
use portcullis::rbac::{RbacLayer, RouteTable, any_role, authenticated, public, require_scope};
use portcullis::{Algorithm, AuthLayer, Identity, Rejection, RejectionKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

// DEVELOPMENT KEYS, published in this repository: anyone can mint tokens for them. They exist so
// the demo runs with no identity provider; a real deployment configures its own issuer.
const DEV_PRIVATE_KEY: &str = include_str!("dev_keys/es256_dev_private.pem");
const DEV_PUBLIC_KEY: &str = include_str!("dev_keys/es256_dev_public.pem");
const DEV_KID: &str = "portcullis-dev-es256";
const DEV_ISSUER: &str = "urn:portcullis:dev-issuer";
const DEV_AUDIENCE: &str = "portcullis-demo";
const DEV_TOKEN_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// The demo store never holds more than this many items, whatever clients send.
const MAX_ITEMS: usize = 10_000;
const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone, Serialize)]
struct Item {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewItem {
    name: String,
}

#[derive(Clone, Default)]
struct Items(Arc<RwLock<(u64, BTreeMap<u64, Item>)>>);

impl Items {
    fn seeded() -> Self {
        let items = Self::default();
        for name in ["portcullis", "drawbridge"] {
            items.insert(name.to_owned());
        }
        items
    }

    fn insert(&self, name: String) -> Option<Item> {
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        if guard.1.len() >= MAX_ITEMS {
            return None;
        }
        guard.0 += 1;
        let item = Item { id: guard.0, name };
        guard.1.insert(item.id, item.clone());
        Some(item)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => serve(),
        [command, role] if command == "token" => match dev_token(role) {
            Some(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("unknown role {role:?}: use reader, writer or admin");
                ExitCode::from(2)
            }
        },
        _ => {
            eprintln!("usage: secure_api [token reader|writer|admin]");
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,portcullis=debug".into()),
        )
        .init();
    let bind = match setting("BIND_ADDR", "127.0.0.1:3000", |v| {
        v.parse::<SocketAddr>().ok()
    }) {
        Ok(bind) => bind,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let provider = match optional_setting("OIDC_ISSUER_URL") {
        Ok(provider) => provider,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let audience = match optional_setting("API_AUDIENCE") {
        Ok(audience) => audience.unwrap_or_else(|| DEV_AUDIENCE.to_owned()),
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if provider.is_none() && !bind.ip().is_loopback() {
        // Anyone can mint tokens for the published development key: never expose it.
        eprintln!(
            "BIND_ADDR: {bind} is not a loopback address, and the demo trusts its published \
             development key; bind to 127.0.0.1 or [::1]"
        );
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let layer = match &provider {
            None => match dev_authenticator() {
                Ok(jwt) => AuthLayer::optional().with(jwt),
                Err(error) => {
                    eprintln!("configuration error: {error}");
                    return ExitCode::from(2);
                }
            },
            Some(url) => match provider_authenticator(url, &audience).await {
                Ok(oidc) => AuthLayer::optional().with(oidc),
                Err(error) => {
                    eprintln!("OIDC_ISSUER_URL: {error}");
                    return ExitCode::from(2);
                }
            },
        };
        let app = match app(layer) {
            Ok(app) => app,
            Err(message) => {
                eprintln!("configuration error: {message}");
                return ExitCode::from(2);
            }
        };
        let listener = match tokio::net::TcpListener::bind(bind).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("cannot listen on {bind}: {error}");
                return ExitCode::FAILURE;
            }
        };
        match &provider {
            None => print_welcome(bind),
            Some(url) => println!(
                "portcullis demo listening on http://{bind}, trusting {url} for audience {audience:?}"
            ),
        }
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        match axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("server error: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Reads an optional setting; a present but invalid value is an error naming the variable.
fn setting<T>(name: &str, default: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, String> {
    match std::env::var(name) {
        Ok(value) => parse(&value).ok_or_else(|| format!("{name}: invalid value {value:?}")),
        Err(std::env::VarError::NotPresent) => {
            parse(default).ok_or_else(|| format!("{name}: bad default"))
        }
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name}: not valid UTF-8")),
    }
}

/// An optional setting without default; present but empty or not UTF-8 is an error.
fn optional_setting(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Err(format!("{name}: empty value")),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name}: not valid UTF-8")),
    }
}

fn dev_authenticator() -> Result<JwtAuthenticator, portcullis::ConfigError> {
    JwtAuthenticator::builder()
        .key(JwtKey::ec_pem(DEV_PUBLIC_KEY.as_bytes(), Algorithm::ES256)?.with_kid(DEV_KID))
        .issuer(DEV_ISSUER)
        .audience([DEV_AUDIENCE])
        .build()
}

/// The provider named by `OIDC_ISSUER_URL`: RS256/ES256 RFC 9068 access tokens for `audience`.
#[cfg(feature = "oidc")]
async fn provider_authenticator(
    url: &str,
    audience: &str,
) -> Result<OidcAuthenticator, portcullis::ConfigError> {
    let issuer = Issuer::builder(url)
        .audience([audience])
        .algorithms([Algorithm::RS256, Algorithm::ES256])
        .typ(["at+jwt", "application/at+jwt"])
        // http:// is accepted only when the issuer's host is a loopback address.
        .allow_http_on_loopback()
        .build()
        .await?;
    OidcAuthenticator::builder().issuer(issuer).build()
}

#[cfg(not(feature = "oidc"))]
async fn provider_authenticator(_url: &str, _audience: &str) -> Result<JwtAuthenticator, String> {
    Err("this build has no OpenID support: run with `--features oidc`".to_owned())
}

fn app(auth: AuthLayer) -> Result<Router, portcullis::ConfigError> {
    // One table says who may do what; a route added without a row is refused (403).
    let admin = || require_scope("admin").and(any_role(["admin"]));
    let table = RouteTable::builder()
        .route(Method::GET, "/health", public())
        .route(Method::GET, "/me", authenticated())
        .route(Method::GET, "/items", require_scope("read:items"))
        .route(Method::POST, "/items", require_scope("write:items"))
        .route(Method::GET, "/items/{id}", require_scope("read:items"))
        .route(Method::DELETE, "/items/{id}", require_scope("admin"))
        .route(Method::GET, "/admin/audit", admin())
        .route(Method::GET, "/admin/routes", admin())
        .build()?;
    table.log_inventory();
    let inventory = Arc::new(table.inventory());
    Ok(Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/me", get(me))
        .route("/items", get(list_items).post(create_item))
        .route("/items/{id}", get(get_item).delete(delete_item))
        .route("/admin/audit", get(audit))
        .route(
            "/admin/routes",
            get(move || async move { Json(inventory.as_ref().clone()) }),
        )
        .fallback(|| async { Rejection::new(RejectionKind::NotFound) })
        .with_state(Items::seeded())
        // Authorization runs inside authentication, so it sees the caller; anonymous requests
        // pass authentication and are answered 401 by the table unless the route is public.
        .layer(RbacLayer::table(table))
        .layer(auth)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)))
}

async fn me(identity: Identity) -> Json<Value> {
    Json(json!({
        "subject": identity.subject(),
        "issuer": identity.issuer(),
        "method": identity.method(),
        "scopes": identity.scopes(),
        "roles": identity.roles(),
    }))
}

async fn list_items(State(items): State<Items>) -> Json<Value> {
    let guard = items.0.read().unwrap_or_else(|e| e.into_inner());
    let list: Vec<&Item> = guard.1.values().collect();
    Json(json!({ "items": list }))
}

async fn get_item(
    State(items): State<Items>,
    Path(id): Path<u64>,
) -> Result<Json<Item>, Rejection> {
    let guard = items.0.read().unwrap_or_else(|e| e.into_inner());
    guard
        .1
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| Rejection::new(RejectionKind::NotFound).with_detail("No item has this id."))
}

async fn create_item(
    State(items): State<Items>,
    body: Result<Json<NewItem>, JsonRejection>,
) -> Result<(StatusCode, Json<Item>), Rejection> {
    let Json(new) = body.map_err(json_rejection)?;
    let length = new.name.chars().count();
    if !(1..=100).contains(&length) || new.name.chars().any(char::is_control) {
        return Err(Rejection::new(RejectionKind::UnprocessableContent)
            .with_detail("`name` must be 1 to 100 characters without control characters."));
    }
    let item = items.insert(new.name).ok_or_else(|| {
        Rejection::new(RejectionKind::UnprocessableContent)
            .with_detail("The demo store is full (10000 items).")
    })?;
    Ok((StatusCode::CREATED, Json(item)))
}

/// Maps axum's JSON errors to problem+json without echoing what was sent.
fn json_rejection(rejection: JsonRejection) -> Rejection {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Rejection::new(RejectionKind::PayloadTooLarge),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => Rejection::new(RejectionKind::UnsupportedMediaType)
            .with_detail("Send the item as application/json."),
        StatusCode::UNPROCESSABLE_ENTITY => Rejection::new(RejectionKind::UnprocessableContent)
            .with_detail("The item must be an object with exactly one string field `name`."),
        _ => Rejection::new(RejectionKind::BadRequest).with_detail("The body is not valid JSON."),
    }
}

async fn delete_item(
    State(items): State<Items>,
    Path(id): Path<u64>,
) -> Result<StatusCode, Rejection> {
    let mut guard = items.0.write().unwrap_or_else(|e| e.into_inner());
    match guard.1.remove(&id) {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(Rejection::new(RejectionKind::NotFound).with_detail("No item has this id.")),
    }
}

/// Recent audit events. The AuditLayer does not exist yet, so there are none to show; the route
/// and its access rule (scope `admin` and role `admin`, in the table) are already in place.
async fn audit() -> Json<Value> {
    Json(json!({ "events": [], "audit_enabled": false }))
}

/// A development token for one of the demo roles, signed with the embedded dev key.
fn dev_token(role: &str) -> Option<String> {
    let (scope, roles) = match role {
        "reader" => ("read:items", vec!["reader"]),
        "writer" => ("read:items write:items", vec!["writer"]),
        "admin" => ("read:items write:items admin", vec!["admin"]),
        _ => return None,
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let claims = json!({
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "sub": format!("dev-{role}"),
        "scope": scope,
        "roles": roles,
        "iat": now,
        "exp": now + DEV_TOKEN_LIFETIME.as_secs(),
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(DEV_KID.to_owned());
    let key = EncodingKey::from_ec_pem(DEV_PRIVATE_KEY.as_bytes()).ok()?;
    jsonwebtoken::encode(&header, &claims, &key).ok()
}

fn print_welcome(bind: SocketAddr) {
    println!("portcullis demo listening on http://{bind}");
    println!(
        "WARNING: trusting the embedded DEVELOPMENT key; tokens below are for local use only."
    );
    println!();
    println!("  curl -i http://{bind}/health");
    for role in ["reader", "writer", "admin"] {
        if let Some(token) = dev_token(role) {
            println!();
            println!("  # as {role}");
            println!("  export {}_TOKEN={token}", role.to_uppercase());
        }
    }
    println!();
    println!("  curl -i -H \"Authorization: Bearer $READER_TOKEN\" http://{bind}/items");
    println!(
        "  curl -i -H \"Authorization: Bearer $WRITER_TOKEN\" -H 'Content-Type: application/json' \\\n       -d '{{\"name\":\"gate\"}}' http://{bind}/items"
    );
    println!("  curl -i -X DELETE -H \"Authorization: Bearer $ADMIN_TOKEN\" http://{bind}/items/1");
    println!("  curl -i -H \"Authorization: Bearer $ADMIN_TOKEN\" http://{bind}/admin/audit");
    println!("  curl -i -H \"Authorization: Bearer $ADMIN_TOKEN\" http://{bind}/admin/routes");
}
