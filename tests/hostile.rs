//! Property tests: whatever bytes arrive in the credential headers, the layer answers 400 or 401
//! (or 200 for a real credential) and never panics or answers 5xx.

mod common;

use common::*;
use http::HeaderValue;
use portcullis::AuthLayer;
use portcullis::auth::{ApiKeyAuthenticator, InMemoryKeyStore, JwtAuthenticator};
use proptest::prelude::*;

fn hostile_app() -> axum::Router {
    let mut builder = JwtAuthenticator::builder()
        .issuer(ISSUER)
        .audience([AUDIENCE]);
    for key in all_keys() {
        builder = builder.key(key);
    }
    app(AuthLayer::required()
        .with(builder.build().unwrap())
        .with(ApiKeyAuthenticator::new(InMemoryKeyStore::new())))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn check(
    app: &axum::Router,
    rt: &tokio::runtime::Runtime,
    headers: Vec<(&'static str, HeaderValue)>,
) {
    let mut request = http::Request::get("/me");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let answer = rt.block_on(send(app, request.body(axum::body::Body::empty()).unwrap()));
    let status = answer.status.as_u16();
    assert!(
        matches!(status, 400 | 401),
        "status {status}: {}",
        answer.text
    );
    assert_eq!(answer.headers["content-type"], "application/problem+json");
    assert!(!answer.www_authenticate().is_empty());
}

/// Token-shaped strings: three dot-separated segments of base64url-ish characters, sometimes
/// wrapping a JSON header, so the generator reaches past the first checks.
fn tokenish() -> impl Strategy<Value = String> {
    let segment = "[A-Za-z0-9_=+/-]{0,64}";
    let header = prop_oneof![
        Just(r#"{"alg":"ES256","kid":"es"}"#.to_owned()),
        Just(r#"{"alg":"HS256"}"#.to_owned()),
        Just(r#"{"alg":"none"}"#.to_owned()),
        "\\{.{0,40}\\}",
    ];
    (header, segment, segment).prop_map(|(h, p, s)| format!("{}.{p}.{s}", b64(h.as_bytes())))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_authorization_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()); };
        check(&hostile_app(), &runtime(), vec![("authorization", value)]);
    }

    #[test]
    fn arbitrary_bearer_tokens(token in tokenish()) {
        let value = HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
        check(&hostile_app(), &runtime(), vec![("authorization", value)]);
    }

    #[test]
    fn arbitrary_scheme_and_credentials(scheme in "[ -~]{0,12}", rest in "[ -~]{0,80}") {
        let Ok(value) = HeaderValue::from_str(&format!("{scheme} {rest}")) else { return Ok(()); };
        check(&hostile_app(), &runtime(), vec![("authorization", value)]);
    }

    #[test]
    fn arbitrary_api_key_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()); };
        check(&hostile_app(), &runtime(), vec![("x-api-key", value)]);
    }
}

/// Arbitrary JSON, nested a little: what a signed token's claims may hold.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("editor"),
            Just("items-api:editor"),
            Just(""),
            Just(" a  b ")
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(3, 48, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z:/~0-9-]{0,10}", inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Preset-style reading and checks: roles from values, object keys and a prefixed path; client;
/// tenant; a required claim; a client allowlist.
fn preset_like_jwt() -> JwtAuthenticator {
    use portcullis::{ClaimMapping, ClaimSource};
    JwtAuthenticator::builder()
        .key(all_keys().remove(3))
        .issuer(ISSUER)
        .audience([AUDIENCE])
        .claim_mapping(
            ClaimMapping::default()
                .roles_from([
                    ClaimSource::path("roles"),
                    ClaimSource::path("/realm_access/roles"),
                    ClaimSource::keys("urn:zitadel:iam:org:project:1:roles"),
                    ClaimSource::path("/resource_access/items-api/roles").prefixed("items-api:"),
                ])
                .scopes_from(["scope", "scp"])
                .client_from(["azp", "appid"])
                .tenant_from(["tid"]),
        )
        .require_claim("typ", ["Bearer"])
        .clients(["web", "items-api:editor"])
        .build()
        .unwrap()
}

/// The property's accepting branch, reached for sure: well-formed claims of every source.
#[test]
fn preset_like_claims_are_read_from_every_source() {
    let mut claims = claims("alice", "read");
    claims["roles"] = serde_json::json!(["a", "", "a"]);
    claims["realm_access"] = serde_json::json!({ "roles": "b  c" });
    claims["urn:zitadel:iam:org:project:1:roles"] =
        serde_json::json!({ "d": {}, "items-api:x": 1 });
    claims["resource_access"] = serde_json::json!({ "items-api": { "roles": ["x", "e"] } });
    claims["azp"] = serde_json::json!("web");
    claims["tid"] = serde_json::json!("t");
    claims["typ"] = serde_json::json!("Bearer");
    let identity = preset_like_jwt()
        .verify(&Signer::hs256().sign(&claims))
        .unwrap();
    // `items-api:x` read as a key and as a prefixed client role is one role.
    assert_eq!(
        identity.roles(),
        ["a", "b", "c", "d", "items-api:x", "items-api:e"]
    );
    assert_eq!(identity.scopes(), ["read"]);
    assert_eq!(
        (identity.client_id(), identity.tenant()),
        (Some("web"), Some("t"))
    );
}

