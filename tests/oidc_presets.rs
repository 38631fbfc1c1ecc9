//! Identity-provider presets, proven on each provider's real token shapes.
//!
//! The corpus: tokens shaped exactly as each provider documents them (header, claims, issuer
//! forms, `typ` values; access and ID tokens; Entra v1 and v2), signed by a test key that an
//! in-process provider serves through a discovery document naming the provider's real issuer
//! (reached with `discovery_url`). Each preset must admit the right tokens with the right
//! identity, and refuse the known confusions and everything the generic path refuses.
//!
//! The live part talks to the real OpenID provider that `scripts/test.sh` starts
//! (`tests/oidc-provider`, `PORTCULLIS_TEST_OIDC_ISSUER`), configured to mint Keycloak- and
//! Entra-shaped tokens (a realm, and two tenants behind the multi-tenant metadata document).
#![cfg(feature = "oidc")]

mod common;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use common::*;
use jsonwebtoken::jwk::Jwk;
use portcullis::oidc::{Issuer, IssuerBuilder, OidcAuthenticator};
use portcullis::{ClaimSource, Identity};
use serde_json::{Value, json};

/// A provider stand-in: its discovery document names `issuer` (the provider's real one) and
/// its key set holds the test RSA key (kid `rs`).
async fn provider(issuer: &str) -> String {
    #[derive(Clone)]
    struct Doc {
        issuer: String,
        base: String,
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let doc = Doc {
        issuer: issuer.to_owned(),
        base: base.clone(),
    };
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(|State(doc): State<Doc>| async move {
                axum::Json(json!({
                    "issuer": doc.issuer,
                    "authorization_endpoint": format!("{}/authorize", doc.base),
                    "token_endpoint": format!("{}/token", doc.base),
                    "jwks_uri": format!("{}/keys", doc.base),
                    "response_types_supported": ["code", "id_token", "code id_token"],
                    "subject_types_supported": ["pairwise", "public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }))
            }),
        )
        .route(
            "/keys",
            get(|| async {
                let signer = Signer::rs256();
                let mut jwk =
                    serde_json::to_value(Jwk::from_encoding_key(&signer.key, signer.alg).unwrap())
                        .unwrap();
                jwk["kid"] = json!("rs");
                jwk["use"] = json!("sig");
                axum::Json(json!({ "keys": [jwk] }))
            }),
        )
        .with_state(doc);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("{base}/.well-known/openid-configuration")
}

/// Builds the preset against a stand-in whose discovery document names `doc_issuer`.
async fn preset(builder: IssuerBuilder, doc_issuer: &str) -> OidcAuthenticator {
    let issuer = builder
        .discovery_url(provider(doc_issuer).await)
        .allow_http_on_loopback()
        .build()
        .await
        .unwrap();
    OidcAuthenticator::builder().issuer(issuer).build().unwrap()
}

/// Signs `claims` under Keycloak's header, byte for byte as Keycloak writes it (by hand, with
/// spaces around two of the colons).
fn sign_keycloak(claims: &Value) -> String {
    sign_raw(
        r#"{"alg":"RS256","typ" : "JWT","kid" : "rs"}"#,
        &claims.to_string(),
        &Signer::rs256().key,
        jsonwebtoken::Algorithm::RS256,
    )
}

/// Signs `claims` with the served key under a provider-shaped header (`typ` as given, or none).
fn sign(typ: Option<&str>, claims: &Value) -> String {
    let mut header = json!({ "alg": "RS256", "kid": "rs" });
    if let Some(typ) = typ {
        header["typ"] = json!(typ);
    }
    Signer::rs256().sign_with_header(&header, claims)
}

async fn accepted(oidc: &OidcAuthenticator, token: &str) -> Identity {
    oidc.verify(token)
        .await
        .unwrap_or_else(|rejection| panic!("refused ({}): {token}", rejection.reason().as_str()))
}

/// Asserts that the token is refused for exactly `reason`.
async fn refused(oidc: &OidcAuthenticator, token: &str, reason: &str) {
    match oidc.verify(token).await {
        Ok(identity) => panic!("accepted {identity:?}, expected {reason}"),
        Err(rejection) => {
            assert_eq!(rejection.reason().as_str(), reason);
            assert_eq!(rejection.status(), 401);
        }
    }
}

fn with(mut claims: Value, changes: Value) -> Value {
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

// --- Keycloak -------------------------------------------------------------------------------

const KEYCLOAK: &str = "https://sso.example.com/realms/shop";

/// A Keycloak 24 access token for the `web-app` client, with an audience mapper for `items-api`.
fn keycloak_access() -> Value {
    json!({
        "exp": now() + 300, "iat": now(), "auth_time": now(),
        "jti": "onrtac:6a1f2b3c-1d2e-4f5a-8b9c-0d1e2f3a4b5c",
        "iss": KEYCLOAK,
        "aud": ["items-api", "account"],
        "sub": "f3b8a6c2-7d41-4e0a-9f1b-2c3d4e5f6a7b",
        "typ": "Bearer",
        "azp": "web-app",
        "sid": "0c5d9f8e-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
        "acr": "1",
        "allowed-origins": ["https://app.example.com"],
        "realm_access": { "roles": ["default-roles-shop", "offline_access", "uma_authorization", "reader"] },
        "resource_access": {
            "items-api": { "roles": ["editor"] },
            "account": { "roles": ["manage-account", "view-profile"] },
        },
        "scope": "openid email profile",
        "email_verified": true,
        "preferred_username": "alice",
    })
}

/// The ID token Keycloak issues to `web-app` in the same login.
fn keycloak_id() -> Value {
    json!({
        "exp": now() + 300, "iat": now(), "auth_time": now(),
        "jti": "3f2e1d0c-9b8a-4765-8432-10fedcba9876",
        "iss": KEYCLOAK,
        "aud": "web-app",
        "sub": "f3b8a6c2-7d41-4e0a-9f1b-2c3d4e5f6a7b",
        "typ": "ID",
        "azp": "web-app",
        "nonce": "n-0S6_WzA2Mj",
        "sid": "0c5d9f8e-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
        "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
        "acr": "1",
        "email_verified": true,
        "preferred_username": "alice",
    })
}

#[tokio::test]
async fn keycloak_access_tokens_carry_realm_and_client_roles() {
    let oidc = preset(
        Issuer::keycloak("https://sso.example.com/", "shop").audience(["items-api"]),
        KEYCLOAK,
    )
    .await;
    let alice = accepted(&oidc, &sign_keycloak(&keycloak_access())).await;
    assert_eq!(alice.subject(), "f3b8a6c2-7d41-4e0a-9f1b-2c3d4e5f6a7b");
    assert_eq!(alice.issuer(), Some(KEYCLOAK));
    assert_eq!(
        alice.roles(),
        [
            "default-roles-shop",
            "offline_access",
            "uma_authorization",
            "reader",
            "items-api:editor"
        ]
    );
    // Another client's roles are not ours, prefixed or not.
    assert!(!alice.roles().iter().any(|r| r.contains("manage-account")));
    assert_eq!(alice.scopes(), ["openid", "email", "profile"]);
    assert_eq!(alice.client_id(), Some("web-app"));
    assert_eq!(alice.tenant(), None);

    // The ID token of the same login: its audience is the client, not the API.
    refused(&oidc, &sign_keycloak(&keycloak_id()), "bad_audience").await;
    // A token for another client of the realm (Keycloak's default audience only).
    let other = with(
        keycloak_access(),
        json!({ "azp": "reporting", "aud": "account", "resource_access": null }),
    );
    refused(&oidc, &sign_keycloak(&other), "bad_audience").await;
    // Another realm of the same server.
    let realm = with(
        keycloak_access(),
        json!({ "iss": "https://sso.example.com/realms/other" }),
    );
    refused(&oidc, &sign_keycloak(&realm), "bad_issuer").await;
}

#[tokio::test]
async fn keycloak_without_an_audience_mapper_names_the_clients_and_still_refuses_id_tokens() {
    let oidc = preset(
        Issuer::keycloak("https://sso.example.com", "shop")
            .any_audience()
            .clients(["web-app"]),
        KEYCLOAK,
    )
    .await;
    let plain = with(keycloak_access(), json!({ "aud": "account" }));
    accepted(&oidc, &sign_keycloak(&plain)).await;
    // The ID token passes audience and client: its `typ` claim gives it away.
    refused(&oidc, &sign_keycloak(&keycloak_id()), "claim_not_accepted").await;
    let refresh = with(keycloak_access(), json!({ "typ": "Refresh" }));
    refused(&oidc, &sign_keycloak(&refresh), "claim_not_accepted").await;
    let other = with(plain, json!({ "azp": "reporting" }));
    refused(&oidc, &sign_keycloak(&other), "bad_client").await;
}

#[tokio::test]
async fn keycloak_client_roles_can_be_read_without_prefix() {
    let oidc = preset(
        Issuer::keycloak("https://sso.example.com", "shop")
            .audience(["items-api"])
            .roles_from([
                ClaimSource::path("/realm_access/roles"),
                ClaimSource::path("/resource_access/items-api/roles"),
            ]),
        KEYCLOAK,
    )
    .await;
    let alice = accepted(&oidc, &sign_keycloak(&keycloak_access())).await;
    assert!(alice.has_role("editor") && alice.has_role("reader"));
    // The preset's scopes and client survive a change of roles.
    assert_eq!(alice.scopes(), ["openid", "email", "profile"]);
    assert_eq!(alice.client_id(), Some("web-app"));
}

// --- Microsoft Entra ID ---------------------------------------------------------------------

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const OTHER_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";
const UNLISTED_TENANT: &str = "f8cdef31-a31e-4b4a-93e4-5f571e91255a";
const API_CLIENT_ID: &str = "6e74172b-be56-4843-9ff4-e66a39bb12e3";
const API_URI: &str = "api://items";
const SPA_CLIENT_ID: &str = "2d4d11a2-f814-46a7-890a-274a72a7309e";

fn entra_v2_issuer(tenant: &str) -> String {
    format!("https://login.microsoftonline.com/{tenant}/v2.0")
}

/// A v2 delegated access token (a user signed in to the SPA, which calls the API).
fn entra_v2_delegated(tenant: &str) -> Value {
    json!({
        "aud": API_CLIENT_ID,
        "iss": entra_v2_issuer(tenant),
        "iat": now(), "nbf": now(), "exp": now() + 3600,
        "aio": "AXQAi/8UAAAAr3Qb5a6nqrhQ8Pg2R5kT9cwlE+0Lx5JPgCVWtA==",
        "azp": SPA_CLIENT_ID,
        "azpacr": "0",
        "name": "Abe Lincoln",
        "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
        "preferred_username": "abeli@contoso.com",
        "rh": "I",
        "scp": "access_as_user Items.Read",
        "sub": "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ",
        "tid": tenant,
        "uti": "fqiBqXLPj0eQa82S-IYFAA",
        "ver": "2.0",
    })
}

/// A v1 app-only access token (client credentials, application permission `Items.Read.All`).
fn entra_v1_app(tenant: &str) -> Value {
    json!({
        "aud": API_URI,
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": now(), "nbf": now(), "exp": now() + 3600,
        "aio": "E2ZgYJj/sPzlVvdz3YtvFEvwZhM8AA==",
        "appid": "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d",
        "appidacr": "1",
        "idp": format!("https://sts.windows.net/{tenant}/"),
        "idtyp": "app",
        "oid": "b5c6d7e8-f9a0-4b1c-8d2e-3f4a5b6c7d8e",
        "rh": "0.AAAA",
        "roles": ["Items.Read.All"],
        "sub": "b5c6d7e8-f9a0-4b1c-8d2e-3f4a5b6c7d8e",
        "tid": tenant,
        "uti": "bW9yZS11dGktdmFsdWU",
        "ver": "1.0",
    })
}

/// Signs under the v1 header: `x5t` (the key's thumbprint) next to `kid`.
fn sign_v1(claims: &Value) -> String {
    let header = json!({ "typ": "JWT", "alg": "RS256", "x5t": "rs", "kid": "rs" });
    Signer::rs256().sign_with_header(&header, claims)
}

/// The v2 ID token of the same sign-in: audience is the signing-in app, no `azp`.
fn entra_v2_id(tenant: &str, audience: &str) -> Value {
    json!({
        "aud": audience,
        "iss": entra_v2_issuer(tenant),
        "iat": now(), "nbf": now(), "exp": now() + 3600,
        "name": "Abe Lincoln",
        "nonce": "12345",
        "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
        "preferred_username": "abeli@contoso.com",
        "rh": "I",
        "roles": ["Items.Admin"],
        "sub": "3pPbmK-s4Jhp1bVGVB0z0b7oN1VmmA3bCZjqBbYfIzQ",
        "tid": tenant,
        "uti": "fqiBqXLPj0eQa82S-IYFAA",
        "ver": "2.0",
    })
}

#[tokio::test]
async fn entra_single_tenant_accepts_v1_and_v2_with_scopes_roles_tenant_and_client() {
    let oidc = preset(
        Issuer::entra(TENANT).audience([API_URI, API_CLIENT_ID]),
        &entra_v2_issuer(TENANT),
    )
    .await;
    let user = accepted(&oidc, &sign(Some("JWT"), &entra_v2_delegated(TENANT))).await;
    assert_eq!(
        user.subject(),
        "HKZpfaHyWadeOouYlitjrI-KffTm222X5rrV3xDqfKQ"
    );
    assert_eq!(user.scopes(), ["access_as_user", "Items.Read"]);
    assert!(user.roles().is_empty());
    assert_eq!(user.tenant(), Some(TENANT));
    assert_eq!(user.client_id(), Some(SPA_CLIENT_ID));

    let daemon = accepted(&oidc, &sign_v1(&entra_v1_app(TENANT))).await;
    assert_eq!(daemon.roles(), ["Items.Read.All"]);
    assert!(daemon.scopes().is_empty());
    assert_eq!(
        daemon.client_id(),
        Some("a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d")
    );
    assert_eq!(
        daemon.issuer(),
        Some(format!("https://sts.windows.net/{TENANT}/").as_str())
    );

    // Another tenant's tokens, v2 and v1.
    refused(
        &oidc,
        &sign(Some("JWT"), &entra_v2_delegated(OTHER_TENANT)),
        "bad_issuer",
    )
    .await;
    refused(&oidc, &sign_v1(&entra_v1_app(OTHER_TENANT)), "bad_issuer").await;
    // An ID token: for the SPA it is not meant for this API...
    refused(
        &oidc,
        &sign(Some("JWT"), &entra_v2_id(TENANT, SPA_CLIENT_ID)),
        "bad_audience",
    )
    .await;
    // ...and when the API signs users in itself (same app registration), it names no client.
    refused(
        &oidc,
        &sign(Some("JWT"), &entra_v2_id(TENANT, API_CLIENT_ID)),
        "claim_not_accepted",
    )
    .await;
    // The v1 issuer with another tenant's `tid` inside.
    let mixed = with(entra_v1_app(TENANT), json!({ "tid": OTHER_TENANT }));
    refused(&oidc, &sign_v1(&mixed), "bad_tenant").await;
    // A token for Microsoft Graph from the same tenant.
    let graph = with(
        entra_v2_delegated(TENANT),
        json!({ "aud": "00000003-0000-0000-c000-000000000000" }),
    );
    refused(&oidc, &sign(Some("JWT"), &graph), "bad_audience").await;
    // Graph's own tokens carry a `nonce` header and a signature over its hash, which no
    // standard verifier accepts: signed over one nonce, presented with another.
    let graph_header = |nonce: &str| json!({ "typ": "JWT", "nonce": nonce, "alg": "RS256", "x5t": "rs", "kid": "rs" });
    let signed = Signer::rs256().sign_with_header(&graph_header("hashed"), &graph);
    let signature = signed.rsplit('.').next().unwrap();
    let presented = format!(
        "{}.{}.{signature}",
        b64(graph_header("AQABAAAAAAB2UyzwtQEKR7")
            .to_string()
            .as_bytes()),
        b64(graph.to_string().as_bytes())
    );
    refused(&oidc, &presented, "bad_signature").await;
}

#[tokio::test]
async fn entra_multi_tenant_accepts_listed_tenants_only() {
    let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
    let oidc = preset(
        Issuer::entra_tenants([TENANT, OTHER_TENANT]).audience([API_URI, API_CLIENT_ID]),
        template,
    )
    .await;
    for tenant in [TENANT, OTHER_TENANT] {
        let user = accepted(&oidc, &sign(Some("JWT"), &entra_v2_delegated(tenant))).await;
        assert_eq!(user.tenant(), Some(tenant));
        assert_eq!(user.issuer(), Some(entra_v2_issuer(tenant).as_str()));
        let daemon = accepted(&oidc, &sign_v1(&entra_v1_app(tenant))).await;
        assert_eq!(daemon.tenant(), Some(tenant));
    }
    // A tenant that was never onboarded, although Microsoft signs its tokens with the same keys.
    refused(
        &oidc,
        &sign(Some("JWT"), &entra_v2_delegated(UNLISTED_TENANT)),
        "bad_issuer",
    )
    .await;
    // The template itself, or `common`, is no issuer.
    for iss in [template, "https://login.microsoftonline.com/common/v2.0"] {
        let token = with(entra_v2_delegated(TENANT), json!({ "iss": iss }));
        refused(&oidc, &sign(Some("JWT"), &token), "bad_issuer").await;
    }
    // A listed issuer with an unlisted tenant inside, and the other way round.
    let token = with(
        entra_v2_delegated(TENANT),
        json!({ "tid": UNLISTED_TENANT }),
    );
    refused(&oidc, &sign(Some("JWT"), &token), "bad_tenant").await;
    let token = with(entra_v2_delegated(TENANT), json!({ "tid": null }));
    refused(&oidc, &sign(Some("JWT"), &token), "bad_tenant").await;
}

#[tokio::test]
async fn entra_multi_tenant_discovery_must_carry_the_template() {
    let error = Issuer::entra_tenants([TENANT, OTHER_TENANT])
        .audience([API_URI])
        .discovery_url(provider(&entra_v2_issuer(TENANT)).await)
        .allow_http_on_loopback()
        .build()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("names issuer"), "{error}");
    let error = Issuer::entra_tenants(Vec::<String>::new())
        .audience([API_URI])
        .build()
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("tenant list is empty"),
        "{error}"
    );
}

// --- Auth0 ----------------------------------------------------------------------------------

const AUTH0: &str = "https://example.eu.auth0.com/";
const AUTH0_API: &str = "https://api.example.com";

fn auth0_access() -> Value {
    json!({
        "https://example.com/roles": ["editor"],
        "iss": AUTH0,
        "sub": "auth0|64b7f1c2e3d4a5b6c7d8e9f0",
        "aud": [AUTH0_API, "https://example.eu.auth0.com/userinfo"],
        "iat": now(), "exp": now() + 86400,
        "scope": "openid profile email read:items",
        "azp": "xT5lJ3fQ9wK2mN8pR4sV6yZ1aB7cD0eF",
        "permissions": ["read:items", "write:items"],
    })
}

#[tokio::test]
async fn auth0_permissions_namespaced_roles_and_machine_tokens() {
    let oidc = preset(
        Issuer::auth0("example.eu.auth0.com")
            .audience([AUTH0_API])
            .roles_from(["https://example.com/roles"]),
        AUTH0,
    )
    .await;
    let user = accepted(&oidc, &sign(Some("JWT"), &auth0_access())).await;
    assert_eq!(
        user.scopes(),
        ["openid", "profile", "email", "read:items", "write:items"]
    );
    assert_eq!(user.roles(), ["editor"]);
    assert_eq!(user.client_id(), Some("xT5lJ3fQ9wK2mN8pR4sV6yZ1aB7cD0eF"));
    // The RFC 9068 profile: `typ: at+jwt`, the client in `client_id`, no `gty`.
    let profiled = with(
        auth0_access(),
        json!({ "azp": null, "client_id": "xT5lJ3fQ9wK2mN8pR4sV6yZ1aB7cD0eF" }),
    );
    let user = accepted(&oidc, &sign(Some("at+jwt"), &profiled)).await;
    assert_eq!(user.client_id(), Some("xT5lJ3fQ9wK2mN8pR4sV6yZ1aB7cD0eF"));

    let machine = json!({
        "iss": AUTH0,
        "sub": "xT5lJ3fQ9wK2mN8pR4sV6yZ1aB7cD0eF@clients",
        "aud": AUTH0_API,
        "iat": now(), "exp": now() + 86400,
        "scope": "read:items",
        "gty": "client-credentials",
        "azp": "xT5lJ3fQ9wK2mN8pR4sV6yZ1aB7cD0eF",
        "permissions": ["read:items"],
    });
    let m2m = accepted(&oidc, &sign(Some("JWT"), &machine)).await;
    assert_eq!(m2m.claim("gty"), Some(&json!("client-credentials")));
    assert_eq!(m2m.scopes(), ["read:items"]);

    // The ID token: for the client, not the API.
    let id = json!({
        "given_name": "Alice", "nickname": "alice", "name": "Alice", "email": "alice@example.com",
        "email_verified": true, "iss": AUTH0, "aud": "xT5lJ3fQ9wK2mN8pR4sV6yZ1aB7cD0eF",
        "sub": "auth0|64b7f1c2e3d4a5b6c7d8e9f0", "iat": now(), "exp": now() + 36000,
        "sid": "Fq0q5bUe7m4r", "nonce": "abc",
    });
    refused(&oidc, &sign(Some("JWT"), &id), "bad_audience").await;
    // The issuer without Auth0's trailing slash is another issuer.
    let slashless = with(
        auth0_access(),
        json!({ "iss": "https://example.eu.auth0.com" }),
    );
    refused(&oidc, &sign(Some("JWT"), &slashless), "bad_issuer").await;
    // A token for another API of the same tenant.
    let other = with(
        auth0_access(),
        json!({ "aud": "https://billing.example.com" }),
    );
    refused(&oidc, &sign(Some("JWT"), &other), "bad_audience").await;
}

// --- Okta -----------------------------------------------------------------------------------

const OKTA: &str = "https://example.okta.com/oauth2/default";

fn okta_access() -> Value {
    json!({
        "ver": 1,
        "jti": "AT.0mP4JKAZX1iACIT4vbEDF7LpvDVjxypPMf0D7uX39RE",
        "iss": OKTA,
        "aud": "api://default",
        "iat": now(), "exp": now() + 3600,
        "cid": "0oa1a2b3c4d5e6f7g8h9",
        "uid": "00u1a2b3c4d5e6f7g8h9",
        "scp": ["openid", "email", "items.read"],
        "auth_time": now(),
        "sub": "alice@example.com",
        "groups": ["Everyone", "Editors"],
    })
}

#[tokio::test]
async fn okta_custom_server_scp_groups_and_cid() {
    let oidc = preset(
        Issuer::okta("example.okta.com", "default").audience(["api://default"]),
        OKTA,
    )
    .await;
    let alice = accepted(&oidc, &sign(None, &okta_access())).await;
    assert_eq!(alice.scopes(), ["openid", "email", "items.read"]);
    assert_eq!(alice.roles(), ["Everyone", "Editors"]);
    assert_eq!(alice.client_id(), Some("0oa1a2b3c4d5e6f7g8h9"));

    // The org authorization server's token (for Okta's own APIs).
    let org = with(
        okta_access(),
        json!({ "iss": "https://example.okta.com", "aud": "https://example.okta.com" }),
    );
    refused(&oidc, &sign(None, &org), "bad_issuer").await;
    // An ID token: no `cid`, even where its audience (the client id) is configured by mistake.
    let id = json!({
        "sub": "00u1a2b3c4d5e6f7g8h9", "name": "Alice", "email": "alice@example.com", "ver": 1,
        "iss": OKTA, "aud": "api://default", "iat": now(), "exp": now() + 3600,
        "jti": "ID.4eAWJOCMB3SX8XewDfVR", "amr": ["pwd"], "idp": "00o1a2b3c4d5e6f7g8h9",
        "nonce": "n-0S6_WzA2Mj", "auth_time": now(), "at_hash": "preview_at_hash",
    });
    refused(&oidc, &sign(None, &id), "claim_not_accepted").await;
}

// --- Amazon Cognito -------------------------------------------------------------------------

const COGNITO: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Example1";

fn cognito_access(client: &str) -> Value {
    json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["admin"],
        "iss": COGNITO,
        "version": 2,
        "client_id": client,
        "origin_jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "event_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "token_use": "access",
        "scope": "phone openid profile email",
        "auth_time": now(), "exp": now() + 3600, "iat": now(),
        "jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "username": "my-test-user",
    })
}

#[tokio::test]
async fn cognito_checks_client_id_and_token_use_instead_of_aud() {
    let oidc = preset(
        Issuer::cognito("us-east-1", "us-east-1_Example1").clients(["1example23456789"]),
        COGNITO,
    )
    .await;
    let user = accepted(&oidc, &sign(None, &cognito_access("1example23456789"))).await;
    assert_eq!(user.roles(), ["admin"]);
    assert_eq!(user.scopes(), ["phone", "openid", "profile", "email"]);
    assert_eq!(user.client_id(), Some("1example23456789"));

    // Another app client of the same pool.
    refused(
        &oidc,
        &sign(None, &cognito_access("9other87654321")),
        "bad_client",
    )
    .await;
    // The ID token: has `aud`, `token_use: id`, no `client_id`.
    let id = json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "cognito:groups": ["admin"],
        "email_verified": true, "iss": COGNITO, "cognito:username": "my-test-user",
        "origin_jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "aud": "1example23456789",
        "event_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "token_use": "id",
        "auth_time": now(), "exp": now() + 3600, "iat": now(),
        "jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", "email": "alice@example.com",
    });
    refused(&oidc, &sign(None, &id), "claim_not_accepted").await;
    // The same pool in another region is another issuer.
    let region = with(
        cognito_access("1example23456789"),
        json!({ "iss": "https://cognito-idp.eu-west-1.amazonaws.com/us-east-1_Example1" }),
    );
    refused(&oidc, &sign(None, &region), "bad_issuer").await;
}

