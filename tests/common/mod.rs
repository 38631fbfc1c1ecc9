//! Shared helpers for the integration tests: keys, token minting (including deliberately broken
//! tokens) and a small app behind an `AuthLayer`.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

pub mod redis_server;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey};
use portcullis::auth::JwtKey;
use portcullis::{AuthLayer, Identity};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "items-api";
pub const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture exists")
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Standard valid claims for `sub`, expiring in an hour.
pub fn claims(sub: &str, scope: &str) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": sub,
        "scope": scope,
        "iat": now(),
        "exp": now() + 3600,
    })
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs exactly the given header and claims text (which may be hostile) with `key`.
pub fn sign_raw(header: &str, claims: &str, key: &EncodingKey, alg: Algorithm) -> String {
    let message = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("sign");
    format!("{message}.{signature}")
}

pub struct Signer {
    pub alg: Algorithm,
    pub kid: Option<&'static str>,
    pub key: EncodingKey,
}

impl Signer {
    pub fn es256() -> Self {
        Self {
            alg: Algorithm::ES256,
            kid: Some("es"),
            key: EncodingKey::from_ec_pem(&fixture("es256_private.pem")).unwrap(),
        }
    }
    pub fn es256_foreign() -> Self {
        Self {
            alg: Algorithm::ES256,
            kid: Some("es"),
            key: EncodingKey::from_ec_pem(&fixture("es256_other_private.pem")).unwrap(),
        }
    }
    pub fn rs256() -> Self {
        Self {
            alg: Algorithm::RS256,
            kid: Some("rs"),
            key: EncodingKey::from_rsa_pem(&fixture("rs256_private.pem")).unwrap(),
        }
    }
    pub fn eddsa() -> Self {
        Self {
            alg: Algorithm::EdDSA,
            kid: Some("ed"),
            key: EncodingKey::from_ed_pem(&fixture("ed25519_private.pem")).unwrap(),
        }
    }
    pub fn hs256() -> Self {
        Self {
            alg: Algorithm::HS256,
            kid: Some("hs"),
            key: EncodingKey::from_secret(HMAC_SECRET),
        }
    }

    pub fn header(&self) -> Value {
        let mut header = json!({ "alg": format!("{:?}", self.alg), "typ": "JWT" });
        if let Some(kid) = self.kid {
            header["kid"] = json!(kid);
        }
        header
    }

    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&self.header(), claims)
    }

    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        sign_raw(
            &header.to_string(),
            &claims.to_string(),
            &self.key,
            self.alg,
        )
    }
}

pub fn all_keys() -> Vec<JwtKey> {
    vec![
        JwtKey::ec_pem(&fixture("es256_public.pem"), Algorithm::ES256)
            .unwrap()
            .with_kid("es"),
        JwtKey::rsa_pem(&fixture("rs256_public.pem"), Algorithm::RS256)
            .unwrap()
            .with_kid("rs"),
        JwtKey::ed_pem(&fixture("ed25519_public.pem"))
            .unwrap()
            .with_kid("ed"),
        JwtKey::hmac(HMAC_SECRET, Algorithm::HS256)
            .unwrap()
            .with_kid("hs"),
    ]
}

/// Accepts `Signer::es256()` tokens for `ISSUER` and `AUDIENCE`.
pub fn es256_jwt() -> portcullis::auth::JwtAuthenticator {
    portcullis::auth::JwtAuthenticator::builder()
        .key(all_keys().remove(0))
        .issuer(ISSUER)
        .audience([AUDIENCE])
        .build()
        .unwrap()
}

/// Accepts `Signer::hs256()` tokens for `ISSUER` and `AUDIENCE`.
pub fn hs256_jwt() -> portcullis::auth::JwtAuthenticator {
    portcullis::auth::JwtAuthenticator::builder()
        .key(all_keys().remove(3))
        .issuer(ISSUER)
        .audience([AUDIENCE])
        .build()
        .unwrap()
}

/// The request events (not gaps, not alerts) an audit layer wrote to `recent`.
pub fn request_events(
    recent: &portcullis::audit::RecentEvents,
) -> Vec<portcullis::audit::AuditEvent> {
    recent
        .records()
        .into_iter()
        .filter_map(|record| match record.entry() {
            portcullis::audit::AuditEntry::Request(event) => Some(event.clone()),
            _ => None,
        })
        .collect()
}

/// `/me` answers the identity as JSON; `/public` answers "ok".
pub fn app(layer: AuthLayer) -> Router {
    Router::new()
        .route(
            "/me",
            get(|identity: Identity| async move {
                axum::Json(json!({
                    "sub": identity.subject(),
                    "method": identity.method(),
                    "scopes": identity.scopes(),
                    "roles": identity.roles(),
                    "api_key_id": identity.api_key_id(),
                }))
            }),
        )
        .route("/public", get(|| async { "ok" }))
        .layer(layer)
}

pub fn get_with(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

pub fn bearer(token: &str) -> Request<Body> {
    get_with("/me", &[("authorization", &format!("Bearer {token}"))])
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Value,
    pub text: String,
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response: Response<Body> = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

impl Answer {
    /// Asserts a problem+json rejection of this status and type, and returns `self`.
    #[track_caller]
    pub fn problem(&self, status: u16, kind: &str) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert_eq!(self.headers["content-type"], "application/problem+json");
        assert_eq!(self.body["type"], format!("urn:portcullis:problem:{kind}"));
        assert_eq!(self.body["status"], status);
        assert!(self.body["title"].is_string());
        assert!(self.body["detail"].is_string());
        self
    }

    pub fn www_authenticate(&self) -> Vec<String> {
        self.headers
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// Asserts that nothing of `secret` shows in the headers or body.
    #[track_caller]
    pub fn leaks_nothing_of(&self, secret: &str) -> &Self {
        assert!(!self.text.contains(secret), "body leaks: {}", self.text);
        for value in self.headers.values() {
            assert!(
                !value.to_str().unwrap_or("").contains(secret),
                "header leaks"
            );
        }
        self
    }
}

/// The real OpenID provider `scripts/test.sh` starts (`PORTCULLIS_TEST_OIDC_ISSUER`). Without
/// it the tests fail under CI (`CI=true`) and are skipped with a note when run by hand.
pub fn provider_url() -> Option<String> {
    match std::env::var("PORTCULLIS_TEST_OIDC_ISSUER") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PORTCULLIS_TEST_OIDC_ISSUER is not set: run the tests through scripts/test.sh")
        }
        _ => {
            eprintln!(
                "note: skipped, PORTCULLIS_TEST_OIDC_ISSUER is not set (scripts/test.sh starts the provider)"
            );
            None
        }
    }
}
