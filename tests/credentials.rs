//! API keys and Basic through a real `Router`.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use http::HeaderName;
use portcullis::AuthLayer;
use portcullis::auth::{
    ApiKey, ApiKeyAuthenticator, ApiKeyGrant, ApiKeyHash, ApiKeyStore, BasicAuthenticator,
    BasicUser, InMemoryKeyStore, hash_password,
};
use serde_json::json;

fn key_app() -> (InMemoryKeyStore, ApiKey, axum::Router) {
    let store = InMemoryKeyStore::new();
    let key = ApiKey::generate("pcl_test").unwrap();
    store.insert_hash(
        key.hash(),
        ApiKeyGrant::new("key-7", "reporting")
            .scopes(["read:items"])
            .roles(["service"]),
    );
    let app = app(AuthLayer::required().with(ApiKeyAuthenticator::new(store.clone())));
    (store, key, app)
}

#[tokio::test]
async fn api_key_from_header_or_authorization() {
    let (_, key, app) = key_app();
    for request in [
        get_with("/me", &[("x-api-key", key.expose())]),
        get_with(
            "/me",
            &[("authorization", &format!("ApiKey {}", key.expose()))],
        ),
        get_with(
            "/me",
            &[("authorization", &format!("apikey {}", key.expose()))],
        ),
    ] {
        let answer = send(&app, request).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        assert_eq!(answer.body["sub"], "reporting");
        assert_eq!(answer.body["method"], "api_key");
        assert_eq!(answer.body["api_key_id"], "key-7");
        assert_eq!(answer.body["scopes"], json!(["read:items"]));
        assert_eq!(answer.body["roles"], json!(["service"]));
    }
}

