//! Arbitrary bytes as the claims of a correctly signed token (HS256), so they get past the
//! signature and reach the claim checks and the claim mapping, configured as the identity-provider
//! presets configure them: roles from values, object keys and a prefixed JSON Pointer; client and
//! tenant claims; a required claim; a client allowlist. Every answer must be an identity within
//! the mapping's bounds or a 401; nothing may panic, and the work must stay linear (the slow-unit
//! limit of `scripts/fuzz.sh`).
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use libfuzzer_sys::fuzz_target;
use portcullis::auth::{JwtAuthenticator, JwtKey};
use portcullis::{Algorithm, ClaimMapping, ClaimSource};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-fuzz-secret";

static JWT: LazyLock<JwtAuthenticator> = LazyLock::new(|| {
    JwtAuthenticator::builder()
        .key(
            JwtKey::hmac(SECRET, Algorithm::HS256)
                .expect("a long secret")
                .with_kid("k"),
        )
        .issuer("https://issuer.fuzz")
        .audience(["fuzz"])
        .max_token_bytes(64 * 1024)
        // Every input verified afresh, never answered from the cache.
        .cache_max_bytes(0)
        .claim_mapping(
            ClaimMapping::default()
                .roles_from([
                    ClaimSource::path("roles"),
                    ClaimSource::path("/realm_access/roles"),
                    ClaimSource::keys("urn:zitadel:iam:org:project:1:roles"),
                    ClaimSource::path("/resource_access/items~1api/roles").prefixed("items/api:"),
                ])
                .scopes_from(["scope", "scp", "permissions"])
                .client_from(["azp", "appid", "client_id"])
                .tenant_from(["tid", "/org/id"]),
        )
        .require_claim("typ", ["Bearer"])
        .clients(["web"])
        .build()
        .expect("a valid configuration")
});

static KEY: LazyLock<EncodingKey> = LazyLock::new(|| EncodingKey::from_secret(SECRET));

fuzz_target!(|claims: &[u8]| {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"k"}"#);
    let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &KEY, Algorithm::HS256)
        .expect("HMAC signs anything");
    match JWT.verify(&format!("{message}.{signature}")) {
        Ok(identity) => {
            assert!(identity.roles().len() <= 256 && identity.scopes().len() <= 256);
            assert!(identity.roles().iter().all(|role| !role.is_empty()));
            assert_eq!(identity.client_id(), Some("web"));
        }
        Err(rejection) => assert_eq!(rejection.status(), 401),
    }
});
