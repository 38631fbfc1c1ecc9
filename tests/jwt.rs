//! JWT bearer authentication through a real `Router`: every accepted algorithm and every
//! rejection the Foundation issue lists, each checked for status, headers and problem body.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use portcullis::auth::{JwtAuthenticator, JwtKey};
use portcullis::{AuthLayer, ClaimMapping};
use serde_json::json;

fn authenticator() -> JwtAuthenticator {
    let mut builder = JwtAuthenticator::builder()
        .issuer(ISSUER)
        .audience([AUDIENCE]);
    for key in all_keys() {
        builder = builder.key(key);
    }
    builder.build().unwrap()
}

fn jwt_app() -> axum::Router {
    app(AuthLayer::required().with(authenticator()))
}

/// Asserts a 401 `invalid_token` with the RFC 6750 challenge, and that the token is not echoed.
async fn assert_invalid_token(app: &axum::Router, token: &str, reason_hint: &str) {
    let answer = send(app, bearer(token)).await;
    answer.problem(401, "invalid-token");
    let challenge = answer.www_authenticate();
    assert_eq!(challenge.len(), 1, "{challenge:?}");
    assert!(
        challenge[0]
            .starts_with(r#"Bearer realm="api", error="invalid_token", error_description=""#),
        "{challenge:?} ({reason_hint})"
    );
    // Any recognisable piece of the token must not come back.
    if token.len() > 12 {
        answer.leaks_nothing_of(&token[token.len() - 12..]);
    }
}

#[tokio::test]
async fn every_configured_algorithm_is_accepted() {
    let app = jwt_app();
    for signer in [
        Signer::es256(),
        Signer::rs256(),
        Signer::eddsa(),
        Signer::hs256(),
    ] {
        let token = signer.sign(&claims("alice", "read:items write:items"));
        let answer = send(&app, bearer(&token)).await;
        assert_eq!(answer.status, 200, "{:?}: {}", signer.alg, answer.text);
        assert_eq!(answer.body["sub"], "alice");
        assert_eq!(answer.body["method"], "jwt");
        assert_eq!(answer.body["scopes"], json!(["read:items", "write:items"]));
    }
}

#[tokio::test]
async fn scheme_is_case_insensitive_and_spaces_are_tolerated() {
    let app = jwt_app();
    let token = Signer::es256().sign(&claims("alice", ""));
    for value in [
        format!("bearer {token}"),
        format!("BEARER {token}"),
        format!("Bearer   {token}"),
    ] {
        let answer = send(&app, get_with("/me", &[("authorization", &value)])).await;
        assert_eq!(answer.status, 200, "{value}");
    }
}

#[tokio::test]
async fn missing_token_gets_a_challenge_without_error_code() {
    let app = jwt_app();
    let answer = send(&app, get_with("/me", &[])).await;
    answer.problem(401, "missing-credentials");
    assert_eq!(answer.www_authenticate(), [r#"Bearer realm="api""#]);
}

#[tokio::test]
async fn alg_none_is_refused_in_any_casing() {
    let app = jwt_app();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({ "alg": alg, "kid": "es" }).to_string();
        let body = claims("mallory", "admin").to_string();
        for signature in ["", "AAAA"] {
            let token = format!(
                "{}.{}.{signature}",
                b64(header.as_bytes()),
                b64(body.as_bytes())
            );
            assert_invalid_token(&app, &token, alg).await;
        }
    }
}

#[tokio::test]
async fn hmac_signed_with_the_rsa_public_key_is_refused() {
    // The classic confusion attack: sign HS256 with the server's RSA public key as the secret.
    let app = jwt_app();
    let public_pem = fixture("rs256_public.pem");
    let key = EncodingKey::from_secret(&public_pem);
    for kid in ["rs", "es"] {
        let header = json!({ "alg": "HS256", "kid": kid }).to_string();
        let token = sign_raw(
            &header,
            &claims("mallory", "admin").to_string(),
            &key,
            Algorithm::HS256,
        );
        let answer = send(&app, bearer(&token)).await;
        answer.problem(401, "invalid-token");
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .contains("algorithm")
        );
    }
}

#[tokio::test]
async fn algorithm_must_match_the_key_named_by_kid() {
    let app = jwt_app();
    // A valid RS256 signature, but presented as the ES key.
    let mut signer = Signer::rs256();
    signer.kid = Some("es");
    assert_invalid_token(&app, &signer.sign(&claims("alice", "")), "alg/key mismatch").await;
    // RS256 key used with PS256.
    let header = json!({ "alg": "PS256", "kid": "rs" }).to_string();
    let key = EncodingKey::from_rsa_pem(&fixture("rs256_private.pem")).unwrap();
    let token = sign_raw(
        &header,
        &claims("alice", "").to_string(),
        &key,
        Algorithm::PS256,
    );
    assert_invalid_token(&app, &token, "PS256 on an RS256 key").await;
}

#[tokio::test]
async fn embedded_and_linked_keys_are_never_trusted() {
    let app = jwt_app();
    let signer = Signer::es256();
    for (name, value) in [
        (
            "jwk",
            json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}),
        ),
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!(["MIIB"])),
    ] {
        let mut header = signer.header();
        header[name] = value;
        let token = signer.sign_with_header(&header, &claims("alice", ""));
        assert_invalid_token(&app, &token, name).await;
    }
}

