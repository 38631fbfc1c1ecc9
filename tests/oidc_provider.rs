//! End to end against a real OpenID provider (panva/oidc-provider, started by `scripts/test.sh`
//! from `tests/oidc-provider/`): real tokens over HTTP, key rotation at the provider, the provider
//! stopped, introspection of active and revoked opaque tokens.
//!
//! The provider's URL comes in `PORTCULLIS_TEST_OIDC_ISSUER`. Without it the tests fail under CI
//! (`CI=true`) and are skipped with a note when run by hand.
#![cfg(feature = "oidc")]

mod common;

use std::time::Duration;

use common::*;
use portcullis::AuthLayer;
use portcullis::oidc::{Introspector, Issuer, OidcAuthenticator};
use serde_json::{Value, json};

const API: &str = "urn:portcullis:test-api";
const OTHER_API: &str = "urn:portcullis:other-api";
const OPAQUE_API: &str = "urn:portcullis:opaque-api";
const SECRET: &str = "portcullis-test-secret-0123456789abcdef";

/// The provider is shared: tests that rotate keys or stop it must not overlap with the others.
static PROVIDER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// A client-credentials access token for `resource` from `client`.
async fn token(base: &str, client: &str, resource: &str) -> String {
    let response: Value = http()
        .post(format!("{base}/token"))
        .basic_auth(client, Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&scope=read%3Aitems%20write%3Aitems&resource={}",
            resource.replace(':', "%3A")
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    response["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {response}"))
        .to_owned()
}

async fn issuer(base: &str) -> Issuer {
    Issuer::builder(base)
        .audience([API])
        .typ(["at+jwt"])
        .refresh_cooldown(Duration::ZERO)
        .allow_http_on_loopback()
        .build()
        .await
        .unwrap()
}

fn kid_of(token: &str) -> String {
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn oidc_app(issuer: Issuer) -> axum::Router {
    app(AuthLayer::required().with(OidcAuthenticator::builder().issuer(issuer).build().unwrap()))
}

#[tokio::test]
async fn real_tokens_accepted_and_bad_ones_refused() {
    let Some(base) = provider_url() else { return };
    let _lock = PROVIDER.lock().await;
    let app = oidc_app(issuer(&base).await);

    for client in ["portcullis-test", "portcullis-es256"] {
        let answer = send(&app, bearer(&token(&base, client, API).await)).await;
        assert_eq!(answer.status, 200, "{client}: {}", answer.text);
        assert_eq!(answer.body["sub"], client);
        assert_eq!(answer.body["scopes"], json!(["read:items", "write:items"]));
    }
    // Minted by the same provider for another API.
    send(
        &app,
        bearer(&token(&base, "portcullis-test", OTHER_API).await),
    )
    .await
    .problem(401, "invalid-token");
    // Tampered: another subject in a correctly signed token's payload.
    let good = token(&base, "portcullis-test", API).await;
    let mut parts: Vec<&str> = good.split('.').collect();
    let mut claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap(),
    )
    .unwrap();
    claims["sub"] = json!("admin");
    let forged_payload = b64(claims.to_string().as_bytes());
    parts[1] = &forged_payload;
    send(&app, bearer(&parts.join(".")))
        .await
        .problem(401, "invalid-token");
    // Foreign key: our own key under the provider's kid, with the provider's claims.
    let mut header = Signer::rs256().header();
    header["kid"] = json!(kid_of(&good));
    header["typ"] = json!("at+jwt");
    let foreign = Signer::rs256().sign_with_header(&header, &claims);
    send(&app, bearer(&foreign))
        .await
        .problem(401, "invalid-token");
}

#[tokio::test]
async fn expired_provider_tokens_are_refused() {
    let Some(base) = provider_url() else { return };
    let _lock = PROVIDER.lock().await;
    let issuer = Issuer::builder(&base)
        .audience([API])
        .leeway(Duration::ZERO)
        .allow_http_on_loopback()
        .build()
        .await
        .unwrap();
    let app = oidc_app(issuer);
    // This client's tokens live one second.
    let short = token(&base, "portcullis-short", API).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let answer = send(&app, bearer(&short)).await;
    answer.problem(401, "invalid-token");
    assert_eq!(answer.body["detail"], "The access token expired.");
}

