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
//!   `GET /admin/audit` needs scope `admin` and role `admin`.
//! - `POST /items` takes `{ name, sku, price, quantity, tags?, contact_email?, notes? }` (rules on
//!   [`NewItem`]), refuses unknown fields, and answers 201 with the stored item; failures are
//!   problem+json: 422 with an `errors` array, 400 for malformed JSON, 415 for another media type,
//!   413 over `MAX_BODY_BYTES` (default 65536; an invalid value stops start-up with a message).
//! - Scopes come from the space-separated `scope` claim, roles from `roles`.
//! - Without configuration it trusts the embedded DEVELOPMENT key below (ES256). Never deploy it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{EncodingKey, Header};
use portcullis::auth::{JwtAuthenticator, JwtKey};
use portcullis::{Algorithm, AuthLayer, Identity, Rejection, RejectionKind, Valid, ValidateLayer};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use validator::{Validate, ValidationError};

// DEVELOPMENT KEYS, published in this repository: anyone can mint tokens for them. They exist so
// the demo runs with no identity provider; a real deployment configures its own issuer.
const DEV_PRIVATE_KEY: &str = include_str!("dev_keys/es256_dev_private.pem");
const DEV_PUBLIC_KEY: &str = include_str!("dev_keys/es256_dev_public.pem");
const DEV_KID: &str = "portcullis-dev-es256";
const DEV_ISSUER: &str = "urn:portcullis:dev-issuer";
const DEV_AUDIENCE: &str = "portcullis-demo";
const DEV_TOKEN_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// The demo store never holds more than this many items, whatever clients send; with bodies of
/// at most 64 KiB by default it stays well under a gigabyte.
const MAX_ITEMS: usize = 10_000;
/// Default of `MAX_BODY_BYTES`, and the largest value it accepts.
const DEFAULT_MAX_BODY_BYTES: &str = "65536";
const MAX_BODY_BYTES_CEILING: usize = 16 * 1024 * 1024;

#[derive(Clone, Serialize)]
struct Item {
    id: u64,
    name: String,
    sku: String,
    price: f64,
    quantity: u32,
    tags: Vec<String>,
    contact_email: Option<String>,
    notes: Option<String>,
}

// A literal pattern, compiled on first use; it cannot fail on input.
static SKU: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[A-Z0-9-]{3,32}$").expect("a valid literal pattern"));

/// What `POST /items` accepts. Unknown fields are refused by `Valid<Json<_>>` itself (no
/// `deny_unknown_fields` needed), so a client cannot set `id` or anything added to `Item` later.
#[derive(Deserialize, Validate)]
struct NewItem {
    #[validate(
        length(min = 1, max = 100),
        custom(function = "portcullis::validate::safe_line")
    )]
    name: String,
    #[validate(regex(path = *SKU, message = "must be 3 to 32 of A-Z, 0-9 and '-'"))]
    sku: String,
    #[validate(
        range(min = 0.0, max = 1_000_000.0),
        custom(function = "portcullis::validate::finite")
    )]
    price: f64,
    #[validate(range(max = 10_000))]
    quantity: u32,
    #[validate(length(max = 10), custom(function = "valid_tags"))]
    tags: Option<Vec<String>>,
    #[validate(email, length(max = 254))]
    contact_email: Option<String>,
    #[validate(
        length(max = 1000),
        custom(function = "portcullis::validate::safe_text")
    )]
    notes: Option<String>,
}

/// Each tag is 1 to 32 characters on one line.
fn valid_tags(tags: &[String]) -> Result<(), ValidationError> {
    if tags.iter().all(|tag| {
        (1..=32).contains(&tag.chars().count()) && portcullis::validate::safe_line(tag).is_ok()
    }) {
        Ok(())
    } else {
        Err(ValidationError::new("tags")
            .with_message("every tag must be 1 to 32 characters on one line".into()))
    }
}

#[derive(Clone, Default)]
struct Items(Arc<RwLock<(u64, BTreeMap<u64, Item>)>>);

impl Items {
    fn seeded() -> Self {
        let items = Self::default();
        for (name, sku) in [("portcullis", "PC-001"), ("drawbridge", "DB-002")] {
            items.insert(NewItem {
                name: name.to_owned(),
                sku: sku.to_owned(),
                price: 100.0,
                quantity: 1,
                tags: None,
                contact_email: None,
                notes: None,
            });
        }
        items
    }