/// Mostly what a mapping accepts (a string, an array of strings, nothing), sometimes anything.
fn mapped_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let word = prop_oneof!["[ -~]{0,8}", Just("items-api:editor".to_owned())];
    prop_oneof![
        2 => proptest::collection::vec(word.clone(), 0..6)
            .prop_map(|words| Value::Array(words.into_iter().map(Value::String).collect())),
        1 => word.prop_map(Value::String),
        1 => Just(Value::Null),
        1 => json_value(),
    ]
}

/// Mostly an object keyed by role, sometimes anything.
fn keyed_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        3 => proptest::collection::btree_map("[ -~]{0,8}", json_value(), 0..6)
            .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        1 => json_value(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Correctly signed tokens with arbitrary claims where the mapping and the preset-style
    /// checks read (roles from values, object keys and prefixed paths; client; tenant; a
    /// required claim; a client allowlist): an identity within the bounds, or a clear refusal,
    /// never a panic.
    #[test]
    fn signed_tokens_with_arbitrary_claims(
        roles in mapped_value(),
        realm in mapped_value(),
        keyed in keyed_value(),
        scope in mapped_value(),
        client in prop_oneof![3 => Just(serde_json::json!("web")), 1 => json_value()],
        tenant in mapped_value(),
        typ in prop_oneof![3 => Just(serde_json::json!("Bearer")), 1 => json_value()],
    ) {
        let jwt = preset_like_jwt();
        let mut claims = claims("alice", "read");
        for (name, value) in [
            ("roles", roles),
            ("realm_access", serde_json::json!({ "roles": realm })),
            ("urn:zitadel:iam:org:project:1:roles", keyed),
            ("resource_access", serde_json::json!({ "items-api": { "roles": scope.clone() } })),
            ("scp", scope),
            ("azp", client),
            ("tid", tenant),
            ("typ", typ),
        ] {
            claims[name] = value;
        }
        match jwt.verify(&Signer::hs256().sign(&claims)) {
            Ok(identity) => {
                prop_assert!(identity.roles().len() <= 256 && identity.scopes().len() <= 256);
                prop_assert!(identity.roles().iter().chain(identity.scopes()).all(|r| !r.is_empty()));
                prop_assert!(matches!(identity.client_id(), Some("web" | "items-api:editor")));
                prop_assert_eq!(identity.claim("typ"), Some(&serde_json::json!("Bearer")));
            }
            Err(rejection) => {
                prop_assert_eq!(rejection.status(), 401);
                prop_assert!(
                    matches!(
                        rejection.reason().as_str(),
                        "claim_type" | "claim_not_accepted" | "bad_client"
                    ),
                    "{}",
                    rejection.reason().as_str()
                );
            }
        }
    }
}

/// The largest claims a token may carry, made of what costs the mapping most (a 8 KiB token of
/// one-character roles, repeated, empty, and as object keys): refused or mapped, in bounded work.
#[test]
fn mapping_work_is_bounded_by_the_token() {
    use portcullis::{ClaimMapping, ClaimSource};
    let jwt = JwtAuthenticator::builder()
        .key(all_keys().remove(3))
        .issuer(ISSUER)
        .audience([AUDIENCE])
        .max_token_bytes(64 * 1024)
        .claim_mapping(
            ClaimMapping::default()
                .roles_from([ClaimSource::path("roles"), ClaimSource::keys("keyed")]),
        )
        .build()
        .unwrap();
    let keyed: serde_json::Map<String, serde_json::Value> = (0..5000)
        .map(|i| (format!("{i}"), serde_json::json!(0)))
        .collect();
    for (roles, keyed) in [
        (serde_json::json!(vec!["a"; 10_000]), serde_json::json!({})),
        (serde_json::json!(" ".repeat(40_000)), serde_json::json!({})),
        (serde_json::json!([]), serde_json::Value::Object(keyed)),
    ] {
        let mut claims = claims("alice", "read");
        claims["roles"] = roles;
        claims["keyed"] = keyed;
        let rejection = jwt.verify(&Signer::hs256().sign(&claims)).unwrap_err();
        assert_eq!(rejection.reason().as_str(), "claim_type");
    }
}
