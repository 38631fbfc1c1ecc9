//! Verifying one token: header, signature, claims, in the strict order the module docs give.

use super::*;

impl Inner {
    pub(super) fn now(&self) -> u64 {
        unix_seconds((self.clock)())
    }

    pub(super) fn verify_uncached(&self, token: &str) -> Result<Verified, Rejection> {
        let mut segments = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(malformed());
        };
        if header_b64.is_empty() || payload_b64.is_empty() || signature_b64.is_empty() {
            return Err(malformed());
        }
        let header = decode_object(header_b64)?;
        let algorithm = self.check_header(&header)?;
        // The entry we produce holds the key's flag: if the key is removed while we verify,
        // the entry is never served from the cache.
        let live = {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            let key = select_key(&keys, &header)?;
            if key.algorithm != algorithm {
                return Err(invalid(
                    Reason::AlgNotAllowed,
                    "The token's signing algorithm is not accepted for its key.",
                ));
            }
            let message = &token[..header_b64.len() + 1 + payload_b64.len()];
            let valid = jsonwebtoken::crypto::verify(
                signature_b64,
                message.as_bytes(),
                &key.key,
                algorithm,
            )
            .unwrap_or(false);
            if !valid {
                return Err(invalid(
                    Reason::BadSignature,
                    "The access token signature is invalid.",
                ));
            }
            key.live.clone()
        };
        // Only a correctly signed payload is parsed.
        let claims = decode_object(payload_b64)?;
        self.check_claims(claims, live, token.len())
    }

    fn check_header(&self, header: &Map<String, Value>) -> Result<Algorithm, Rejection> {
        let Some(Value::String(alg)) = header.get("alg") else {
            return Err(malformed());
        };
        if alg.eq_ignore_ascii_case("none") {
            return Err(invalid(
                Reason::AlgNone,
                "Unsigned tokens are not accepted.",
            ));
        }
        let algorithm = Algorithm::from_str(alg).map_err(|_| {
            invalid(
                Reason::AlgNotAllowed,
                "The token's signing algorithm is not accepted.",
            )
        })?;
        if EMBEDDED_KEY_HEADERS
            .iter()
            .any(|name| header.contains_key(*name))
        {
            return Err(invalid(
                Reason::EmbeddedKey,
                "Keys embedded in or linked from the token header are not trusted.",
            ));
        }
        if header.contains_key("crit") {
            return Err(invalid(
                Reason::UnsupportedCrit,
                "The token requires an extension this server does not support.",
            ));
        }
        // RFC 7519 §5.2 and §7.2 step 8: `cty: JWT` announces a nested token, whose own header
        // and signature this server never checks: its payload must not be read as claims.
        match header.get("cty") {
            None => {}
            Some(Value::String(cty)) if normalize_typ(cty) == "jwt" => {
                return Err(invalid(
                    Reason::NestedJwt,
                    "Nested tokens are not accepted.",
                ));
            }
            Some(Value::String(_)) => {}
            Some(_) => return Err(malformed()),
        }
        let typ = match header.get("typ") {
            None => None,
            Some(Value::String(typ)) => Some(typ.as_str()),
            Some(_) => return Err(malformed()),
        };
        if !matches!(header.get("kid"), None | Some(Value::String(_))) {
            return Err(malformed());
        }
        if let Some(accepted) = &self.typ {
            let ok = typ.is_some_and(|typ| accepted.iter().any(|a| *a == normalize_typ(typ)));
            if !ok {
                return Err(invalid(
                    Reason::TypMismatch,
                    "The token type is not accepted.",
                ));
            }
        }
        Ok(algorithm)
    }

    fn check_claims(
        &self,
        claims: Map<String, Value>,
        live: Arc<AtomicBool>,
        token_len: usize,
    ) -> Result<Verified, Rejection> {
        let now = self.now();
        let leeway = self.leeway;
        let exp = numeric_date(claims.get("exp"))?;
        let nbf = numeric_date(claims.get("nbf"))?;
        let iat = numeric_date(claims.get("iat"))?;
        let issuer = optional_string(claims.get("iss"))?;
        let subject = optional_string(claims.get("sub"))?;
        optional_string(claims.get("jti"))?;
        let audiences = audiences(claims.get("aud"))?;
        // RFC 9449 §7.1 / RFC 8705: a sender-constrained token (DPoP or mTLS, marked by `cnf`)
        // presented as a plain bearer token, without its proof, must be refused.
        if claims.contains_key("cnf") {
            return Err(invalid(
                Reason::SenderConstrained,
                "A sender-constrained token cannot be used as a bearer token.",
            ));
        }

        match exp {
            Some(exp) if now.saturating_sub(leeway) >= exp => {
                return Err(invalid(Reason::Expired, "The access token expired."));
            }
            None if self.require_exp => {
                return Err(invalid(
                    Reason::MissingExp,
                    "The access token has no expiry.",
                ));
            }
            _ => {}
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(invalid(
                Reason::NotYetValid,
                "The access token is not valid yet.",
            ));
        }
        if iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(invalid(
                Reason::IssuedInFuture,
                "The access token was issued in the future.",
            ));
        }
        let tenant = match &self.issuers {
            None => None,
            Some(accepted) => match issuer.and_then(|iss| accepted.issuers.get(iss)) {
                None => {
                    return Err(invalid(
                        Reason::BadIssuer,
                        "The access token was issued by an untrusted issuer.",
                    ));
                }
                Some(tenant) => tenant.as_deref().map(|t| (accepted.tenant_claim, t)),
            },
        };
        if let Some((claim, expected)) = tenant
            && claims.get(claim).and_then(Value::as_str) != Some(expected)
        {
            return Err(invalid(
                Reason::BadTenant,
                "The access token's tenant does not match its issuer.",
            ));
        }
        if let Some(expected) = &self.audiences
            && !audiences
                .iter()
                .any(|aud| expected.iter().any(|e| e == aud))
        {
            return Err(invalid(
                Reason::BadAudience,
                "The access token is not meant for this API.",
            ));
        }
        for rule in &self.claim_rules {
            if !rule.holds(&claims) {
                return Err(invalid(
                    Reason::ClaimNotAccepted,
                    "The token is not of a kind this API accepts.",
                ));
            }
        }
        let subject = match subject {
            Some(subject) if !subject.is_empty() => subject.to_owned(),
            _ => {
                return Err(invalid(
                    Reason::MissingSub,
                    "The access token has no subject.",
                ));
            }
        };
        let mapped = self.mapping.apply(&claims).map_err(|()| claim_type())?;
        if let Some(clients) = &self.clients
            && !mapped
                .client
                .as_ref()
                .is_some_and(|client| clients.contains(client))
        {
            return Err(invalid(
                Reason::BadClient,
                "The access token was issued to a client this API does not accept.",
            ));
        }
        if self.client_required && mapped.client.is_none() {
            return Err(invalid(
                Reason::ClaimNotAccepted,
                "The token is not of a kind this API accepts.",
            ));
        }
        let mut builder = Identity::builder(subject, AuthMethod::Jwt).mapped(mapped);
        if let Some(issuer) = issuer {
            builder = builder.issuer(issuer);
        }
        if let Some(exp) = exp {
            builder = builder.expires_at(system_time(exp));
        }
        Ok(Verified {
            identity: builder.claims(claims).build(),
            exp,
            live,
            weight: u32::try_from(token_len.saturating_mul(3).saturating_add(256))
                .unwrap_or(u32::MAX),
        })
    }
}