    fn insert(&self, new: NewItem) -> Option<Item> {
        let mut guard = self.0.write().unwrap_or_else(|e| e.into_inner());
        if guard.1.len() >= MAX_ITEMS {
            return None;
        }
        guard.0 += 1;
        let item = Item {
            id: guard.0,
            name: new.name,
            sku: new.sku,
            price: new.price,
            quantity: new.quantity,
            tags: new.tags.unwrap_or_default(),
            contact_email: new.contact_email,
            notes: new.notes,
        };
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
    if !bind.ip().is_loopback() {
        // Anyone can mint tokens for the published development key: never expose it.
        eprintln!(
            "BIND_ADDR: {bind} is not a loopback address, and the demo trusts its published \
             development key; bind to 127.0.0.1 or [::1]"
        );
        return ExitCode::from(2);
    }
    let max_body_bytes = match setting("MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, |v| {
        v.parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_BODY_BYTES_CEILING).contains(n))
    }) {
        Ok(bytes) => bytes,
        Err(message) => {
            eprintln!("{message} (a number of bytes from 1 to {MAX_BODY_BYTES_CEILING})");
            return ExitCode::from(2);
        }
    };
    let app = match app(max_body_bytes) {
        Ok(app) => app,
        Err(message) => {
            eprintln!("configuration error: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(bind).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("cannot listen on {bind}: {error}");
                return ExitCode::FAILURE;
            }
        };
        print_welcome(bind);
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

fn app(max_body_bytes: usize) -> Result<Router, portcullis::ConfigError> {
    let jwt = JwtAuthenticator::builder()
        .key(JwtKey::ec_pem(DEV_PUBLIC_KEY.as_bytes(), Algorithm::ES256)?.with_kid(DEV_KID))
        .issuer(DEV_ISSUER)
        .audience([DEV_AUDIENCE])
        .build()?;
    let items = Items::seeded();
    let protected = Router::new()
        .route("/me", get(me))
        .route("/items", get(list_items).post(create_item))
        .route("/items/{id}", get(get_item).delete(delete_item))
        .route("/admin/audit", get(audit))
        .route_layer(AuthLayer::required().with(jwt));
    Ok(Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .merge(protected)
        .fallback(|| async { Rejection::new(RejectionKind::NotFound) })
        // Outermost: unknown methods, oversized URIs or headers and bodies on GET, HEAD or DELETE
        // are refused before authentication even looks at the request.
        .layer(
            ValidateLayer::new()
                .deny_body_on([Method::GET, Method::HEAD, Method::DELETE])
                .max_body_bytes(max_body_bytes),
        )
        .with_state(items))
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

async fn list_items(
    identity: Identity,
    State(items): State<Items>,
) -> Result<Json<Value>, Rejection> {
    identity.require_scope("read:items")?;
    let guard = items.0.read().unwrap_or_else(|e| e.into_inner());
    let list: Vec<&Item> = guard.1.values().collect();
    Ok(Json(json!({ "items": list })))
}

async fn get_item(
    identity: Identity,
    State(items): State<Items>,
    Path(id): Path<u64>,
) -> Result<Json<Item>, Rejection> {
    identity.require_scope("read:items")?;
    let guard = items.0.read().unwrap_or_else(|e| e.into_inner());
    guard
        .1
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| Rejection::new(RejectionKind::NotFound).with_detail("No item has this id."))
}

async fn create_item(
    identity: Identity,
    State(items): State<Items>,
    request: Request,
) -> Result<(StatusCode, Json<Item>), Rejection> {
    // The scope first, the body second: a reader gets 403 and the server never parses a body
    // the caller may not send. (As a handler argument, the extractor would run before this line.)
    identity.require_scope("write:items")?;
    let Valid(Json(new)) = Valid::<Json<NewItem>>::from_request(request, &()).await?;
    let item = items.insert(new).ok_or_else(|| {
        Rejection::new(RejectionKind::UnprocessableContent)
            .with_detail("The demo store is full (10000 items).")
    })?;
    Ok((StatusCode::CREATED, Json(item)))
}

async fn delete_item(
    identity: Identity,
    State(items): State<Items>,
    Path(id): Path<u64>,
) -> Result<StatusCode, Rejection> {
    identity.require_scope("admin")?;
    let mut guard = items.0.write().unwrap_or_else(|e| e.into_inner());
    match guard.1.remove(&id) {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(Rejection::new(RejectionKind::NotFound).with_detail("No item has this id.")),
    }
}

/// Recent audit events. The AuditLayer does not exist yet, so there are none to show; the route
/// and its access rule are already in place.
async fn audit(identity: Identity) -> Result<Json<Value>, Rejection> {
    identity.require_scope("admin")?;
    if !identity.has_role("admin") {
        return Err(Rejection::new(RejectionKind::Forbidden)
            .with_reason("missing_role")
            .with_detail("This resource needs the admin role."));
    }
    Ok(Json(json!({ "events": [], "audit_enabled": false })))
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
        "  curl -i -H \"Authorization: Bearer $WRITER_TOKEN\" -H 'Content-Type: application/json' \\\n       -d '{{\"name\":\"gate\",\"sku\":\"GATE-1\",\"price\":9.5,\"quantity\":3}}' http://{bind}/items"
    );
    println!("  curl -i -X DELETE -H \"Authorization: Bearer $ADMIN_TOKEN\" http://{bind}/items/1");
    println!("  curl -i -H \"Authorization: Bearer $ADMIN_TOKEN\" http://{bind}/admin/audit");
}