#[tokio::test]
async fn crit_is_refused() {
    let app = jwt_app();
    let signer = Signer::es256();
    for crit in [json!(["exp"]), json!(["b64"]), json!([]), json!("x")] {
        let mut header = signer.header();
        header["crit"] = crit;
        header["b64"] = json!(false);
        assert_invalid_token(
            &app,
            &signer.sign_with_header(&header, &claims("a", "")),
            "crit",
        )
        .await;
    }
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_parsing() {
    let app = jwt_app();
    let mut big = claims("alice", "");
    big["padding"] = json!("x".repeat(9 * 1024));
    let token = Signer::es256().sign(&big);
    let answer = send(&app, bearer(&token)).await;
    answer.problem(401, "invalid-token");
    assert!(
        answer.body["detail"]
            .as_str()
            .unwrap()
            .contains("too large")
    );
}

#[tokio::test]
async fn malformed_and_non_canonical_base64_is_refused() {
    let app = jwt_app();
    let good = Signer::es256().sign(&claims("alice", ""));
    let parts: Vec<&str> = good.split('.').collect();
    let (h, p, s) = (parts[0], parts[1], parts[2]);
    // Flip the last character of the signature to a sibling that decodes to the same bytes
    // except for the unused trailing bits: a non-canonical spelling of a valid signature.
    let last = s.chars().last().unwrap();
    let sibling = match last {
        'A'..='Y' | 'a'..='y' | '0'..='8' => char::from(last as u8 + 1),
        _ => 'A',
    };
    let non_canonical = format!("{h}.{p}.{}{sibling}", &s[..s.len() - 1]);
    let padded = format!("{h}.{p}.{s}=");
    for token in [
        non_canonical.as_str(),
        padded.as_str(),
        "a.b",
        "a.b.c.d",
        "..",
        &format!("{h}.{p}."),
        &format!("{h}..{s}"),
        &format!("{}+.{p}.{s}", &h[..h.len() - 1]),
        &format!("{h}.{p}.{s}.{s}"),
        &format!("{}.{p}.{s}", b64(b"not json")),
        &format!("{}.{p}.{s}", b64(b"[1,2]")),
    ] {
        assert_invalid_token(&app, token, token).await;
    }
}

#[tokio::test]
async fn duplicate_members_are_refused_in_header_and_claims() {
    let app = jwt_app();
    let signer = Signer::es256();
    let key = &signer.key;
    let body = claims("alice", "").to_string();
    let dup_header = r#"{"alg":"ES256","kid":"es","alg":"ES256"}"#;
    assert_invalid_token(
        &app,
        &sign_raw(dup_header, &body, key, Algorithm::ES256),
        "dup header",
    )
    .await;

    let dup_claims = format!(
        r#"{{"iss":"{ISSUER}","aud":"{AUDIENCE}","sub":"alice","sub":"admin","exp":{}}}"#,
        now() + 60
    );
    let header = signer.header().to_string();
    assert_invalid_token(
        &app,
        &sign_raw(&header, &dup_claims, key, Algorithm::ES256),
        "dup claims",
    )
    .await;
}

#[tokio::test]
async fn claims_of_the_wrong_json_type_are_refused() {
    let app = jwt_app();
    let signer = Signer::es256();
    for (name, value) in [
        ("iss", json!([ISSUER])),
        ("exp", json!((now() + 60).to_string())),
        ("nbf", json!("0")),
        ("iat", json!(true)),
        ("sub", json!(42)),
        ("aud", json!(7)),
        ("aud", json!([AUDIENCE, 7])),
        ("jti", json!({})),
        ("scope", json!(["ok", 1])),
        ("scope", json!(12)),
    ] {
        let mut c = claims("alice", "read");
        c[name] = value;
        let answer = send(&app, bearer(&signer.sign(&c))).await;
        answer.problem(401, "invalid-token");
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .contains("wrong type"),
            "{name}: {}",
            answer.text
        );
    }
}