#[tokio::test]
async fn unknown_revoked_and_hostile_keys_are_refused() {
    let (store, key, app) = key_app();
    let wrong = format!("{}x", key.expose());
    let answer = send(&app, get_with("/me", &[("x-api-key", &wrong)])).await;
    answer
        .problem(401, "invalid-credentials")
        .leaks_nothing_of(&wrong[10..]);
    assert_eq!(answer.www_authenticate(), [r#"ApiKey realm="api""#]);

    for hostile in ["", " ", &"k".repeat(600)] {
        let answer = send(&app, get_with("/me", &[("x-api-key", hostile)])).await;
        answer.problem(401, "invalid-credentials");
    }
    let request = http::Request::get("/me")
        .header(
            "x-api-key",
            http::HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    send(&app, request)
        .await
        .problem(401, "invalid-credentials");

    // Two keys, in the same header twice or in two places: refused as ambiguous.
    let answer = send(
        &app,
        get_with(
            "/me",
            &[("x-api-key", key.expose()), ("x-api-key", key.expose())],
        ),
    )
    .await;
    answer.problem(400, "invalid-request");
    let answer = send(
        &app,
        get_with(
            "/me",
            &[
                ("x-api-key", key.expose()),
                ("authorization", &format!("ApiKey {}", key.expose())),
            ],
        ),
    )
    .await;
    answer.problem(400, "invalid-request");

    // Revocation takes effect on the next request.
    assert!(store.revoke("key-7"));
    send(&app, get_with("/me", &[("x-api-key", key.expose())]))
        .await
        .problem(401, "invalid-credentials");
}

#[tokio::test]
async fn custom_key_header() {
    let store = InMemoryKeyStore::new();
    let key = "pcl_custom_header_key_0123456789abcdefghij";
    store.insert(key, ApiKeyGrant::new("k", "svc")).unwrap();
    let app = app(AuthLayer::required()
        .with(ApiKeyAuthenticator::new(store).header(HeaderName::from_static("x-service-key"))));
    assert_eq!(
        send(&app, get_with("/me", &[("x-service-key", key)]))
            .await
            .status,
        200
    );
    send(&app, get_with("/me", &[("x-api-key", key)]))
        .await
        .problem(401, "missing-credentials");
}

#[test]
fn keys_are_stored_only_as_hashes() {
    let store = InMemoryKeyStore::new();
    assert!(store.insert("short", ApiKeyGrant::new("k", "s")).is_err());
    let key = ApiKey::generate("pcl").unwrap();
    assert!(key.expose().starts_with("pcl_"));
    assert_eq!(key.expose().len(), 4 + 43);
    assert_eq!(format!("{key:?}"), "ApiKey(***)");
    let hash = key.hash();
    assert_eq!(ApiKeyHash::from_hex(&hash.to_hex()).unwrap(), hash);
    assert!(ApiKeyHash::from_hex("zz").is_err());
    assert!(ApiKeyHash::from_hex(&"g".repeat(64)).is_err());
    store.insert_hash(hash, ApiKeyGrant::new("k", "s"));
    assert!(!format!("{store:?}").contains(key.expose()));
    assert!(store.find(&ApiKeyHash::of(key.expose())).is_some());
    assert!(store.find(&ApiKeyHash::of("pcl_other")).is_none());
    assert_ne!(
        ApiKey::generate("pcl").unwrap().expose(),
        ApiKey::generate("pcl").unwrap().expose()
    );
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn basic_app() -> axum::Router {
    // Cheap argon2 parameters keep the test fast; production hashes use hash_password().
    let params = argon2::Params::new(1024, 1, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let phc = hasher
        .hash_password(b"correct horse", &salt)
        .unwrap()
        .to_string();
    let authenticator = BasicAuthenticator::builder()
        .user(BasicUser::new("ops", &phc).unwrap().roles(["operator"]))
        .max_concurrent(2)
        .build()
        .unwrap();
    app(AuthLayer::required().with(authenticator))
}

#[tokio::test]
async fn basic_accepts_the_right_password_only() {
    let app = basic_app();
    let answer = send(
        &app,
        get_with("/me", &[("authorization", &basic("ops", "correct horse"))]),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["method"], "basic");
    assert_eq!(answer.body["roles"], json!(["operator"]));

    for (user, password) in [("ops", "wrong"), ("nobody", "correct horse"), ("ops", "")] {
        let answer = send(
            &app,
            get_with("/me", &[("authorization", &basic(user, password))]),
        )
        .await;
        answer
            .problem(401, "invalid-credentials")
            .leaks_nothing_of("correct horse");
        assert_eq!(
            answer.www_authenticate(),
            [r#"Basic realm="api", charset="UTF-8""#]
        );
    }
    for malformed in [
        "Basic bm9jb2xvbg==",
        "Basic ////",
        "Basic b3BzOmNvcnJlY3QgaG9yc2U",
    ] {
        send(&app, get_with("/me", &[("authorization", malformed)]))
            .await
            .problem(401, "invalid-credentials");
    }
}

#[tokio::test]
async fn many_concurrent_logins_all_get_an_answer() {
    let app = basic_app();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let password = if i % 2 == 0 { "correct horse" } else { "nope" };
            send(
                &app,
                get_with("/me", &[("authorization", &basic("ops", password))]),
            )
            .await
            .status
            .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 16);
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 16);
}

#[test]
fn basic_configuration_is_checked() {
    let phc = hash_password("pw").unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert!(BasicUser::new("", &phc).is_err());
    assert!(BasicUser::new("a:b", &phc).is_err());
    assert!(BasicUser::new("ops", "plaintext").is_err());
    assert!(BasicUser::new("ops", "$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA").is_err());
    let duplicate = BasicAuthenticator::builder()
        .user(BasicUser::new("ops", &phc).unwrap())
        .user(BasicUser::new("ops", &phc).unwrap())
        .build();
    assert!(duplicate.is_err());
}

#[tokio::test]
async fn a_flood_of_logins_is_refused_with_429_instead_of_queueing_forever() {
    // Deliberately slow parameters so that checks overlap.
    let params = argon2::Params::new(8 * 1024, 3, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    let phc = hasher.hash_password(b"pw", &salt).unwrap().to_string();
    let user = BasicUser::new("ops", &phc).unwrap();
    assert!(
        !format!("{user:?}").contains(&phc[20..]),
        "Debug must not show the hash"
    );
    let authenticator = BasicAuthenticator::builder()
        .user(user)
        .max_concurrent(1)
        .max_waiting(0)
        .build()
        .unwrap();
    assert!(!format!("{authenticator:?}").contains(&phc[20..]));
    let app = app(AuthLayer::required().with(authenticator));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let answer = send(
                &app,
                get_with("/me", &[("authorization", &basic("ops", "pw"))]),
            )
            .await;
            (
                answer.status.as_u16(),
                answer.headers.get("retry-after").cloned(),
                answer.text,
            )
        }));
    }
    let mut ok = 0;
    let mut limited = 0;
    for task in tasks {
        let (status, retry_after, text) = task.await.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert_eq!(retry_after.unwrap(), "1");
                assert!(text.contains("urn:portcullis:problem:too-many-requests"));
            }
            other => panic!("unexpected status {other}: {text}"),
        }
    }
    assert!(ok >= 1, "the first login is checked");
    assert!(limited >= 1, "the rest are refused while one check runs");
    // Once the flood is over, logins work again.
    let answer = send(
        &app,
        get_with("/me", &[("authorization", &basic("ops", "pw"))]),
    )
    .await;
    assert_eq!(answer.status, 200);
}