#[tokio::test]
async fn cognito_configuration_names_clients_not_audiences() {
    for (builder, message) in [
        (
            Issuer::cognito("us-east-1", "us-east-1_Example1"),
            "name the app clients",
        ),
        (
            Issuer::cognito("us-east-1", "us-east-1_Example1")
                .clients(["1example23456789"])
                .audience(["1example23456789"]),
            "instead of audience()",
        ),
    ] {
        let error = builder.build().await.unwrap_err();
        assert!(error.to_string().contains(message), "{error}");
    }
}

// --- Google ---------------------------------------------------------------------------------

const SERVICE_URL: &str = "https://items-abc123-ew.a.run.app";
const SERVICE_ACCOUNT: &str = "invoker@my-project.iam.gserviceaccount.com";

fn google_identity(iss: &str) -> Value {
    json!({
        "aud": SERVICE_URL,
        "azp": "113774264463038321964",
        "email": SERVICE_ACCOUNT,
        "email_verified": true,
        "exp": now() + 3600,
        "iat": now(),
        "iss": iss,
        "sub": "113774264463038321964",
    })
}

#[tokio::test]
async fn google_identity_tokens_in_both_issuer_spellings() {
    let oidc = preset(
        Issuer::google()
            .audience([SERVICE_URL])
            .require_claim("email", [SERVICE_ACCOUNT]),
        "https://accounts.google.com",
    )
    .await;
    for iss in ["https://accounts.google.com", "accounts.google.com"] {
        let caller = accepted(&oidc, &sign(Some("JWT"), &google_identity(iss))).await;
        assert_eq!(caller.subject(), "113774264463038321964");
        assert_eq!(caller.issuer(), Some(iss));
        assert_eq!(caller.client_id(), Some("113774264463038321964"));
    }
    let unverified = with(
        google_identity("https://accounts.google.com"),
        json!({ "email_verified": false }),
    );
    refused(&oidc, &sign(Some("JWT"), &unverified), "claim_not_accepted").await;
    let stranger = with(
        google_identity("https://accounts.google.com"),
        json!({ "email": "someone@other-project.iam.gserviceaccount.com" }),
    );
    refused(&oidc, &sign(Some("JWT"), &stranger), "claim_not_accepted").await;
    // Minted for another service.
    let other = with(
        google_identity("accounts.google.com"),
        json!({ "aud": "https://billing-abc123-ew.a.run.app" }),
    );
    refused(&oidc, &sign(Some("JWT"), &other), "bad_audience").await;
    // Neither spelling with a path or a slash.
    for iss in ["https://accounts.google.com/", "http://accounts.google.com"] {
        let token = with(google_identity(iss), json!({}));
        refused(&oidc, &sign(Some("JWT"), &token), "bad_issuer").await;
    }
}

