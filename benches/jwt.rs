//! JWT verification cost per algorithm: plain `jsonwebtoken::decode` (the reference), portcullis
//! cold (cache off: every check of the list plus the signature) and portcullis through the
//! verified-token cache (a hit: SHA-256 of the token, one cache lookup, the `exp` check).

use std::hint::black_box;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use portcullis::auth::{JwtAuthenticator, JwtKey};
use serde_json::{Value, json};

struct Case {
    name: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    key: JwtKey,
}

fn cases() -> Vec<Case> {
    let secret = b"0123456789abcdef0123456789abcdef-bench-secret";
    vec![
        Case {
            name: "HS256",
            alg: Algorithm::HS256,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            key: JwtKey::hmac(secret, Algorithm::HS256).unwrap(),
        },
        Case {
            name: "RS256",
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(include_bytes!(
                "../tests/fixtures/rs256_private.pem"
            ))
            .unwrap(),
            decoding: DecodingKey::from_rsa_pem(include_bytes!(
                "../tests/fixtures/rs256_public.pem"
            ))
            .unwrap(),
            key: JwtKey::rsa_pem(
                include_bytes!("../tests/fixtures/rs256_public.pem"),
                Algorithm::RS256,
            )
            .unwrap(),
        },
        Case {
            name: "ES256",
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(include_bytes!(
                "../tests/fixtures/es256_private.pem"
            ))
            .unwrap(),
            decoding: DecodingKey::from_ec_pem(include_bytes!(
                "../tests/fixtures/es256_public.pem"
            ))
            .unwrap(),
            key: JwtKey::ec_pem(
                include_bytes!("../tests/fixtures/es256_public.pem"),
                Algorithm::ES256,
            )
            .unwrap(),
        },
        Case {
            name: "EdDSA",
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(include_bytes!(
                "../tests/fixtures/ed25519_private.pem"
            ))
            .unwrap(),
            decoding: DecodingKey::from_ed_pem(include_bytes!(
                "../tests/fixtures/ed25519_public.pem"
            ))
            .unwrap(),
            key: JwtKey::ed_pem(include_bytes!("../tests/fixtures/ed25519_public.pem")).unwrap(),
        },
    ]
}

fn token(case: &Case) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": "https://issuer.bench", "aud": "bench-api", "sub": "user-1234567890",
        "scope": "read:items write:items", "roles": ["editor"], "iat": now, "exp": now + 86_400,
    });
    jsonwebtoken::encode(&Header::new(case.alg), &claims, &case.encoding).unwrap()
}

fn authenticator(case: &Case, cache: u64) -> JwtAuthenticator {
    JwtAuthenticator::builder()
        .key(case.key.clone())
        .issuer("https://issuer.bench")
        .audience(["bench-api"])
        .cache_max_bytes(cache)
        .build()
        .unwrap()
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt_verify");
    for case in cases() {
        let token = token(&case);
        let mut validation = Validation::new(case.alg);
        validation.set_issuer(&["https://issuer.bench"]);
        validation.set_audience(&["bench-api"]);
        group.bench_with_input(
            BenchmarkId::new("jsonwebtoken_decode", case.name),
            &token,
            |b, t| {
                b.iter(|| {
                    jsonwebtoken::decode::<Value>(black_box(t), &case.decoding, &validation)
                        .unwrap()
                })
            },
        );
        let cold = authenticator(&case, 0);
        group.bench_with_input(
            BenchmarkId::new("portcullis_cold", case.name),
            &token,
            |b, t| b.iter(|| cold.verify(black_box(t)).unwrap()),
        );
        let cached = authenticator(&case, 32 << 20);
        cached.verify(&token).unwrap();
        group.bench_with_input(
            BenchmarkId::new("portcullis_cached", case.name),
            &token,
            |b, t| b.iter(|| cached.verify(black_box(t)).unwrap()),
        );
    }
    group.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
