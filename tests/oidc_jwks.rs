//! The JWKS cache against an in-process provider whose fetches we count: discovery checks, cache
//! headers, single-flight, cool-down, stale-if-error, key hygiene, several issuers, jti deny-list.
#![cfg(feature = "oidc")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use common::*;
use jsonwebtoken::jwk::Jwk;
use portcullis::AuthLayer;
use portcullis::oidc::{InMemoryDenyList, Issuer, OidcAuthenticator};
use serde_json::{Value, json};

#[derive(Default)]
struct Provider {
    keys: Vec<Value>,
    cache_control: Option<&'static str>,
    failing: bool,
    claimed_issuer: Option<String>,
    padding: usize,
}

#[derive(Clone)]
struct Jwks {
    base: String,
    state: Arc<Mutex<Provider>>,
    fetches: Arc<AtomicU64>,
}

impl Jwks {
    async fn start(keys: Vec<Value>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (jwks, app) = Self::serving(base, keys);
        tokio::spawn(async move { axum::serve(listener, app).await });
        jwks
    }

    /// The provider at `base`, and the router that answers for it.
    fn serving(base: String, keys: Vec<Value>) -> (Self, Router) {
        let jwks = Jwks {
            base,
            state: Arc::new(Mutex::new(Provider {
                keys,
                ..Provider::default()
            })),
            fetches: Arc::new(AtomicU64::new(0)),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(key_set))
            .with_state(jwks.clone());
        (jwks, app)
    }

    /// The same provider over https, with a certificate for `127.0.0.1` issued by a CA of its
    /// own; returns the CA certificate as PEM.
    async fn start_tls(keys: Vec<Value>) -> (Self, String) {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto;
        use hyper_util::service::TowerToHyperService;
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        use rustls::pki_types::PrivateKeyDer;

        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let ca = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let crypto = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(crypto)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://{}", listener.local_addr().unwrap());
        let (jwks, app) = Self::serving(base, keys);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that does not trust the CA gives up during the handshake.
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                });
            }
        });
        (jwks, ca_pem)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Provider) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }

    fn issuer(&self) -> portcullis::oidc::IssuerBuilder {
        Issuer::builder(self.base.clone())
            .audience([AUDIENCE])
            .allow_http_on_loopback()
    }
}

async fn discovery(State(jwks): State<Jwks>) -> impl IntoResponse {
    let issuer = jwks
        .with(|p| p.claimed_issuer.clone())
        .unwrap_or(jwks.base.clone());
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{}/auth", jwks.base),
        "jwks_uri": format!("{}/jwks", jwks.base),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

async fn key_set(State(jwks): State<Jwks>) -> impl IntoResponse {
    jwks.fetches.fetch_add(1, Ordering::SeqCst);
    let (keys, cache_control, failing, padding) = jwks.with(|p| {
        (
            p.keys.clone(),
            p.cache_control,
            p.failing,
            "x".repeat(p.padding),
        )
    });
    if failing {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            HeaderMap::new(),
            String::new(),
        );
    }
    let mut headers = HeaderMap::new();
    if let Some(value) = cache_control {
        headers.insert("cache-control", HeaderValue::from_static(value));
    }
    let body = json!({ "keys": keys, "padding": padding }).to_string();
    (StatusCode::OK, headers, body)
}

fn jwk(signer: &Signer, kid: &str) -> Value {
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(&signer.key, signer.alg).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    jwk
}

fn es256(kid: &'static str) -> Signer {
    Signer {
        kid: Some(kid),
        ..Signer::es256()
    }
}

fn rs256(kid: &'static str) -> Signer {
    Signer {
        kid: Some(kid),
        ..Signer::rs256()
    }
}

fn token_for(jwks: &Jwks, signer: &Signer) -> String {
    let mut claims = claims("alice", "read:items");
    claims["iss"] = json!(jwks.base);
    claims["jti"] = json!(format!("jti-{}", now()));
    signer.sign(&claims)
}

fn oidc_app(issuers: Vec<Issuer>) -> Router {
    let mut builder = OidcAuthenticator::builder();
    for issuer in issuers {
        builder = builder.issuer(issuer);
    }
    app(AuthLayer::required().with(builder.build().unwrap()))
}