#[tokio::test]
async fn google_needs_the_callers_named() {
    // Any Google account mints verified tokens for any audience: an audience alone admits all.
    let error = Issuer::google()
        .audience([SERVICE_URL])
        .build()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("name the callers"), "{error}");
    let oidc = preset(
        Issuer::google()
            .audience([SERVICE_URL])
            .require_claim("hd", ["example.com"]),
        "https://accounts.google.com",
    )
    .await;
    let token = google_identity("https://accounts.google.com");
    refused(&oidc, &sign(Some("JWT"), &token), "claim_not_accepted").await;
    let workspace = with(token, json!({ "hd": "example.com" }));
    accepted(&oidc, &sign(Some("JWT"), &workspace)).await;
}

// --- ZITADEL, Authentik, Dex, Ory Hydra ------------------------------------------------------

#[tokio::test]
async fn zitadel_roles_are_the_keys_of_this_projects_claim() {
    const ZITADEL: &str = "https://example-abc123.zitadel.cloud";
    const PROJECT: &str = "211975451794727170";
    let oidc = preset(Issuer::zitadel(ZITADEL).audience([PROJECT]), ZITADEL).await;
    let token = json!({
        "iss": ZITADEL,
        "sub": "211975453120127234",
        "aud": ["211975452348375298@items", PROJECT],
        "exp": now() + 43200, "iat": now(), "nbf": now(),
        "client_id": "211975452348375298@items",
        "jti": "212072355385704706",
        "urn:zitadel:iam:user:resourceowner:id": "211975451794700000",
        // The calling client's own project, which may be another one.
        "urn:zitadel:iam:org:project:roles": {
            "editor": { "211975451794700000": "example.zitadel.cloud" },
            "admin": { "211975451794700000": "example.zitadel.cloud" },
        },
        "urn:zitadel:iam:org:project:211975451794727170:roles": {
            "editor": { "211975451794700000": "example.zitadel.cloud" },
        },
    });
    let user = accepted(&oidc, &sign(Some("JWT"), &token)).await;
    assert_eq!(user.roles(), ["editor"]);
    assert_eq!(user.client_id(), Some("211975452348375298@items"));
    assert_eq!(user.tenant(), Some("211975451794700000"));
    // Roles as an array are not ZITADEL's shape: refused, never read as no roles.
    let array = with(
        token.clone(),
        json!({ "urn:zitadel:iam:org:project:211975451794727170:roles": ["admin"] }),
    );
    refused(&oidc, &sign(Some("JWT"), &array), "claim_type").await;
    // The ID token of the same login has no `jti`.
    let id = with(
        token,
        json!({ "jti": null, "amr": ["pwd"], "at_hash": "5nUq6kXWT8GheCNvDNdyow", "azp": "211975452348375298@items" }),
    );
    refused(&oidc, &sign(Some("JWT"), &id), "claim_not_accepted").await;
}

