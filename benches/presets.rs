//! What an identity-provider preset adds per request: the same RS256 token shape verified by a
//! generic issuer and by the Keycloak and Entra presets (one tenant, and 10 000 listed tenants),
//! once with the verified-token cache off (signature, claims, preset checks, claim mapping) and
//! once on (the steady state: issuer routing by the unverified `iss`, cache hit).
//! The provider is an in-process discovery document and JWKS over loopback HTTP.

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use portcullis::oidc::{Issuer, IssuerBuilder, OidcAuthenticator};
use serde_json::{Value, json};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

fn key() -> EncodingKey {
    EncodingKey::from_rsa_pem(include_bytes!("../tests/fixtures/rs256_private.pem")).unwrap()
}

/// Serves `/doc?issuer=...` (a discovery document naming that issuer) and `/keys`.
async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let jwks_uri = format!("{base}/keys");
    let app = Router::new()
        .route(
            "/doc",
            get(
                move |Query(query): Query<std::collections::HashMap<String, String>>| async move {
                    axum::Json(json!({
                        "issuer": query["issuer"],
                        "authorization_endpoint": "https://example.com/authorize",
                        "jwks_uri": jwks_uri,
                        "response_types_supported": ["code"],
                        "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }))
                },
            ),
        )
        .route(
            "/keys",
            get(|| async {
                let mut jwk =
                    serde_json::to_value(Jwk::from_encoding_key(&key(), Algorithm::RS256).unwrap())
                        .unwrap();
                jwk["kid"] = json!("rs");
                jwk["use"] = json!("sig");
                axum::Json(json!({ "keys": [jwk] }))
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

async fn build(
    base: &str,
    builder: IssuerBuilder,
    doc_issuer: &str,
    cache: bool,
) -> OidcAuthenticator {
    let mut builder = builder
        .discovery_url(format!(
            "{base}/doc?issuer={}",
            doc_issuer.replace('{', "%7B").replace('}', "%7D")
        ))
        .allow_http_on_loopback();
    if !cache {
        builder = builder.cache_max_bytes(0);
    }
    let issuer = builder.build().await.unwrap();
    OidcAuthenticator::builder().issuer(issuer).build().unwrap()
}

fn sign(claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
    header.kid = Some("rs".into());
    jsonwebtoken::encode(&header, claims, &key()).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let base = runtime.block_on(start());
    let keycloak_iss = "https://sso.example.com/realms/shop";
    let entra_iss = format!("https://login.microsoftonline.com/{TENANT}/v2.0");
    let keycloak = json!({
        "iss": keycloak_iss, "aud": ["items-api", "account"], "sub": "f3b8a6c2", "typ": "Bearer",
        "azp": "web-app", "exp": now() + 3600, "iat": now(),
        "realm_access": { "roles": ["offline_access", "reader"] },
        "resource_access": { "items-api": { "roles": ["editor"] }, "account": { "roles": ["view-profile"] } },
        "scope": "openid email profile",
    });
    let generic = json!({
        "iss": keycloak_iss, "aud": ["items-api", "account"], "sub": "f3b8a6c2",
        "azp": "web-app", "exp": now() + 3600, "iat": now(),
        "roles": ["offline_access", "reader", "items-api:editor"],
        "scope": "openid email profile",
    });
    let entra = json!({
        "aud": "api://items", "iss": entra_iss, "iat": now(), "nbf": now(), "exp": now() + 3600,
        "azp": "2d4d11a2", "oid": "690222be", "scp": "access_as_user Items.Read",
        "sub": "HKZpfaHy", "tid": TENANT, "ver": "2.0",
    });
    let many: Vec<String> = (0..10_000)
        .map(|i| format!("{i:08x}-0000-4000-8000-000000000000"))
        .chain([TENANT.to_owned()])
        .collect();

    let mut group = c.benchmark_group("presets");
    for cache in [false, true] {
        let state = if cache { "cache hit" } else { "cache off" };
        let cases: Vec<(&str, OidcAuthenticator, String)> = runtime.block_on(async {
            vec![
                (
                    "generic issuer",
                    build(
                        &base,
                        Issuer::builder(keycloak_iss).audience(["items-api"]),
                        keycloak_iss,
                        cache,
                    )
                    .await,
                    sign(&generic),
                ),
                (
                    "Issuer::keycloak",
                    build(
                        &base,
                        Issuer::keycloak("https://sso.example.com", "shop").audience(["items-api"]),
                        keycloak_iss,
                        cache,
                    )
                    .await,
                    sign(&keycloak),
                ),
                (
                    "Issuer::entra (one tenant)",
                    build(
                        &base,
                        Issuer::entra(TENANT).audience(["api://items"]),
                        &entra_iss,
                        cache,
                    )
                    .await,
                    sign(&entra),
                ),
                (
                    "Issuer::entra_tenants (10 001 tenants)",
                    build(
                        &base,
                        Issuer::entra_tenants(many.clone()).audience(["api://items"]),
                        "https://login.microsoftonline.com/{tenantid}/v2.0",
                        cache,
                    )
                    .await,
                    sign(&entra),
                ),
            ]
        });
        for (name, oidc, token) in cases {
            runtime.block_on(oidc.verify(&token)).expect(name);
            group.bench_function(format!("{name}, {state}"), |b| {
                b.iter(|| runtime.block_on(oidc.verify(black_box(&token))).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
