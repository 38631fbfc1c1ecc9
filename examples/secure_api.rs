//! A small items API behind portcullis: the demo the README starts with.
//!
//! ```text
//! cargo run --example secure_api                      # serve on 127.0.0.1:3000, print curl commands
//! cargo run --example secure_api -- token reader      # print a token (reader | writer | admin) and exit
//! REDIS_URL=redis://127.0.0.1:6379/ cargo run --example secure_api --features redis  # shared limits
//! ```
//!
//! Contract (scripts depend on it; extend, never break):
//! - `BIND_ADDR` (default `127.0.0.1:3000`); an invalid value stops start-up with a message, and
//!   so does a non-loopback address while the development key is trusted.
//! - `GET /health` is public; `GET /me` returns the caller's subject, scopes and roles;
//!   `GET /items` and `GET /items/{id}` need scope `read:items`; `POST /items` needs
//!   `write:items` and answers 201; `DELETE /items/{id}` needs scope `admin`;
//!   `GET /admin/audit` needs scope `admin` and role `admin`; so does `GET /admin/routes`, the
//!   route inventory (every route, its methods and policy, and whether it is public), and
//!   `POST /admin/revocations`, which revokes a token by its `jti`:
//!   `{ "jti": "...", "iss"?: "...", "expires_at"?: <Unix seconds> }` (the issuer defaults to
//!   the trusted one, the expiry to the longest token lifetime, 8 h) and answers 201
//!   `{ "revoked", "issuer", "shared" }`, or an API key by its id: `{ "api_key_id": "..." }`,
//!   201 `{ "revoked_api_key", "shared" }`; with `REDIS_URL` (one node) the revocation reaches
//!   every demo process pointed at the same Redis and prefix, else this process alone. Tokens
//!   the demo mints carry a random `jti`.
//! - `POST /items` takes `{ name, sku, price, quantity, tags?, contact_email?, notes?,
//!   owner_email?, card_number? }` (rules on
//!   [`NewItem`]), refuses unknown fields, and answers 201 with the stored item; failures are
//!   problem+json: 422 with an `errors` array, 400 for malformed JSON, 415 for another media type,
//!   413 over `MAX_BODY_BYTES` (default 65536; an invalid value stops start-up with a message).
//! - Responses are redacted: readers see e-mail addresses as `[REDACTED]`, everyone sees card
//!   numbers as `****` and their last four digits; writers and admins see e-mail addresses.
//! - Scopes come from the space-separated `scope` claim, roles from `roles`.
//! - Without configuration it trusts the embedded DEVELOPMENT key below (ES256), and one
//!   DEVELOPMENT API key (`X-Api-Key: pcl_dev_ci_key_DEVELOPMENT_ONLY_do_not_deploy`, id
//!   `dev-ci`, scope `read:items`). Never deploy them.
//! - `RATE_LIMIT_PER_SECOND` (default 20) and `RATE_LIMIT_BURST` (default 40) limit each client
//!   address across the whole API; 5 failed logins in 15 minutes lock an address out (429).
//! - `OIDC_ISSUER_URL` set: it trusts that OpenID provider instead (discovery, JWKS rotation),
//!   with audience `API_AUDIENCE` (default `portcullis-demo`): RS256 and ES256 RFC 9068 access
//!   tokens only (`typ` `at+jwt`), a plain `http://` issuer only on a loopback address. An invalid
//!   value or an unreachable provider stops start-up with a message (needs `--features oidc`).
//!   The dev keys are then not trusted, so a non-loopback `BIND_ADDR` is allowed.
//! - `REDIS_URL` set (`redis://host:port/`, or a comma-separated seed list of Redis Cluster
//!   nodes): the per-client limit and the lockout are kept in Redis, shared by every demo
//!   process pointed at it, under the key prefix `REDIS_PREFIX` (default `portcullis-demo`).
//!   `REDIS_ON_FAILURE` says what happens while Redis does not answer: `local` (default: each
//!   process limits alone), `open` (let requests through) or `closed` (429); an outage is logged
//!   once when it starts and once when it ends. A Redis that does not answer at start-up stops
//!   start-up with a message (needs `--features redis`). Unset, both stay in memory.
//!   `REDIS_BATCH` (default 1, at most 10000) lets each process take that many requests' worth
//!   of a client's budget from Redis at once and spend it without a round trip
//!   (`RedisBackend::batch`): faster, with the budget shared a batch at a time.
//! - Every request, refused or not, is audited: one hash-chained JSON line per request (and per
//!   security alert) on standard output (logs go to standard error), and appended to the file
//!   named by `AUDIT_LOG_FILE` when set (an unopenable file stops start-up with a message).
//!   `GET /admin/audit` answers `{ "events": [...], "audit_enabled": true }` with the 100 most
//!   recent records, oldest first. The chain is keyed with `AUDIT_HMAC_KEY` (at least 32
//!   bytes), else with a published DEVELOPMENT key; check a file with
//!   `cargo run --example audit_verify -- --dev-key FILE` (or with `AUDIT_HMAC_KEY` set).
//!   `AUDIT_REPLICA_ID` (1 to 64 of `A-Z a-z 0-9 - _ . :`) names this process in every record,
//!   so the files of several demo processes, or their merged stream, verify replica by replica. Every response carries `X-Request-Id` (the
//!   caller's when it is a safe id, else a generated one). On Ctrl-C or SIGTERM the server
//!   drains and the audit trail is flushed before exit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{EncodingKey, Header};
use portcullis::audit::{AuditKey, AuditLayer, JsonLines, JsonLinesFile, RecentEvents};
use portcullis::auth::{
    ApiKeyAuthenticator, ApiKeyDenyList, ApiKeyGrant, ApiKeyHash, InMemoryDenyList,
    InMemoryKeyStore, JtiDenyList, JwtAuthenticator, JwtKey,
};
#[cfg(feature = "oidc")]
use portcullis::oidc::{Issuer, OidcAuthenticator};
use portcullis::rate_limit::{KeyBy, LockoutLayer, Quota, RateLimitLayer};
use portcullis::rbac::{RbacLayer, RouteTable, any_role, authenticated, public, require_scope};
use portcullis::redact::{Email, RedactLayer, Rule};
use portcullis::{
    Algorithm, AuthLayer, Identity, Portcullis, Rejection, RejectionKind, Valid, ValidateLayer,
};
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
/// The published development audit key, used when `AUDIT_HMAC_KEY` is unset. Anyone can forge
/// a chain under it: set your own key for anything but a demo.
const DEV_AUDIT_KEY: &str = "portcullis-DEVELOPMENT-audit-key-do-not-deploy";
const DEV_TOKEN_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// A DEVELOPMENT API key (id `dev-ci`, scope `read:items`), published here like the keys above,
/// trusted only with them: it shows API keys and their revocation.
const DEV_API_KEY: &str = "pcl_dev_ci_key_DEVELOPMENT_ONLY_do_not_deploy";
const DEV_API_KEY_ID: &str = "dev-ci";

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
    /// Masked by the `RedactLayer` for readers (e-mail detector).
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_email: Option<String>,
    /// Masked to its last four digits for everyone (card detector and field name).
    #[serde(skip_serializing_if = "Option::is_none")]
    card_number: Option<String>,
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
    #[validate(email, length(max = 254))]
    owner_email: Option<String>,
    #[validate(custom(function = "valid_card"))]
    card_number: Option<String>,
}