#[tokio::test]
async fn authentik_issuer_keeps_its_trailing_slash_and_groups_are_roles() {
    const AUTHENTIK: &str = "https://auth.example.com/application/o/items/";
    let oidc = preset(
        Issuer::authentik("https://auth.example.com", "items").audience(["items-client-id"]),
        AUTHENTIK,
    )
    .await;
    let token = json!({
        "iss": AUTHENTIK, "sub": "a1b2c3d4e5f6", "aud": "items-client-id",
        "exp": now() + 300, "iat": now(), "auth_time": now(), "acr": "goauthentik.io/providers/oauth2/default",
        "azp": "items-client-id", "email": "alice@example.com", "email_verified": true,
        "name": "Alice", "given_name": "Alice", "preferred_username": "alice",
        "nickname": "alice", "groups": ["authentik Admins", "editors"], "uid": "Yx3kq0aBcD",
    });
    let user = accepted(&oidc, &sign(Some("JWT"), &token)).await;
    assert_eq!(user.roles(), ["authentik Admins", "editors"]);
    // The ID token: the access token's claims without `azp` and `uid`.
    let id = with(token.clone(), json!({ "azp": null }));
    refused(&oidc, &sign(Some("JWT"), &id), "claim_not_accepted").await;
    let slashless = with(
        token,
        json!({ "iss": "https://auth.example.com/application/o/items" }),
    );
    refused(&oidc, &sign(Some("JWT"), &slashless), "bad_issuer").await;
}