#[tokio::test]
async fn discovered_issuer_accepts_its_tokens() {
    let jwks = Jwks::start(vec![jwk(&es256("k1"), "k1")]).await;
    let issuer = jwks.issuer().build().await.unwrap();
    assert_eq!(jwks.fetches(), 1);
    let app = oidc_app(vec![issuer]);
    let answer = send(&app, bearer(&token_for(&jwks, &es256("k1")))).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["sub"], "alice");
    // Foreign key under a known kid, and a tampered payload: refused.
    let foreign = Signer {
        kid: Some("k1"),
        ..Signer::es256_foreign()
    };
    send(&app, bearer(&token_for(&jwks, &foreign)))
        .await
        .problem(401, "invalid-token");
    let good = token_for(&jwks, &es256("k1"));
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut claims = claims("mallory", "admin");
    claims["iss"] = json!(jwks.base);
    parts[1] = b64(claims.to_string().as_bytes());
    send(&app, bearer(&parts.join(".")))
        .await
        .problem(401, "invalid-token");
    assert_eq!(jwks.fetches(), 1, "no refetch for known kids");
}

/// A provider whose certificate a private CA issued is refused with the bundled web PKI roots,
/// and works once its CA is added with `root_certificates`.
#[tokio::test]
async fn a_provider_behind_a_private_ca_needs_its_root_certificate() {
    let (jwks, ca_pem) = Jwks::start_tls(vec![jwk(&es256("k1"), "k1")]).await;
    let builder = || Issuer::builder(jwks.base.clone()).audience([AUDIENCE]);
    assert!(
        builder().build().await.is_err(),
        "a certificate from an unknown CA was accepted"
    );
    assert_eq!(jwks.fetches(), 0);
    for bad in [&b"not a certificate"[..], b""] {
        // Refused at `build()`, even with a good bundle added after the bad one.
        let refused = builder()
            .root_certificates(bad)
            .root_certificates(ca_pem.as_bytes())
            .build()
            .await;
        let error = refused.expect_err("a bad root bundle was accepted");
        assert!(
            error.to_string().contains("root certificate bundle"),
            "{error}"
        );
    }
    assert_eq!(jwks.fetches(), 0);
    let issuer = builder()
        .root_certificates(ca_pem.as_bytes())
        .build()
        .await
        .unwrap();
    assert_eq!(jwks.fetches(), 1);
    let answer = send(
        &oidc_app(vec![issuer]),
        bearer(&token_for(&jwks, &es256("k1"))),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

#[tokio::test]
async fn discovery_must_name_exactly_this_issuer() {
    let jwks = Jwks::start(vec![jwk(&es256("k1"), "k1")]).await;
    jwks.with(|p| p.claimed_issuer = Some(format!("{}/", jwks.base)));
    let error = jwks.issuer().build().await.unwrap_err();
    assert!(error.to_string().contains("names issuer"), "{error}");
}

#[tokio::test]
async fn plain_http_needs_loopback_and_explicit_permission() {
    let jwks = Jwks::start(vec![jwk(&es256("k1"), "k1")]).await;
    let error = Issuer::builder(jwks.base.clone())
        .audience([AUDIENCE])
        .build()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("only https"), "{error}");
    let error = Issuer::builder("http://issuer.example")
        .audience([AUDIENCE])
        .allow_http_on_loopback()
        .build()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("loopback"), "{error}");
    assert_eq!(jwks.fetches(), 0);
}