#[test]
fn basic_users_need_a_real_bounded_hash() {
    assert!(
        BasicUser::new("ops", "$argon2id$v=19$m=19456,t=2,p=1").is_err(),
        "no salt or hash"
    );
    let huge = "$argon2id$v=19$m=4194304,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    assert!(BasicUser::new("ops", huge).is_err(), "4 GiB memory cost");
}

/// Authenticators used alone, without the layer's syntax check in front of them, never accept,
/// count or forward a credential the layer would have refused as malformed.
#[tokio::test]
async fn authenticators_used_alone_refuse_malformed_credentials() {
    use portcullis::auth::{Authentication, Authenticator};

    let basic = BasicAuthenticator::builder()
        .user(BasicUser::new("alice", &hash_password("pw").unwrap()).unwrap())
        .build()
        .unwrap();
    let keys = ApiKeyAuthenticator::new(InMemoryKeyStore::new());
    let jwt = es256_jwt();
    let authenticators: Vec<(&str, Box<dyn Authenticator>)> = vec![
        ("Basic", Box::new(basic)),
        ("ApiKey", Box::new(keys)),
        ("Bearer", Box::new(jwt)),
    ];
    for (scheme, authenticator) in &authenticators {
        for malformed in [
            "a b",
            "YWxpY2U6cHc= x",
            "a,b",
            "a=b",
            "==",
            "\tYWxpY2U6cHc=",
        ] {
            let request = http::Request::get("/")
                .header("authorization", format!("{scheme} {malformed}"))
                .body(())
                .unwrap();
            let (parts, ()) = request.into_parts();
            // Refused at once, or left to the next authenticator: never accepted, and never
            // a password check or a call started for it.
            let outcome = authenticator.authenticate(&parts);
            assert!(
                matches!(
                    outcome,
                    Authentication::Rejected(_) | Authentication::NotPresent
                ),
                "{scheme} {malformed:?}: {outcome:?}"
            );
        }
    }
}

/// Introspection sends the token to the identity provider: a malformed one is refused before any
/// call (the endpoint here does not exist, so a call would hang or fail, not reject at once).
#[cfg(feature = "oidc")]
#[tokio::test]
async fn introspection_used_alone_never_sends_a_malformed_token() {
    use portcullis::Introspector;
    use portcullis::auth::{Authentication, Authenticator};

    let introspector = Introspector::builder("http://127.0.0.1:9/introspect", "id", "secret")
        .allow_http_on_loopback()
        .any_audience()
        .build()
        .unwrap();
    for malformed in ["a b", "a,b", "a=b", "==", "\tabc"] {
        let request = http::Request::get("/")
            .header("authorization", format!("Bearer {malformed}"))
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        let outcome = introspector.authenticate(&parts);
        assert!(
            matches!(outcome, Authentication::Rejected(_)),
            "{malformed:?}: {outcome:?}"
        );
    }
    let (parts, ()) = http::Request::get("/")
        .header("authorization", "Bearer opaque-token")
        .body(())
        .unwrap()
        .into_parts();
    assert!(matches!(
        introspector.authenticate(&parts),
        Authentication::Pending(_)
    ));
}