#[tokio::test]
async fn dex_id_tokens_with_groups() {
    const DEX: &str = "https://dex.example.com/dex";
    let oidc = preset(Issuer::dex(DEX).audience(["items-app"]), DEX).await;
    let token = json!({
        "iss": DEX, "sub": "CgcyMzQyNzQ5EgZnaXRodWI", "aud": "items-app",
        "exp": now() + 86400, "iat": now(), "at_hash": "yJjW7rJ-6bXRkQ5vXAGnFw",
        "email": "alice@example.com", "email_verified": true, "groups": ["org:team"],
        "name": "Alice",
        "federated_claims": { "connector_id": "github", "user_id": "2342749" },
    });
    let user = accepted(&oidc, &sign(None, &token)).await;
    assert_eq!(user.roles(), ["org:team"]);
    refused(
        &oidc,
        &sign(None, &with(token, json!({ "aud": "other-app" }))),
        "bad_audience",
    )
    .await;
}

#[tokio::test]
async fn hydra_access_tokens_scp_client_id_and_ext_claims() {
    const HYDRA: &str = "https://hydra.example.com/";
    let oidc = preset(
        Issuer::hydra(HYDRA)
            .audience(["https://api.example.com"])
            .roles_from(["/ext/roles"]),
        HYDRA,
    )
    .await;
    let token = json!({
        "aud": ["https://api.example.com"], "client_id": "items-cli",
        "exp": now() + 3600, "ext": { "roles": ["editor"] }, "iat": now(), "iss": HYDRA,
        "jti": "d0ae5f2c-2f1b-4e50-a54b-0c2bb5d53d6f", "nbf": now(),
        "scp": ["read:items", "offline_access"], "sub": "alice",
    });
    let user = accepted(&oidc, &sign(None, &token)).await;
    assert_eq!(user.scopes(), ["read:items", "offline_access"]);
    assert_eq!(user.roles(), ["editor"]);
    assert_eq!(user.client_id(), Some("items-cli"));
    // Hydra leaves `aud` empty unless the client asked for an audience.
    refused(
        &oidc,
        &sign(None, &with(token.clone(), json!({ "aud": [] }))),
        "bad_audience",
    )
    .await;
    refused(
        &oidc,
        &sign(None, &with(token, json!({ "client_id": null }))),
        "claim_not_accepted",
    )
    .await;
}