#[tokio::test]
async fn key_rotation_at_the_provider_is_picked_up_without_restart() {
    let Some(base) = provider_url() else { return };
    let _lock = PROVIDER.lock().await;
    let issuer = issuer(&base).await;
    let app = oidc_app(issuer.clone());
    let before = token(&base, "portcullis-test", API).await;
    assert_eq!(send(&app, bearer(&before)).await.status, 200);
    let fetches = issuer.jwks_fetches();

    let rotated: Value = http()
        .post(format!("{base}/__test/rotate"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let after = token(&base, "portcullis-test", API).await;
    assert_ne!(kid_of(&after), kid_of(&before), "{rotated}");
    let answer = send(&app, bearer(&after)).await;
    assert_eq!(answer.status, 200, "new kid accepted: {}", answer.text);
    assert_eq!(
        issuer.jwks_fetches(),
        fetches + 1,
        "one refetch for the new kid"
    );
    // The old key is still published, so tokens it signed keep working.
    assert_eq!(send(&app, bearer(&before)).await.status, 200);
}

#[tokio::test]
async fn provider_stopped_known_keys_work_unknown_kid_fails_closed() {
    let Some(base) = provider_url() else { return };
    let _lock = PROVIDER.lock().await;
    let issuer = issuer(&base).await;
    let app = oidc_app(issuer.clone());
    let known = token(&base, "portcullis-test", API).await;
    let mut claims: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            known.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    claims["jti"] = json!("unknown-kid-token");
    let mut header = Signer::rs256().header();
    header["kid"] = json!("a-kid-the-provider-never-had");
    header["typ"] = json!("at+jwt");
    let unknown = Signer::rs256().sign_with_header(&header, &claims);

    http()
        .post(format!("{base}/__test/stop?ms=3000"))
        .send()
        .await
        .unwrap();
    assert!(
        http().get(format!("{base}/jwks")).send().await.is_err(),
        "the provider is down"
    );
    let answer = send(&app, bearer(&known)).await;
    assert_eq!(
        answer.status, 200,
        "known key keeps working: {}",
        answer.text
    );
    let answer = send(&app, bearer(&unknown)).await;
    answer.problem(401, "invalid-token");
    assert!(issuer.jwks_stale(), "the failed refetch is recorded");

    // Wait for the provider to come back before releasing it to the other tests.
    for _ in 0..100 {
        if http().get(format!("{base}/jwks")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(issuer.refresh_keys().await);
    assert!(!issuer.jwks_stale());
}

#[tokio::test]
async fn introspection_of_active_and_revoked_opaque_tokens() {
    let Some(base) = provider_url() else { return };
    let _lock = PROVIDER.lock().await;
    let issuer = issuer(&base).await;
    let introspector: Introspector = issuer
        .introspector("portcullis-test", SECRET)
        .unwrap()
        .audience([OPAQUE_API])
        .max_positive_ttl(Duration::ZERO)
        .allow_http_on_loopback()
        .build()
        .unwrap();
    let app = app(AuthLayer::required().with(
        OidcAuthenticator::builder()
            .issuer(issuer)
            .introspection(introspector)
            .build()
            .unwrap(),
    ));
    let opaque = token(&base, "portcullis-test", OPAQUE_API).await;
    assert!(!opaque.contains('.'), "an opaque token: {opaque}");
    let answer = send(&app, bearer(&opaque)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["method"], "introspection");
    assert_eq!(answer.body["sub"], "portcullis-test");
    assert_eq!(answer.body["scopes"], json!(["read:items", "write:items"]));
    // JWTs still go to the issuer next to the introspector.
    let jwt = token(&base, "portcullis-test", API).await;
    assert_eq!(send(&app, bearer(&jwt)).await.body["method"], "jwt");

    // Revoked at the provider: active=false.
    let revoked = http()
        .post(format!("{base}/token/revocation"))
        .basic_auth("portcullis-test", Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={opaque}"))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success());
    let answer = send(&app, bearer(&opaque)).await;
    answer.problem(401, "invalid-token");
    assert_eq!(answer.body["detail"], "The access token is not active.");
    // A token the provider never issued.
    send(&app, bearer("not-a-token-the-provider-knows"))
        .await
        .problem(401, "invalid-token");
}