#[tokio::test]
async fn time_claims_are_checked_with_leeway() {
    let app = jwt_app();
    let signer = Signer::es256();
    let cases = [
        ("exp", json!(now() - 120), "expired"),
        ("nbf", json!(now() + 600), "not valid yet"),
        ("iat", json!(now() + 600), "issued in the future"),
    ];
    for (name, value, detail) in cases {
        let mut c = claims("alice", "");
        c[name] = value;
        let answer = send(&app, bearer(&signer.sign(&c))).await;
        answer.problem(401, "invalid-token");
        assert!(
            answer.body["detail"].as_str().unwrap().contains(detail),
            "{}",
            answer.text
        );
    }
    // Within the default 60 s leeway.
    let mut c = claims("alice", "");
    c["exp"] = json!(now() - 30);
    c["nbf"] = json!(now() + 30);
    assert_eq!(send(&app, bearer(&signer.sign(&c))).await.status, 200);
    // Fractional NumericDates are accepted.
    let mut c = claims("alice", "");
    c["exp"] = json!(now() as f64 + 100.5);
    assert_eq!(send(&app, bearer(&signer.sign(&c))).await.status, 200);
}

#[tokio::test]
async fn exp_and_sub_are_required() {
    let app = jwt_app();
    let signer = Signer::es256();
    for name in ["exp", "sub"] {
        let mut c = claims("alice", "");
        c.as_object_mut().unwrap().remove(name);
        assert_invalid_token(&app, &signer.sign(&c), name).await;
    }
    let lenient = common::app(
        AuthLayer::required().with(
            JwtAuthenticator::builder()
                .key(all_keys().remove(0))
                .issuer(ISSUER)
                .audience([AUDIENCE])
                .allow_missing_exp()
                .build()
                .unwrap(),
        ),
    );
    let mut c = claims("alice", "");
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(send(&lenient, bearer(&signer.sign(&c))).await.status, 200);
}

#[tokio::test]
async fn issuer_and_audience_are_checked() {
    let app = jwt_app();
    let signer = Signer::es256();
    for (name, value) in [
        ("iss", json!("https://evil.test")),
        ("iss", json!("https://issuer.test/")),
        ("aud", json!("other-api")),
        ("aud", json!(["other-api", "third"])),
        ("aud", json!([])),
    ] {
        let mut c = claims("alice", "");
        c[name] = value;
        assert_invalid_token(&app, &signer.sign(&c), name).await;
    }
    for name in ["iss", "aud"] {
        let mut c = claims("alice", "");
        c.as_object_mut().unwrap().remove(name);
        assert_invalid_token(&app, &signer.sign(&c), name).await;
    }
    let mut c = claims("alice", "");
    c["aud"] = json!(["other-api", AUDIENCE]);
    assert_eq!(send(&app, bearer(&signer.sign(&c))).await.status, 200);
}