#[tokio::test]
async fn preset_configuration_mistakes_are_refused_at_build() {
    for (builder, message) in [
        // A shared provider with any audience admits every other API's tokens.
        (
            Issuer::entra(TENANT).any_audience(),
            "name the calling clients",
        ),
        (
            Issuer::auth0("example.eu.auth0.com").any_audience(),
            "name the calling clients",
        ),
        (
            Issuer::keycloak("https://sso.example.com", "shop").any_audience(),
            "name the calling clients",
        ),
        // Entra names tenants by GUID, in lower case.
        (
            Issuer::entra_tenants(["contoso.onmicrosoft.com", TENANT]).audience([API_URI]),
            "not a tenant id",
        ),
        (
            Issuer::entra(&TENANT.to_uppercase()).audience([API_URI]),
            "not a tenant id",
        ),
        // `a:b`'s role `x` and `a`'s role `b:x` would both read `a:b:x`.
        (
            Issuer::keycloak("https://sso.example.com", "shop").audience(["a", "a:b"]),
            "same name",
        ),
        // Two projects' roles would mix under bare names.
        (
            Issuer::zitadel("https://example-abc123.zitadel.cloud").audience(["1", "2"]),
            "several audiences",
        ),
        // `azp` names an app every Google account may use, not a caller.
        (
            Issuer::google()
                .audience([SERVICE_URL])
                .clients(["32555940559.apps.googleusercontent.com"]),
            "name the callers",
        ),
    ] {
        let error = builder.build().await.unwrap_err();
        assert!(error.to_string().contains(message), "{error}");
    }
}

