use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use crate::error::ConfigError;

/// A verification key with the one algorithm it may be used with.
///
/// The algorithm is fixed here, by you: the `alg` of a token header only has to *match* it, so an
/// RSA public key can never be used as an HMAC secret (the classic key-confusion attack) and
/// `none` is never accepted.
///
/// ```
/// use portcullis::Algorithm;
/// use portcullis::auth::JwtKey;
///
/// # fn main() -> Result<(), portcullis::ConfigError> {
/// let key = JwtKey::hmac(b"a secret of at least thirty-two bytes!!", Algorithm::HS256)?
///     .with_kid("2026-11");
/// assert_eq!(key.kid(), Some("2026-11"));
///
/// // Too short for HS256 (RFC 7518 §3.2 asks for at least 256 bits).
/// assert!(JwtKey::hmac(b"short", Algorithm::HS256).is_err());
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct JwtKey {
    pub(super) kid: Option<String>,
    pub(super) algorithm: Algorithm,
    pub(super) key: DecodingKey,
    /// Whether the key is still installed: cached tokens it verified check this on every hit,
    /// so removing one key drops exactly its tokens. Set afresh when a key is installed.
    pub(super) live: Arc<AtomicBool>,
}

impl JwtKey {
    /// An HMAC secret for HS256, HS384 or HS512. The secret must be at least as long as the hash
    /// output (32, 48 or 64 bytes), as RFC 7518 §3.2 requires.
    pub fn hmac(secret: &[u8], algorithm: Algorithm) -> Result<Self, ConfigError> {
        check_hmac_length(secret.len(), algorithm)?;
        Ok(Self::new(DecodingKey::from_secret(secret), algorithm))
    }

    /// An RSA public key in PEM form for RS256/384/512 or PS256/384/512.
    pub fn rsa_pem(pem: &[u8], algorithm: Algorithm) -> Result<Self, ConfigError> {
        require_family(algorithm, AlgorithmFamily::Rsa, "JwtKey::rsa_pem")?;
        let key = DecodingKey::from_rsa_pem(pem)
            .map_err(|_| ConfigError::new("not an RSA public key in PEM form"))?;
        Ok(Self::new(key, algorithm))
    }

    /// An EC public key in PEM form for ES256 (P-256) or ES384 (P-384).
    pub fn ec_pem(pem: &[u8], algorithm: Algorithm) -> Result<Self, ConfigError> {
        require_family(algorithm, AlgorithmFamily::Ec, "JwtKey::ec_pem")?;
        let key = DecodingKey::from_ec_pem(pem)
            .map_err(|_| ConfigError::new("not an EC public key in PEM form"))?;
        // The key is kept as an uncompressed point: 65 bytes on P-256, 97 on P-384.
        let point = key.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0);
        let expected = if algorithm == Algorithm::ES256 {
            65
        } else {
            97
        };
        if point != expected {
            return Err(ConfigError::new(format!(
                "the EC key's curve does not fit {algorithm:?}"
            )));
        }
        Ok(Self::new(key, algorithm))
    }

    /// An Ed25519 public key in PEM form, for EdDSA.
    pub fn ed_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        let key = DecodingKey::from_ed_pem(pem)
            .map_err(|_| ConfigError::new("not an Ed25519 public key in PEM form"))?;
        Ok(Self::new(key, Algorithm::EdDSA))
    }

    /// A public key (or HMAC secret) as a JSON Web Key (RFC 7517).
    ///
    /// The JWK must name its algorithm (`alg`); its `kid` becomes the key id. A key whose `use` is
    /// not `sig`, whose `key_ops` do not include `verify`, or whose key type or curve does not fit
    /// its algorithm is refused.
    pub fn jwk(json: &str) -> Result<Self, ConfigError> {
        let jwk: Jwk =
            serde_json::from_str(json).map_err(|_| ConfigError::new("not a JSON Web Key"))?;
        Self::from_jwk(&jwk)
    }

    pub(crate) fn from_jwk(jwk: &Jwk) -> Result<Self, ConfigError> {
        let common = &jwk.common;
        if matches!(&common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            return Err(ConfigError::new("the JWK's `use` is not `sig`"));
        }
        if let Some(ops) = &common.key_operations
            && !ops.contains(&KeyOperations::Verify)
        {
            return Err(ConfigError::new(
                "the JWK's `key_ops` do not include `verify`",
            ));
        }
        let algorithm = common
            .key_algorithm
            .and_then(|alg| Algorithm::try_from(alg).ok())
            .ok_or_else(|| ConfigError::new("the JWK must name a supported signing `alg`"))?;
        let fits = match (&jwk.algorithm, algorithm) {
            (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
                ec.curve == EllipticCurve::P256
            }
            (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
                ec.curve == EllipticCurve::P384
            }
            (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
                okp.curve == EllipticCurve::Ed25519
            }
            (AlgorithmParameters::RSA(_), alg) => alg.family() == AlgorithmFamily::Rsa,
            (AlgorithmParameters::OctetKey(_), alg) => alg.family() == AlgorithmFamily::Hmac,
            _ => false,
        };
        if !fits {
            return Err(ConfigError::new(
                "the JWK's key type or curve does not fit its `alg`",
            ));
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|_| ConfigError::new("unusable JWK"))?;
        if algorithm.family() == AlgorithmFamily::Hmac {
            check_hmac_length(
                key.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0),
                algorithm,
            )?;
        }
        Ok(Self {
            kid: common.key_id.clone(),
            algorithm,
            key,
            live: Arc::default(),
        })
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        Self {
            kid: None,
            algorithm,
            key,
            live: Arc::default(),
        }
    }

    /// Sets the key id that tokens name in their `kid` header.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// RFC 7518 §3.2: an HMAC key at least as long as the hash output.
fn check_hmac_length(length: usize, algorithm: Algorithm) -> Result<(), ConfigError> {
    let minimum = match algorithm {
        Algorithm::HS256 => 32,
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => return Err(ConfigError::new("an HMAC key needs HS256, HS384 or HS512")),
    };
    if length < minimum {
        return Err(ConfigError::new(format!(
            "an {algorithm:?} secret must be at least {minimum} bytes long"
        )));
    }
    Ok(())
}

fn require_family(
    algorithm: Algorithm,
    family: AlgorithmFamily,
    what: &'static str,
) -> Result<(), ConfigError> {
    if algorithm.family() == family {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "{what} cannot be used with {algorithm:?}"
        )))
    }
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material (an HMAC secret is a password).
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}