#[tokio::test]
async fn kid_selects_the_key() {
    let app = jwt_app();
    let mut signer = Signer::es256();
    signer.kid = Some("unknown");
    assert_invalid_token(&app, &signer.sign(&claims("a", "")), "unknown kid").await;
    signer.kid = None;
    assert_invalid_token(&app, &signer.sign(&claims("a", "")), "no kid, several keys").await;
    // A token signed by a foreign key under a known kid.
    assert_invalid_token(
        &app,
        &Signer::es256_foreign().sign(&claims("a", "")),
        "foreign",
    )
    .await;

    // With a single key, kid may be absent.
    let single = common::app(
        AuthLayer::required().with(
            JwtAuthenticator::builder()
                .key(JwtKey::ec_pem(&fixture("es256_public.pem"), Algorithm::ES256).unwrap())
                .any_issuer()
                .audience([AUDIENCE])
                .build()
                .unwrap(),
        ),
    );
    assert_eq!(
        send(&single, bearer(&signer.sign(&claims("a", ""))))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn tampered_tokens_are_refused() {
    let app = jwt_app();
    let token = Signer::es256().sign(&claims("alice", "read"));
    let parts: Vec<&str> = token.split('.').collect();
    let forged_claims = b64(claims("alice", "admin").to_string().as_bytes());
    let tampered = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
    assert_invalid_token(&app, &tampered, "tampered").await;
}

#[tokio::test]
async fn typ_is_checked_when_configured() {
    let app = app(AuthLayer::required().with(
        JwtAuthenticator::builder()
            .key(all_keys().remove(0))
            .issuer(ISSUER)
            .audience([AUDIENCE])
            .typ(["at+jwt"])
            .build()
            .unwrap(),
    ));
    let signer = Signer::es256();
    for (typ, ok) in [
        (Some("at+jwt"), true),
        (Some("AT+JWT"), true),
        (Some("application/at+jwt"), true),
        (Some("JWT"), false),
        (None, false),
    ] {
        let mut header = signer.header();
        match typ {
            Some(typ) => header["typ"] = json!(typ),
            None => {
                header.as_object_mut().unwrap().remove("typ");
            }
        }
        let answer = send(
            &app,
            bearer(&signer.sign_with_header(&header, &claims("a", ""))),
        )
        .await;
        assert_eq!(answer.status == 200, ok, "{typ:?}: {}", answer.text);
    }
}

#[tokio::test]
async fn roles_and_scopes_follow_the_claim_mapping() {
    let app = app(AuthLayer::required().with(
        JwtAuthenticator::builder()
            .key(all_keys().remove(0))
            .issuer(ISSUER)
            .audience([AUDIENCE])
            .claim_mapping(
                ClaimMapping::default()
                    .scopes_from(["scope", "permissions"])
                    .roles_from(["/realm_access/roles"]),
            )
            .build()
            .unwrap(),
    ));
    let mut c = claims("alice", "read:items");
    c["permissions"] = json!(["delete:items"]);
    c["realm_access"] = json!({ "roles": ["admin", "editor"] });
    let answer = send(&app, bearer(&Signer::es256().sign(&c))).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["scopes"], json!(["read:items", "delete:items"]));
    assert_eq!(answer.body["roles"], json!(["admin", "editor"]));
}

/// A clock the test moves by hand.
fn manual_clock() -> (
    Arc<AtomicU64>,
    impl Fn() -> std::time::SystemTime + Send + Sync,
) {
    let seconds = Arc::new(AtomicU64::new(now()));
    let handle = seconds.clone();
    (seconds, move || {
        UNIX_EPOCH + Duration::from_secs(handle.load(Ordering::SeqCst))
    })
}

#[tokio::test]
async fn cached_tokens_still_expire() {
    let (clock, now_fn) = manual_clock();
    let jwt = JwtAuthenticator::builder()
        .key(all_keys().remove(0))
        .issuer(ISSUER)
        .audience([AUDIENCE])
        .leeway(Duration::ZERO)
        .clock(now_fn)
        .build()
        .unwrap();
    let start = clock.load(Ordering::SeqCst);
    let mut c = claims("alice", "");
    c["iat"] = json!(start);
    c["exp"] = json!(start + 10);
    let token = Signer::es256().sign(&c);
    assert!(jwt.verify(&token).is_ok());
    assert!(jwt.verify(&token).is_ok(), "served from the cache");
    clock.store(start + 10, Ordering::SeqCst);
    let rejection = jwt.verify(&token).unwrap_err();
    assert_eq!(rejection.reason(), "expired");
    assert_eq!(jwt.verify(&token).unwrap_err().reason(), "expired");
}

#[tokio::test]
async fn removing_a_key_drops_its_cached_tokens() {
    let jwt = authenticator();
    let app = app(AuthLayer::required().with(jwt.clone()));
    let token = Signer::es256().sign(&claims("alice", ""));
    assert_eq!(send(&app, bearer(&token)).await.status, 200);
    assert_eq!(send(&app, bearer(&token)).await.status, 200);
    assert!(jwt.remove_key("es"));
    assert!(!jwt.remove_key("es"));
    assert_invalid_token(&app, &token, "removed key").await;
    // Adding it back makes the same token valid again, verified from scratch.
    jwt.add_key(all_keys().remove(0)).unwrap();
    assert_eq!(send(&app, bearer(&token)).await.status, 200);
    assert!(jwt.add_key(all_keys().remove(0)).is_err(), "duplicate kid");
}

#[tokio::test]
async fn forget_evicts_one_token() {
    let jwt = authenticator();
    let token = Signer::es256().sign(&claims("alice", ""));
    assert!(jwt.verify(&token).is_ok());
    jwt.forget(&token);
    assert!(jwt.verify(&token).is_ok(), "still valid, verified again");
}

#[tokio::test]
async fn a_cache_hit_requires_the_exact_same_token() {
    // Warm the cache, then present the same claims with a broken signature.
    let jwt = authenticator();
    let token = Signer::es256().sign(&claims("alice", ""));
    assert!(jwt.verify(&token).is_ok());
    let mut broken = token.clone();
    broken.pop();
    broken.push(if token.ends_with('A') { 'Q' } else { 'A' });
    assert!(jwt.verify(&broken).is_err());
}

#[test]
fn configuration_mistakes_are_errors() {
    let key = || all_keys().remove(0);
    let builder = || {
        JwtAuthenticator::builder()
            .issuer(ISSUER)
            .audience([AUDIENCE])
    };
    assert!(
        builder().key(key()).build().is_ok(),
        "the baseline is valid"
    );
    assert!(builder().build().is_err(), "no key");
    let no_audience = JwtAuthenticator::builder()
        .key(key())
        .issuer(ISSUER)
        .build();
    assert!(no_audience.is_err(), "no audience");
    let no_issuer = JwtAuthenticator::builder()
        .key(key())
        .audience([AUDIENCE])
        .build();
    assert!(no_issuer.is_err(), "no issuer");
    assert!(
        builder().key(key()).any_audience().build().is_err(),
        "audience and any_audience"
    );
    assert!(
        builder().key(key()).any_issuer().build().is_err(),
        "issuer and any_issuer"
    );
    let empty = JwtAuthenticator::builder()
        .key(key())
        .issuer(ISSUER)
        .audience(Vec::<String>::new())
        .build();
    assert!(empty.is_err(), "empty audience list");
    assert!(
        builder().key(key()).key(key()).build().is_err(),
        "duplicate kid"
    );
    let no_kid = || JwtKey::hmac(HMAC_SECRET, Algorithm::HS256).unwrap();
    assert!(
        builder().key(no_kid()).key(key()).build().is_err(),
        "kid required with several keys"
    );
    assert!(JwtKey::hmac(b"too short", Algorithm::HS256).is_err());
    assert!(JwtKey::hmac(&[7; 40], Algorithm::HS384).is_err());
    assert!(JwtKey::hmac(HMAC_SECRET, Algorithm::RS256).is_err());
    assert!(JwtKey::rsa_pem(&fixture("rs256_public.pem"), Algorithm::ES256).is_err());
    assert!(JwtKey::ec_pem(b"garbage", Algorithm::ES256).is_err());
    assert!(
        JwtKey::ec_pem(&fixture("es256_public.pem"), Algorithm::ES384).is_err(),
        "a P-256 key cannot verify ES384"
    );
    let key_debug = format!("{:?}", JwtKey::hmac(HMAC_SECRET, Algorithm::HS256).unwrap());
    assert!(!key_debug.contains("0123456789"), "{key_debug}");
}

#[test]
fn jwk_keys_are_checked_for_use_alg_and_curve() {
    let ec = r#"{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"k1",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;
    let key = JwtKey::jwk(ec).unwrap();
    assert_eq!(key.kid(), Some("k1"));
    assert_eq!(key.algorithm(), Algorithm::ES256);
    for bad in [
        ec.replace(r#""use":"sig""#, r#""use":"enc""#),
        ec.replace(r#""alg":"ES256""#, r#""alg":"ES384""#),
        ec.replace(r#""alg":"ES256""#, r#""alg":"RS256""#),
        ec.replace(r#""alg":"ES256","#, ""),
        ec.replace(r#""use":"sig""#, r#""key_ops":["encrypt"]"#),
    ] {
        assert!(JwtKey::jwk(&bad).is_err(), "{bad}");
    }
    let oct_short = r#"{"kty":"oct","alg":"HS256","k":"c2hvcnQ"}"#;
    assert!(JwtKey::jwk(oct_short).is_err());
    // 32 bytes are enough for HS256 but not for HS512.
    let k = b64(&[7u8; 32]);
    assert!(JwtKey::jwk(&format!(r#"{{"kty":"oct","alg":"HS256","k":"{k}"}}"#)).is_ok());
    assert!(JwtKey::jwk(&format!(r#"{{"kty":"oct","alg":"HS512","k":"{k}"}}"#)).is_err());
}

#[tokio::test]
async fn sender_constrained_tokens_are_not_bearer_tokens() {
    let app = jwt_app();
    let mut c = claims("alice", "");
    c["cnf"] = json!({ "jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" });
    let answer = send(&app, bearer(&Signer::es256().sign(&c))).await;
    answer.problem(401, "invalid-token");
    assert!(
        answer.body["detail"]
            .as_str()
            .unwrap()
            .contains("sender-constrained")
    );
}

#[tokio::test]
async fn revoked_tokens_are_refused_even_from_the_cache() {
    use portcullis::auth::{InMemoryDenyList, JtiDenyList};
    let revoked = Arc::new(InMemoryDenyList::new(1_000));
    let jwt = JwtAuthenticator::builder()
        .key(all_keys().remove(0))
        .issuer(ISSUER)
        .audience([AUDIENCE])
        .deny_list(revoked.clone())
        .build()
        .unwrap();
    let app = common::app(AuthLayer::required().with(jwt));
    let mut c = claims("alice", "");
    c["jti"] = json!("token-1");
    let token = Signer::es256().sign(&c);
    assert_eq!(send(&app, bearer(&token)).await.status, 200);
    assert_eq!(send(&app, bearer(&token)).await.status, 200, "now cached");
    let until = UNIX_EPOCH + Duration::from_secs(now() + 3600);
    assert!(revoked.deny(Some(ISSUER), "token-1", until));
    assert!(revoked.is_denied(Some(ISSUER), "token-1"));
    assert!(!revoked.is_denied(Some("https://other.test"), "token-1"));
    let answer = send(&app, bearer(&token)).await;
    answer.problem(401, "invalid-token");
    assert!(answer.body["detail"].as_str().unwrap().contains("revoked"));
    // Other tokens of the same subject are unaffected.
    c["jti"] = json!("token-2");
    assert_eq!(
        send(&app, bearer(&Signer::es256().sign(&c))).await.status,
        200
    );
}

/// Issue #16 (RFC 7519 §7.2 step 8, RFC 8725): a header announcing a nested JWT is refused, in
/// any casing and with or without `application/`, as a 401 `invalid_token`; other content types
/// are not nested tokens.
#[tokio::test]
async fn nested_tokens_are_refused() {
    let app = jwt_app();
    let signer = Signer::es256();
    for cty in ["JWT", "jwt", "Jwt", "application/jwt", "APPLICATION/JWT"] {
        let mut header = signer.header();
        header["cty"] = json!(cty);
        let token = signer.sign_with_header(&header, &claims("alice", ""));
        assert_invalid_token(&app, &token, cty).await;
        let answer = send(&app, bearer(&token)).await;
        assert!(
            answer.body["detail"].as_str().unwrap().contains("Nested"),
            "{cty}: {}",
            answer.text
        );
        let rejection = authenticator().verify(&token).unwrap_err();
        assert_eq!(rejection.reason(), "nested_jwt", "{cty}");
    }
    let mut header = signer.header();
    header["cty"] = json!(["JWT"]);
    let token = signer.sign_with_header(&header, &claims("alice", ""));
    assert_invalid_token(&app, &token, "cty not a string").await;
    header["cty"] = json!("json");
    let token = signer.sign_with_header(&header, &claims("alice", ""));
    assert_eq!(send(&app, bearer(&token)).await.status, 200);
}

/// Issue #16: a NumericDate no clock can hold is malformed, not "far in the future": refused
/// with a 401 `invalid_token` and its own reason, in `exp`, `nbf` and `iat`.
#[tokio::test]
async fn dates_out_of_range_are_refused() {
    let app = jwt_app();
    let signer = Signer::es256();
    let out_of_range = [
        ("exp", "1e300"),
        ("exp", "18446744073709551615"),
        ("exp", "18446744073709551616"),
        ("exp", "99999999999999999999999999999999"),
        ("exp", "253402300800"),
        ("exp", "253402300800.5"),
        ("exp", "-5"),
        ("exp", "-0.5"),
        ("exp", "-1e300"),
        ("nbf", "-1"),
        ("nbf", "1e300"),
        ("iat", "-1"),
        ("iat", "1e19"),
    ];
    for (name, raw) in out_of_range {
        let mut c = claims("alice", "");
        c[name] = json!(0);
        // Written by hand: serde_json would print 1e300 as 1e300 but not 1e19 as an integer.
        let text = c
            .to_string()
            .replace(&format!("\"{name}\":0"), &format!("\"{name}\":{raw}"));
        assert!(text.contains(raw), "{text}");
        let token = sign_raw(&signer.header().to_string(), &text, &signer.key, signer.alg);
        assert_invalid_token(&app, &token, raw).await;
        let answer = send(&app, bearer(&token)).await;
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .contains("out of range"),
            "{name}={raw}: {}",
            answer.text
        );
        let rejection = authenticator().verify(&token).unwrap_err();
        assert_eq!(rejection.reason(), "date_out_of_range", "{name}={raw}");
    }
    // The last second of the year 9999 is still a date.
    let mut c = claims("alice", "");
    c["exp"] = json!(253_402_300_799u64);
    assert_eq!(send(&app, bearer(&signer.sign(&c))).await.status, 200);
}