#[tokio::test]
async fn issuers_of_disjoint_tenants_coexist_and_overlapping_ones_do_not() {
    let template = "https://login.microsoftonline.com/{tenantid}/v2.0";
    let a = Issuer::entra_tenants([TENANT])
        .audience([API_URI])
        .discovery_url(provider(&entra_v2_issuer(TENANT)).await)
        .allow_http_on_loopback()
        .build()
        .await
        .unwrap();
    let b = Issuer::entra_tenants([OTHER_TENANT, UNLISTED_TENANT])
        .audience([API_CLIENT_ID])
        .discovery_url(provider(template).await)
        .allow_http_on_loopback()
        .build()
        .await
        .unwrap();
    let c = Issuer::entra_tenants([UNLISTED_TENANT, "0b1c2d3e-0000-4000-8000-000000000000"])
        .audience([API_URI])
        .discovery_url(provider(template).await)
        .allow_http_on_loopback()
        .build()
        .await
        .unwrap();
    let both = OidcAuthenticator::builder()
        .issuer(a.clone())
        .issuer(b.clone())
        .build()
        .unwrap();
    // Each tenant's token goes to its own issuer, with that issuer's audience.
    accepted(&both, &sign(Some("JWT"), &entra_v1_app(TENANT))).await;
    refused(
        &both,
        &sign(Some("JWT"), &entra_v1_app(OTHER_TENANT)),
        "bad_audience",
    )
    .await;
    accepted(&both, &sign(Some("JWT"), &entra_v2_delegated(OTHER_TENANT))).await;
    let error = OidcAuthenticator::builder()
        .issuer(b)
        .issuer(c)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("configured twice"), "{error}");
}

// --- What every preset still refuses ----------------------------------------------------------