#[tokio::test]
async fn oversized_key_set_is_cut_off() {
    let jwks = Jwks::start(vec![jwk(&es256("k1"), "k1")]).await;
    jwks.with(|p| p.padding = 100_000);
    let error = jwks
        .issuer()
        .max_response_bytes(10_000)
        .build()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("JWKS"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_with_a_new_kid_cause_one_fetch() {
    let jwks = Jwks::start(vec![jwk(&es256("k1"), "k1")]).await;
    let issuer = jwks
        .issuer()
        .refresh_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let app = oidc_app(vec![issuer.clone()]);
    // The provider rotates: k2 appears.
    jwks.with(|p| p.keys.push(jwk(&rs256("k2"), "k2")));
    let token = token_for(&jwks, &rs256("k2"));
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let app = app.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            send(&app, bearer(&token)).await.status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    assert_eq!(
        jwks.fetches(),
        2,
        "discovery's fetch plus exactly one refetch"
    );
    assert_eq!(issuer.jwks_fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_kids_are_rate_limited_by_the_cooldown() {
    let jwks = Jwks::start(vec![jwk(&es256("k1"), "k1")]).await;
    let issuer = jwks
        .issuer()
        .refresh_cooldown(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let app = oidc_app(vec![issuer]);
    // Within the cool-down of discovery's fetch: no fetch at all, 401 at once.
    let forged = |i: usize| {
        let mut header = es256("x").header();
        header["kid"] = json!(format!("forged-{i}"));
        let mut claims = claims("mallory", "admin");
        claims["iss"] = json!(jwks.base);
        es256("x").sign_with_header(&header, &claims)
    };
    for i in 0..50 {
        send(&app, bearer(&forged(i)))
            .await
            .problem(401, "invalid-token");
    }
    assert_eq!(jwks.fetches(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // After the cool-down: a burst of different unknown kids causes one fetch.
    let mut tasks = Vec::new();
    for i in 0..500 {
        let app = app.clone();
        let token = forged(1000 + i);
        tasks.push(tokio::spawn(async move {
            send(&app, bearer(&token)).await.status
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 401);
    }
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn background_refresh_honours_max_age_within_bounds() {
    // max-age=1 within bounds [1 s, 1 h]: refreshed every second.
    let jwks = Jwks::start(vec![jwk(&es256("k1"), "k1")]).await;
    jwks.with(|p| p.cache_control = Some("public, max-age=1"));
    let _issuer = jwks
        .issuer()
        .refresh_interval(Duration::from_secs(1), Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fetched = jwks.fetches();
    assert!((2..=4).contains(&fetched), "{fetched}");

    // max-age of a day, capped at 1 s by the upper bound.
    let capped = Jwks::start(vec![jwk(&es256("k1"), "k1")]).await;
    capped.with(|p| p.cache_control = Some("max-age=86400"));
    let _issuer = capped
        .issuer()
        .refresh_interval(Duration::from_millis(100), Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fetched = capped.fetches();
    assert!((2..=3).contains(&fetched), "{fetched}");

    // no-store, raised to the lower bound of an hour: no refresh soon.
    let floored = Jwks::start(vec![jwk(&es256("k1"), "k1")]).await;
    floored.with(|p| p.cache_control = Some("no-store"));
    let _issuer = floored
        .issuer()
        .refresh_interval(Duration::from_secs(3600), Duration::from_secs(7200))
        .build()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(floored.fetches(), 1);
}

#[tokio::test]
async fn provider_down_keeps_last_good_keys_and_fails_closed() {
    let jwks = Jwks::start(vec![jwk(&es256("k1"), "k1")]).await;
    let issuer = jwks
        .issuer()
        .refresh_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let app = oidc_app(vec![issuer.clone()]);
    jwks.with(|p| p.failing = true);
    assert!(!issuer.refresh_keys().await);
    assert!(issuer.jwks_stale());
    let answer = send(&app, bearer(&token_for(&jwks, &es256("k1")))).await;
    assert_eq!(answer.status, 200, "known key still works: {}", answer.text);
    let answer = send(&app, bearer(&token_for(&jwks, &rs256("new")))).await;
    answer.problem(401, "invalid-token");
    jwks.with(|p| p.failing = false);
    assert!(issuer.refresh_keys().await);
    assert!(!issuer.jwks_stale());
}

#[tokio::test]
async fn vanished_keys_are_removed_and_unfit_keys_skipped() {
    let mut enc = jwk(&rs256("enc"), "enc");
    enc["use"] = json!("enc");
    let mut wrong_alg = jwk(&es256("ps"), "ps");
    wrong_alg["alg"] = json!("RS256"); // an EC key claiming RS256
    let mut no_alg = jwk(&rs256("noalg"), "noalg");
    no_alg.as_object_mut().unwrap().remove("alg");
    let hmac = json!({"kty": "oct", "kid": "hs", "alg": "HS256", "k": b64(HMAC_SECRET)});
    let eddsa = jwk(&Signer::eddsa(), "ed"); // EdDSA is not among the accepted algorithms
    let jwks = Jwks::start(vec![
        jwk(&es256("k1"), "k1"),
        enc,
        wrong_alg,
        no_alg,
        hmac,
        eddsa,
    ])
    .await;
    let issuer = jwks
        .issuer()
        .refresh_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let app = oidc_app(vec![issuer.clone()]);
    let ok = |signer: &Signer| token_for(&jwks, signer);
    assert_eq!(send(&app, bearer(&ok(&es256("k1")))).await.status, 200);
    assert_eq!(send(&app, bearer(&ok(&rs256("noalg")))).await.status, 200);
    for signer in [
        rs256("enc"),
        Signer {
            kid: Some("hs"),
            ..Signer::hs256()
        },
        Signer {
            kid: Some("ed"),
            ..Signer::eddsa()
        },
    ] {
        send(&app, bearer(&ok(&signer)))
            .await
            .problem(401, "invalid-token");
    }
    // k1 vanishes from the provider: its tokens stop working, cached ones included.
    let cached = ok(&es256("k1"));
    assert_eq!(send(&app, bearer(&cached)).await.status, 200);
    jwks.with(|p| p.keys.retain(|k| k["kid"] != "k1"));
    assert!(issuer.refresh_keys().await);
    send(&app, bearer(&cached))
        .await
        .problem(401, "invalid-token");
}

#[tokio::test]
async fn several_issuers_never_mix_keys_or_audiences() {
    let a = Jwks::start(vec![jwk(&es256("k1"), "k1")]).await;
    let b = Jwks::start(vec![jwk(&rs256("k1"), "k1")]).await;
    let issuer_a = a.issuer().build().await.unwrap();
    let issuer_b = Issuer::builder(b.base.clone())
        .audience(["b-api"])
        .allow_http_on_loopback()
        .build()
        .await
        .unwrap();
    let app = oidc_app(vec![issuer_a, issuer_b]);
    assert_eq!(
        send(&app, bearer(&token_for(&a, &es256("k1"))))
            .await
            .status,
        200
    );
    // Claims to be from B but signed with A's key (same kid): B's keys refuse it.
    let mut forged = claims("mallory", "admin");
    forged["iss"] = json!(b.base);
    forged["aud"] = json!("b-api");
    send(&app, bearer(&es256("k1").sign(&forged)))
        .await
        .problem(401, "invalid-token");
    // From B with B's key but for A's audience: B does not accept it.
    let mut wrong_aud = claims("mallory", "admin");
    wrong_aud["iss"] = json!(b.base);
    send(&app, bearer(&rs256("k1").sign(&wrong_aud)))
        .await
        .problem(401, "invalid-token");
    // An issuer nobody configured.
    let mut stranger = claims("mallory", "admin");
    stranger["iss"] = json!("https://elsewhere.example");
    send(&app, bearer(&es256("k1").sign(&stranger)))
        .await
        .problem(401, "invalid-token");
}

#[tokio::test]
async fn denied_jti_is_refused_even_from_the_cache() {
    let jwks = Jwks::start(vec![jwk(&es256("k1"), "k1")]).await;
    let issuer = jwks.issuer().build().await.unwrap();
    let deny = Arc::new(InMemoryDenyList::new(10));
    let app = app(AuthLayer::required().with(
        OidcAuthenticator::builder()
            .issuer(issuer)
            .deny_list(deny.clone())
            .build()
            .unwrap(),
    ));
    let mut claims = claims("alice", "read:items");
    claims["iss"] = json!(jwks.base);
    claims["jti"] = json!("token-1");
    let token = es256("k1").sign(&claims);
    assert_eq!(send(&app, bearer(&token)).await.status, 200); // now cached
    assert!(deny.deny(
        Some(&jwks.base),
        "token-1",
        SystemTime::now() + Duration::from_secs(3600)
    ));
    let answer = send(&app, bearer(&token)).await;
    answer.problem(401, "invalid-token");
    assert_eq!(
        answer.body["detail"], "The access token has been revoked.",
        "{}",
        answer.text
    );
}

/// A provider serving `k1`, an issuer that refreshes without a cool-down, an app on it, and a
/// token of `k1` it accepts.
async fn refreshable_with_k1() -> (Jwks, Issuer, Router, String) {
    let jwks = Jwks::start(vec![jwk(&es256("k1"), "k1")]).await;
    let issuer = jwks
        .issuer()
        .refresh_cooldown(Duration::ZERO)
        .build()
        .await
        .unwrap();
    let app = oidc_app(vec![issuer.clone()]);
    let token = token_for(&jwks, &es256("k1"));
    assert_eq!(send(&app, bearer(&token)).await.status, 200);
    (jwks, issuer, app, token)
}

/// A provider (or whatever answers in its name) serving thousands of keys: applying them would
/// cost work quadratic in their number and a warning each. A failed fetch instead: the last good
/// keys stay.
#[tokio::test]
async fn a_key_set_of_more_than_100_keys_is_a_failed_fetch() {
    let (jwks, issuer, app, token) = refreshable_with_k1().await;
    let junk = jwk(&es256("k2"), "k2");
    jwks.with(|p| {
        p.keys.extend((0..100).map(|i| {
            let mut key = junk.clone();
            key["kid"] = json!(format!("junk-{i}"));
            key
        }))
    });
    assert!(!issuer.refresh_keys().await);
    assert!(issuer.jwks_stale());
    assert_eq!(send(&app, bearer(&token)).await.status, 200);
    // Back to a real set: accepted again.
    jwks.with(|p| p.keys.truncate(100));
    assert!(issuer.refresh_keys().await);
    assert_eq!(send(&app, bearer(&token)).await.status, 200);
}

#[tokio::test]
async fn a_key_set_with_no_usable_key_does_not_wipe_the_good_keys() {
    let (jwks, issuer, app, token) = refreshable_with_k1().await;
    // A CDN serves an empty set: treated as a failed fetch (stale-if-error), not as revocation.
    jwks.with(|p| p.keys.clear());
    assert!(!issuer.refresh_keys().await);
    assert!(issuer.jwks_stale());
    assert_eq!(send(&app, bearer(&token)).await.status, 200);
}
