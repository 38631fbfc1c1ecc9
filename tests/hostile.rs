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