#[tokio::test]
async fn every_preset_refuses_what_the_generic_path_refuses() {
    let cases: Vec<(IssuerBuilder, String, Value)> = vec![
        (
            Issuer::keycloak("https://sso.example.com", "shop").audience(["items-api"]),
            KEYCLOAK.into(),
            keycloak_access(),
        ),
        (
            Issuer::entra(TENANT).audience([API_CLIENT_ID]),
            entra_v2_issuer(TENANT),
            entra_v2_delegated(TENANT),
        ),
        (
            Issuer::auth0("example.eu.auth0.com").audience([AUTH0_API]),
            AUTH0.into(),
            auth0_access(),
        ),
        (
            Issuer::okta("example.okta.com", "default").audience(["api://default"]),
            OKTA.into(),
            okta_access(),
        ),
        (
            Issuer::cognito("us-east-1", "us-east-1_Example1").clients(["1example23456789"]),
            COGNITO.into(),
            cognito_access("1example23456789"),
        ),
        (
            Issuer::google()
                .audience([SERVICE_URL])
                .require_claim("email", [SERVICE_ACCOUNT]),
            "https://accounts.google.com".into(),
            google_identity("https://accounts.google.com"),
        ),
    ];
    for (builder, doc_issuer, good) in cases {
        let oidc = preset(builder, &doc_issuer).await;
        accepted(&oidc, &sign(Some("JWT"), &good)).await;
        let expired = with(good.clone(), json!({ "exp": now() - 600 }));
        refused(&oidc, &sign(Some("JWT"), &expired), "expired").await;
        let no_sub = with(good.clone(), json!({ "sub": null }));
        refused(&oidc, &sign(Some("JWT"), &no_sub), "missing_sub").await;
        // Signed by another key under the served key's id.
        let header = json!({ "alg": "RS256", "kid": "rs", "typ": "JWT" });
        let mut forged = Signer::rs256().sign_with_header(&header, &good);
        forged.truncate(forged.rfind('.').unwrap() + 1);
        forged.push_str(&b64(&[7u8; 256]));
        refused(&oidc, &forged, "bad_signature").await;
        // An algorithm the preset does not allow, and none.
        let hs = Signer::hs256()
            .sign_with_header(&json!({ "alg": "HS256", "kid": "rs", "typ": "JWT" }), &good);
        refused(&oidc, &hs, "alg_not_allowed").await;
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(good.to_string().as_bytes())
        );
        refused(&oidc, &none, "malformed").await;
        // A key the token brings along is never trusted.
        let embedded = Signer::rs256().sign_with_header(
            &json!({ "alg": "RS256", "kid": "rs", "jku": "https://evil.example/keys" }),
            &good,
        );
        refused(&oidc, &embedded, "embedded_key").await;
    }
}

// --- Live: the real OpenID provider minting Keycloak- and Entra-shaped tokens ------------------

const SECRET: &str = "portcullis-test-secret-0123456789abcdef";
const ENTRA_A: &str = "11111111-1111-4111-8111-111111111111";
const ENTRA_B: &str = "22222222-2222-4222-8222-222222222222";

/// A client-credentials access token from the token endpoint at `url`.
async fn live_token(url: &str, client: &str, form: &str) -> String {
    let response: Value = reqwest::Client::new()
        .post(url)
        .basic_auth(client, Some(SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials{form}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|body| serde_json::from_slice(&body).unwrap())
        .unwrap();
    response["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token from {url}: {response}"))
        .to_owned()
}

async fn live(builder: IssuerBuilder) -> OidcAuthenticator {
    let issuer = builder.allow_http_on_loopback().build().await.unwrap();
    OidcAuthenticator::builder().issuer(issuer).build().unwrap()
}

#[tokio::test]
async fn live_keycloak_realm() {
    let Some(base) = provider_url() else { return };
    let token_url = format!("{base}/realms/shop/protocol/openid-connect/token");
    let items_web = live_token(&token_url, "items-web", "").await;
    let other = live_token(&token_url, "other-client", "").await;

    let oidc = live(Issuer::keycloak(&base, "shop").audience(["items-api"])).await;
    let caller = accepted(&oidc, &items_web).await;
    assert_eq!(
        caller.issuer(),
        Some(format!("{base}/realms/shop").as_str())
    );
    assert_eq!(
        caller.roles(),
        ["offline_access", "reader", "items-api:editor"]
    );
    assert_eq!(caller.scopes(), ["profile", "email", "read:items"]);
    assert_eq!(caller.client_id(), Some("items-web"));
    // Another client of the realm: Keycloak's default audience only.
    refused(&oidc, &other, "bad_audience").await;

    let by_client = live(
        Issuer::keycloak(&base, "shop")
            .any_audience()
            .clients(["items-web"]),
    )
    .await;
    accepted(&by_client, &items_web).await;
    refused(&by_client, &other, "bad_client").await;
}

#[tokio::test]
async fn live_entra_tenants_behind_the_multi_tenant_metadata() {
    let Some(base) = provider_url() else { return };
    let token_a = live_token(
        &format!("{base}/{ENTRA_A}/v2.0/token"),
        "entra-daemon",
        "&resource=api%3A%2F%2Fitems",
    )
    .await;
    let token_b = live_token(
        &format!("{base}/{ENTRA_B}/v2.0/token"),
        "entra-daemon",
        "&resource=api%3A%2F%2Fitems",
    )
    .await;

    // Both tenants, through `/organizations/v2.0` and its `{tenantid}` issuer template.
    let both = live(Issuer::entra_at(&base, [ENTRA_A, ENTRA_B]).audience(["api://items"])).await;
    for (token, tenant) in [(&token_a, ENTRA_A), (&token_b, ENTRA_B)] {
        let daemon = accepted(&both, token).await;
        assert_eq!(daemon.tenant(), Some(tenant));
        assert_eq!(daemon.roles(), ["Items.Read"]);
        assert_eq!(daemon.client_id(), Some("entra-daemon"));
        assert_eq!(
            daemon.issuer(),
            Some(format!("{base}/{tenant}/v2.0").as_str())
        );
    }
    // One tenant, discovered from its own metadata: the other tenant's token is refused,
    // although the same keys signed it.
    let only_a = live(Issuer::entra_at(&base, [ENTRA_A]).audience(["api://items"])).await;
    accepted(&only_a, &token_a).await;
    refused(&only_a, &token_b, "bad_issuer").await;
    // Another API of the tenant.
    let other_api = live(Issuer::entra_at(&base, [ENTRA_A]).audience(["api://billing"])).await;
    refused(&other_api, &token_a, "bad_audience").await;
}