pub(super) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn decode_object(segment: &str) -> Result<Map<String, Value>, Rejection> {
    // `URL_SAFE_NO_PAD` refuses padding and non-zero trailing bits, so every token has exactly one
    // accepted spelling.
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| malformed())?;
    strict::parse_object(&bytes).ok_or_else(|| {
        invalid(
            Reason::MalformedJson,
            "The access token is not made of JSON objects with unique member names.",
        )
    })
}

fn select_key<'a>(
    keys: &'a [JwtKey],
    header: &Map<String, Value>,
) -> Result<&'a JwtKey, Rejection> {
    match header.get("kid") {
        Some(Value::String(kid)) => keys
            .iter()
            .find(|key| key.kid.as_deref() == Some(kid.as_str()))
            .ok_or_else(|| {
                invalid(
                    Reason::UnknownKid,
                    "The token was signed with an unknown key.",
                )
            }),
        _ => match keys {
            [only] => Ok(only),
            _ => Err(invalid(
                Reason::KidRequired,
                "The token must name its signing key (kid).",
            )),
        },
    }
}

/// A key as installed in an authenticator: with its own flag, never shared with clones of the
/// `JwtKey` the caller keeps.
pub(super) fn install(mut key: JwtKey) -> JwtKey {
    key.live = Arc::new(AtomicBool::new(true));
    key
}

pub(super) fn check_new_key(keys: &[JwtKey], key: &JwtKey) -> Result<(), ConfigError> {
    if key.kid.is_some() && keys.iter().any(|k| k.kid == key.kid) {
        return Err(ConfigError::new("two keys have the same kid"));
    }
    if !keys.is_empty() && (key.kid.is_none() || keys.iter().any(|k| k.kid.is_none())) {
        return Err(ConfigError::new(
            "every key needs a kid when more than one key is configured",
        ));
    }
    Ok(())
}

/// RFC 7515 §4.1.9: media types compare case-insensitively and `application/` may be left out.
pub(super) fn normalize_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds; fractions are truncated. A date before
/// 1970 or after the year 9999 (`1e300`, an integer beyond 64 bits) is no date any issuer
/// writes: refused as malformed rather than read as "far in the future", which would make a
/// token live forever.
fn numeric_date(value: Option<&Value>) -> Result<Option<u64>, Rejection> {
    let seconds = match value {
        None => return Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(seconds), _) => Some(seconds),
            // `f` is finite (JSON has no NaN or infinity), and within range before the cast.
            (None, Some(f)) if (0.0..=YEAR_9999_END as f64).contains(&f) => Some(f as u64),
            _ => None,
        },
        Some(_) => return Err(claim_type()),
    };
    match seconds {
        Some(seconds) if seconds <= YEAR_9999_END => Ok(Some(seconds)),
        _ => Err(invalid(
            Reason::DateOutOfRange,
            "A date claim of the access token is out of range.",
        )),
    }
}

fn optional_string(value: Option<&Value>) -> Result<Option<&str>, Rejection> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(claim_type()),
    }
}

/// `aud` is a string or an array of strings (RFC 7519 §4.1.3).
fn audiences(value: Option<&Value>) -> Result<Vec<&str>, Rejection> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::String(aud)) => Ok(vec![aud.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(claim_type))
            .collect(),
        Some(_) => Err(claim_type()),
    }
}