/// 13 to 19 digits, optionally grouped by spaces or dashes, passing the Luhn check.
fn valid_card(card: &str) -> Result<(), ValidationError> {
    let digits: Vec<u32> = card.chars().filter_map(|c| c.to_digit(10)).collect();
    let only_digits_and_separators = card
        .chars()
        .all(|c| c.is_ascii_digit() || c == ' ' || c == '-');
    let luhn: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    if card.len() <= 23
        && only_digits_and_separators
        && (13..=19).contains(&digits.len())
        && luhn.is_multiple_of(10)
    {
        Ok(())
    } else {
        Err(ValidationError::new("card_number")
            .with_message("must be a payment card number (13 to 19 digits, Luhn-checked)".into()))
    }
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
        let seeds = [
            (
                "portcullis",
                "PC-001",
                "keeper@castle.example",
                "4111 1111 1111 1111",
            ),
            (
                "drawbridge",
                "DB-002",
                "warden@castle.example",
                "5500 0000 0000 0004",
            ),
        ];
        for (name, sku, owner, card) in seeds {
            items.insert(NewItem {
                name: name.to_owned(),
                sku: sku.to_owned(),
                price: 100.0,
                quantity: 1,
                tags: None,
                contact_email: None,
                notes: None,
                owner_email: Some(owner.to_owned()),
                card_number: Some(card.to_owned()),
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
            owner_email: new.owner_email,
            card_number: new.card_number,
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
        // Standard output carries the audit trail, one JSON line per record.
        .with_writer(std::io::stderr)
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
    let limits = match Limits::from_env() {
        Ok(limits) => limits,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let redis = match RedisSettings::from_env() {
        Ok(redis) => redis,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
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
    let recent = RecentEvents::new(100);
    let audit = match audit_layer(recent.clone()) {
        Ok(audit) => audit,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let audit_trail = audit.handle();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let revocations = match redis.revocations().await {
            Ok(revocations) => revocations,
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::from(2);
            }
        };
        let trusted_issuer = provider.clone().unwrap_or_else(|| DEV_ISSUER.to_owned());
        let layer = match &provider {
            None => match dev_authenticator(revocations.clone()) {
                Ok(jwt) => AuthLayer::optional()
                    .with(jwt)
                    .with(dev_api_keys(revocations.clone())),
                Err(error) => {
                    eprintln!("configuration error: {error}");
                    return ExitCode::from(2);
                }
            },
            Some(url) => match provider_authenticator(url, &audience, revocations.clone()).await {
                Ok(oidc) => AuthLayer::optional().with(oidc),
                Err(error) => {
                    eprintln!("OIDC_ISSUER_URL: {error}");
                    return ExitCode::from(2);
                }
            },
        };
        let shared = match redis.connect().await {
            Ok(shared) => shared,
            Err(message) => {
                eprintln!("{message}");
                return ExitCode::from(2);
            }
        };
        let admin = Admin {
            recent,
            revocations,
            issuer: trusted_issuer.into(),
        };
        let app = match app(layer, audit, admin, &limits, max_body_bytes, shared) {
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
        if let Some(url) = &redis.url {
            println!(
                "per-client limits and lockouts shared through Redis at {} (prefix {:?})",
                without_password(url),
                redis.prefix
            );
        }
        match &provider {
            None => print_welcome(bind),
            Some(url) => println!(
                "portcullis demo listening on http://{bind}, trusting {url} for audience {audience:?}"
            ),
        }
        // Connect info gives the rate limiter, the lockout and the audit each client's address.
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown_signal())
            .await;
        // Every request has been answered: write and flush every audit record before exiting.
        if tokio::time::timeout(Duration::from_secs(10), audit_trail.shutdown())
            .await
            .is_err()
        {
            eprintln!("the audit trail did not flush within 10 s: a sink is stuck");
        }
        match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("server error: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Ctrl-C, or SIGTERM (what `kill` and container runtimes send).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// The audit trail: JSON lines on standard output, the recent records in memory for
/// `/admin/audit`, and the file named by `AUDIT_LOG_FILE` when set.
fn audit_layer(recent: RecentEvents) -> Result<AuditLayer, String> {
    let key = match optional_setting("AUDIT_HMAC_KEY")? {
        Some(key) => AuditKey::new(key).map_err(|e| format!("AUDIT_HMAC_KEY: {e}"))?,
        None => {
            eprintln!(
                "WARNING: AUDIT_HMAC_KEY is unset; the audit chain uses the published development key"
            );
            AuditKey::new(DEV_AUDIT_KEY).map_err(|e| e.to_string())?
        }
    };
    let mut audit = AuditLayer::builder(key)
        .sink(JsonLines::stdout())
        .sink(recent);
    if let Some(path) = optional_setting("AUDIT_LOG_FILE")? {
        let file = JsonLinesFile::builder(&path)
            .open()
            .map_err(|e| format!("AUDIT_LOG_FILE: cannot open {path:?}: {e}"))?;
        audit = audit.sink(file);
    }
    if let Some(replica) = optional_setting("AUDIT_REPLICA_ID")? {
        audit = audit.replica(replica);
    }
    audit.build().map_err(|e| format!("AUDIT_REPLICA_ID: {e}"))
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

/// The development API key, refused once revoked (on every demo process sharing the Redis).
fn dev_api_keys(revocations: Revocations) -> ApiKeyAuthenticator {
    let store = InMemoryKeyStore::new();
    store.insert_hash(
        ApiKeyHash::of(DEV_API_KEY),
        ApiKeyGrant::new(DEV_API_KEY_ID, "dev-ci").scopes(["read:items"]),
    );
    ApiKeyAuthenticator::new(store).deny_list(revocations)
}

fn dev_authenticator(
    revocations: Revocations,
) -> Result<JwtAuthenticator, portcullis::ConfigError> {
    JwtAuthenticator::builder()
        .key(JwtKey::ec_pem(DEV_PUBLIC_KEY.as_bytes(), Algorithm::ES256)?.with_kid(DEV_KID))
        .issuer(DEV_ISSUER)
        .audience([DEV_AUDIENCE])
        .deny_list(revocations)
        .build()
}

/// The provider named by `OIDC_ISSUER_URL`: RS256/ES256 RFC 9068 access tokens for `audience`.
#[cfg(feature = "oidc")]
async fn provider_authenticator(
    url: &str,
    audience: &str,
    revocations: Revocations,
) -> Result<OidcAuthenticator, portcullis::ConfigError> {
    let issuer = Issuer::builder(url)
        .audience([audience])
        .algorithms([Algorithm::RS256, Algorithm::ES256])
        .typ(["at+jwt", "application/at+jwt"])
        // http:// is accepted only when the issuer's host is a loopback address.
        .allow_http_on_loopback()
        .build()
        .await?;
    OidcAuthenticator::builder()
        .issuer(issuer)
        .deny_list(revocations)
        .build()
}

#[cfg(not(feature = "oidc"))]
async fn provider_authenticator(
    _url: &str,
    _audience: &str,
    _revocations: Revocations,
) -> Result<JwtAuthenticator, String> {
    Err("this build has no OpenID support: run with `--features oidc`".to_owned())
}

/// Where the per-client limit and the lockout keep their counts when several demo processes
/// share them (`REDIS_URL`, `REDIS_PREFIX`, `REDIS_ON_FAILURE`, `REDIS_BATCH`).
struct RedisSettings {
    url: Option<String>,
    prefix: String,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    on_failure: String,
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    batch: u32,
}

/// The shared backend, when there is one.
#[cfg(feature = "redis")]
type Shared = Option<portcullis::rate_limit::RedisBackend>;
#[cfg(not(feature = "redis"))]
type Shared = Option<std::convert::Infallible>;

impl RedisSettings {
    fn from_env() -> Result<Self, String> {
        let on_failure = setting("REDIS_ON_FAILURE", "local", |v| {
            matches!(v, "local" | "open" | "closed").then(|| v.to_owned())
        })?;
        let prefix = setting("REDIS_PREFIX", "portcullis-demo", |v| {
            (!v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
            .then(|| v.to_owned())
        })?;
        let batch = setting("REDIS_BATCH", "1", |v| {
            v.parse::<u32>().ok().filter(|n| (1..=10_000).contains(n))
        })?;
        Ok(Self {
            url: optional_setting("REDIS_URL")?,
            prefix,
            on_failure,
            batch,
        })
    }

    /// Connects and checks that Redis answers, so that a wrong address stops start-up.
    async fn connect(&self) -> Result<Shared, String> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        #[cfg(feature = "redis")]
        {
            use portcullis::rate_limit::{RedisBackend, RedisFailure};
            let nodes: Vec<&str> = url.split(',').map(str::trim).collect();
            let backend = if nodes.len() > 1 {
                RedisBackend::connect_cluster(nodes).await
            } else {
                RedisBackend::connect(url).await
            }
            .map_err(|error| format!("REDIS_URL: {error}"))?;
            backend
                .ping(Duration::from_secs(2))
                .await
                .map_err(|error| format!("REDIS_URL: {}: {error}", without_password(url)))?;
            let policy = match self.on_failure.as_str() {
                "open" => RedisFailure::FailOpen,
                "closed" => RedisFailure::FailClosed,
                _ => RedisFailure::FallbackToLocal,
            };
            Ok(Some(
                backend
                    .prefix(&self.prefix)
                    .on_failure(policy)
                    .batch(self.batch),
            ))
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = url;
            Err(
                "REDIS_URL: this build has no Redis support: run with `--features redis`"
                    .to_owned(),
            )
        }
    }
}

/// A Redis URL as it may be shown: without the user name and password it may carry (on
/// standard output, which is also the audit stream, and in error messages).
fn without_password(url: &str) -> String {
    url.split(',')
        .map(|node| match (node.split_once("://"), node.rfind('@')) {
            (Some((scheme, _)), Some(at)) => format!("{scheme}://{}", &node[at + 1..]),
            _ => node.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Revoked tokens: in this process, or shared through Redis by every demo process.
#[derive(Clone)]
enum Revocations {
    Local(Arc<InMemoryDenyList>),
    #[cfg(feature = "redis")]
    Shared(portcullis::auth::RedisDenyList),
}

impl JtiDenyList for Revocations {
    fn is_denied(&self, issuer: Option<&str>, jti: &str) -> bool {
        match self {
            Self::Local(list) => list.is_denied(issuer, jti),
            #[cfg(feature = "redis")]
            Self::Shared(list) => list.is_denied(issuer, jti),
        }
    }
}

/// API keys are revoked under an issuer no token names.
const API_KEY_ISSUER: &str = "urn:portcullis:demo:api-key";

impl ApiKeyDenyList for Revocations {
    fn is_revoked(&self, id: &str) -> bool {
        match self {
            Self::Local(list) => list.is_denied(Some(API_KEY_ISSUER), id),
            #[cfg(feature = "redis")]
            Self::Shared(list) => ApiKeyDenyList::is_revoked(list, id),
        }
    }
}

impl Revocations {
    /// Revokes an API key by id; as [`revoke`](Self::revoke).
    async fn revoke_api_key(&self, id: &str) -> Result<bool, String> {
        match self {
            Self::Local(list) => list
                .deny(
                    Some(API_KEY_ISSUER),
                    id,
                    SystemTime::now() + Duration::from_secs(365 * 24 * 3600),
                )
                .then_some(false)
                .ok_or_else(|| "the revocation list is full".to_owned()),
            #[cfg(feature = "redis")]
            Self::Shared(list) => match list.revoke_api_key(id).await {
                Ok(()) => Ok(true),
                Err(portcullis::auth::RevokeError::NotShared(why)) => {
                    tracing::warn!(%why, "revocation not shared yet");
                    Ok(false)
                }
                Err(error) => Err(error.to_string()),
            },
        }
    }

    /// Revokes the token; `Ok(true)` when every demo process on the same Redis refuses it too,
    /// `Ok(false)` when this one does (for now); an error when the list is full.
    async fn revoke(&self, issuer: &str, jti: &str, until: SystemTime) -> Result<bool, String> {
        match self {
            Self::Local(list) => list
                .deny(Some(issuer), jti, until)
                .then_some(false)
                .ok_or_else(|| "the revocation list is full".to_owned()),
            #[cfg(feature = "redis")]
            Self::Shared(list) => match list.deny(Some(issuer), jti, until).await {
                Ok(()) => Ok(true),
                Err(portcullis::auth::RevokeError::NotShared(why)) => {
                    tracing::warn!(%why, "revocation not shared yet");
                    Ok(false)
                }
                Err(error) => Err(error.to_string()),
            },
        }
    }
}

impl RedisSettings {
    /// The revocation list: shared through Redis when `REDIS_URL` names one node (a Redis
    /// Cluster keeps the limits, not the revocations), in memory otherwise.
    async fn revocations(&self) -> Result<Revocations, String> {
        let local = || Revocations::Local(Arc::new(InMemoryDenyList::new(100_000)));
        let Some(url) = &self.url else {
            return Ok(local());
        };
        if url.contains(',') {
            eprintln!(
                "note: revocations stay in each process with a Redis Cluster; give one node to \
                 share them"
            );
            return Ok(local());
        }
        #[cfg(feature = "redis")]
        {
            portcullis::auth::RedisDenyList::builder(url.as_str())
                .prefix(&self.prefix)
                .build()
                .await
                .map(Revocations::Shared)
                .map_err(|error| format!("REDIS_URL: {}: {error}", without_password(url)))
        }
        #[cfg(not(feature = "redis"))]
        {
            Err(
                "REDIS_URL: this build has no Redis support: run with `--features redis`"
                    .to_owned(),
            )
        }
    }
}

/// `POST /admin/revocations`: which token to revoke.
#[derive(Deserialize, Validate)]
struct Revocation {
    #[validate(length(min = 1, max = 256))]
    jti: Option<String>,
    #[validate(length(min = 1, max = 256))]
    api_key_id: Option<String>,
    #[validate(length(min = 1, max = 512))]
    iss: Option<String>,
    /// Unix seconds; by default the longest lifetime a token can have.
    expires_at: Option<u64>,
}

async fn revoke(
    revocations: Revocations,
    trusted_issuer: Arc<str>,
    revocation: Revocation,
) -> Result<(StatusCode, Json<Value>), Rejection> {
    let now = SystemTime::now();
    // Never longer than a week: the list is bounded, and no token lives that long here.
    let until = revocation
        .expires_at
        .and_then(|at| UNIX_EPOCH.checked_add(Duration::from_secs(at)))
        .unwrap_or(now + DEV_TOKEN_LIFETIME)
        .min(now + Duration::from_secs(7 * 24 * 3600));
    let issuer = revocation.iss.as_deref().unwrap_or(&trusted_issuer);
    let (revoked, outcome) = match (&revocation.jti, &revocation.api_key_id) {
        (Some(jti), None) => (
            json!({ "revoked": jti, "issuer": issuer }),
            revocations.revoke(issuer, jti, until).await,
        ),
        (None, Some(id)) => (
            json!({ "revoked_api_key": id }),
            revocations.revoke_api_key(id).await,
        ),
        _ => {
            return Err(Rejection::new(RejectionKind::UnprocessableContent)
                .with_detail("Name exactly one of `jti` and `api_key_id`."));
        }
    };
    match outcome {
        Ok(shared) => {
            let mut body = revoked;
            body["shared"] = json!(shared);
            Ok((StatusCode::CREATED, Json(body)))
        }
        Err(message) => {
            tracing::error!(%message, "revocation refused");
            Err(Rejection::new(RejectionKind::Internal)
                .with_detail("The revocation list is full: the token is not revoked."))
        }
    }
}

/// Per-client limits for the whole API (`RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`).
struct Limits {
    per_second: u32,
    burst: u32,
}

impl Limits {
    fn from_env() -> Result<Self, String> {
        let positive = |v: &str| v.parse::<u32>().ok().filter(|n| *n > 0);
        Ok(Self {
            per_second: setting("RATE_LIMIT_PER_SECOND", "20", positive)?,
            burst: setting("RATE_LIMIT_BURST", "40", positive)?,
        })
    }
}

/// What the admin routes work with.
struct Admin {
    recent: RecentEvents,
    revocations: Revocations,
    /// The issuer a revocation names when it names none.
    issuer: Arc<str>,
}

fn app(
    auth: AuthLayer,
    audit: AuditLayer,
    admin_state: Admin,
    limits: &Limits,
    max_body_bytes: usize,
    shared: Shared,
) -> Result<Router, portcullis::ConfigError> {
    // One table says who may do what; a route added without a row is refused (403).
    let admin = || require_scope("admin").and(any_role(["admin"]));
    let Admin {
        recent,
        revocations,
        issuer,
    } = admin_state;
    let table = RouteTable::builder()
        .route(Method::GET, "/health", public())
        .route(Method::GET, "/me", authenticated())
        .route(Method::GET, "/items", require_scope("read:items"))
        .route(Method::POST, "/items", require_scope("write:items"))
        .route(Method::GET, "/items/{id}", require_scope("read:items"))
        .route(Method::DELETE, "/items/{id}", require_scope("admin"))
        .route(Method::GET, "/admin/audit", admin())
        .route(Method::GET, "/admin/routes", admin())
        .route(Method::POST, "/admin/revocations", admin())
        .build()?;
    table.log_inventory();
    let inventory = Arc::new(table.inventory());
    Ok(Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/me", get(me))
        .route("/items", get(list_items).post(create_item))
        .route("/items/{id}", get(get_item).delete(delete_item))
        .route("/admin/audit", get(move || recent_audit(recent.clone())))
        .route(
            "/admin/revocations",
            post(move |Valid(Json(revocation)): Valid<Json<Revocation>>| {
                revoke(revocations.clone(), issuer.clone(), revocation)
            }),
        )
        .route(
            "/admin/routes",
            get(move || async move { Json(inventory.as_ref().clone()) }),
        )
        .with_state(Items::seeded())
        .layer(security_stack(
            auth,
            audit,
            table,
            limits,
            max_body_bytes,
            shared,
        )?))
}

/// Every layer, in the recommended order (`Portcullis::builder()` does the ordering):
/// audit (outermost: every request is recorded, whichever layer refuses it) → per-client rate
/// limit and lockout (floods and guessing are throttled before anything costly) → validation
/// (unknown methods, oversized URIs or headers, bodies on GET, HEAD or DELETE) → authentication
/// → the route table (anonymous requests pass authentication and are answered 401 unless the
/// route is public; unknown paths get its 404) → redaction (innermost, so it sees the caller).
fn security_stack(
    auth: AuthLayer,
    audit: AuditLayer,
    table: RouteTable,
    limits: &Limits,
    max_body_bytes: usize,
    shared: Shared,
) -> Result<Portcullis, portcullis::ConfigError> {
    let per_client = Quota::per_second(limits.per_second).burst(limits.burst);
    let per_client = RateLimitLayer::builder(KeyBy::ClientIp, per_client).name("per-client");
    let lockout = LockoutLayer::builder();
    // With Redis, every demo process pointed at it counts against the same budgets.
    #[cfg(feature = "redis")]
    let (per_client, lockout) = match shared {
        Some(redis) => (per_client.redis(redis.clone()), lockout.redis(redis)),
        None => (per_client, lockout),
    };
    #[cfg(not(feature = "redis"))]
    let _ = shared;
    Portcullis::builder()
        .audit(audit)
        // Every client gets the same budget for the whole API.
        .rate_limit_per_ip(per_client.build()?)
        // Repeated bad credentials from one address lock it out for a while (429).
        .lockout(lockout.build()?)
        .validate(
            ValidateLayer::builder()
                .deny_body_on([Method::GET, Method::HEAD, Method::DELETE])
                .max_body_bytes(max_body_bytes)
                .build()?,
        )
        .auth(auth)
        .rbac(RbacLayer::table(table))
        // E-mail addresses are masked except for writers and admins (who manage items), card
        // numbers keep their last four digits for everyone, passwords, tokens and other secrets
        // never leave. Put a CompressionLayer outside the whole stack.
        .redact(RedactLayer::new().rule(Rule::detector(Email).except_roles(["writer", "admin"])))
        .build()
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
    // The route table has already checked `write:items` before the body is read.
    Valid(Json(new)): Valid<Json<NewItem>>,
) -> Result<(StatusCode, Json<Item>), Rejection> {
    let item = items.insert(new).ok_or_else(|| {
        Rejection::new(RejectionKind::UnprocessableContent)
            .with_detail("The demo store is full (10000 items).")
    })?;
    Ok((StatusCode::CREATED, Json(item)))
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

/// The most recent audit records (requests and alerts), oldest first, as they were sealed.
async fn recent_audit(recent: RecentEvents) -> Json<Value> {
    let events: Vec<Value> = recent
        .records()
        .iter()
        .filter_map(|record| serde_json::from_str(record.json()).ok())
        .collect();
    Json(json!({ "events": events, "audit_enabled": true }))
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
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).ok()?;
    let jti: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let claims = json!({
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "jti": jti,
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
        "  curl -i -H 'X-Api-Key: {DEV_API_KEY}' http://{bind}/items   # the development API key"
    );
    println!(
        "  curl -i -H \"Authorization: Bearer $WRITER_TOKEN\" -H 'Content-Type: application/json' \\\n       -d '{{\"name\":\"gate\",\"sku\":\"GATE-1\",\"price\":9.5,\"quantity\":3}}' http://{bind}/items"
    );
    println!("  curl -i -X DELETE -H \"Authorization: Bearer $ADMIN_TOKEN\" http://{bind}/items/1");
    println!("  curl -i -H \"Authorization: Bearer $ADMIN_TOKEN\" http://{bind}/admin/audit");
    println!("  curl -i -H \"Authorization: Bearer $ADMIN_TOKEN\" http://{bind}/admin/routes");
}
