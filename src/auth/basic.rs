//! HTTP Basic (RFC 7617) with argon2 password hashes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{
    PasswordHash, PasswordHashString, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Argon2, Params};
use http::HeaderValue;
use http::header::RETRY_AFTER;
use http::request::Parts;
use tokio::sync::Semaphore;

use super::{Authentication, Authenticator};
use crate::error::Reason;
use crate::error::{ConfigError, Rejection, RejectionKind, Scheme};
use crate::identity::{AuthMethod, Identity};
use crate::request::credential;

/// Hashes a password with argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes, OWASP's
/// recommendation) and a random salt, as a PHC string to store.
///
/// ```
/// let phc = portcullis::auth::hash_password("correct horse battery staple").unwrap();
/// assert!(phc.starts_with("$argon2id$"));
/// ```
pub fn hash_password(password: &str) -> Result<String, ConfigError> {
    hash_with(&Argon2::default(), password).map(|hash| hash.to_string())
}

fn hash_with(argon2: &Argon2<'_>, password: &str) -> Result<PasswordHashString, ConfigError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|_| ConfigError::new("the system random number generator failed"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| ConfigError::new("bad salt"))?;
    argon2
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.serialize())
        .map_err(|_| ConfigError::new("argon2 could not hash the password"))
}

/// Largest accepted argon2 memory cost (KiB): 256 MiB per check.
const MAX_MEMORY_KIB: u32 = 256 * 1024;

/// What a password check costs: the argon2 variant, version and parameters (memory, passes,
/// lanes, output length) of a hash. Two hashes with the same setting take the same time to check.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Setting {
    algorithm: argon2::Algorithm,
    version: argon2::Version,
    params: Params,
}

impl Setting {
    fn of(hash: &PasswordHash<'_>) -> Result<Self, ConfigError> {
        fn unusable<E>(_: E) -> ConfigError {
            ConfigError::new("unusable argon2 parameters")
        }
        Ok(Self {
            algorithm: argon2::Algorithm::try_from(hash.algorithm).map_err(unusable)?,
            // What `verify_password` assumes when the hash names no version.
            version: hash
                .version
                .map_or(Ok(argon2::Version::default()), argon2::Version::try_from)
                .map_err(unusable)?,
            params: Params::try_from(hash).map_err(unusable)?,
        })
    }

    fn hasher(&self) -> Argon2<'static> {
        Argon2::new(self.algorithm, self.version, self.params.clone())
    }
}

/// A user allowed to log in with Basic. `Debug` shows the name only, never the hash.
#[derive(Clone)]
#[must_use]
pub struct BasicUser {
    name: String,
    hash: PasswordHashString,
    setting: Setting,
    scopes: Vec<String>,
    roles: Vec<String>,
}

impl BasicUser {
    /// A user with an argon2 PHC hash (from [`hash_password`] or any argon2 tool).
    pub fn new(name: impl Into<String>, phc_hash: &str) -> Result<Self, ConfigError> {
        let name = name.into();
        if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
            return Err(ConfigError::new(
                "a Basic user name must be non-empty without ':' or control characters",
            ));
        }
        let hash = PasswordHash::new(phc_hash)
            .ok()
            .filter(|hash| hash.algorithm.as_str().starts_with("argon2"))
            .filter(|hash| hash.hash.is_some() && hash.salt.is_some())
            .ok_or_else(|| ConfigError::new("not an argon2 PHC hash string with salt and hash"))?;
        let setting = Setting::of(&hash)?;
        if setting.params.m_cost() > MAX_MEMORY_KIB {
            return Err(ConfigError::new("argon2 memory cost above 256 MiB"));
        }
        Ok(Self {
            name,
            hash: hash.serialize(),
            setting,
            scopes: Vec::new(),
            roles: Vec::new(),
        })
    }

    /// Sets the scopes.
    pub fn scopes<I: IntoIterator<Item = T>, T: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the roles.
    pub fn roles<I: IntoIterator<Item = T>, T: Into<String>>(mut self, roles: I) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }
}

impl fmt::Debug for BasicUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicUser")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// Authenticates `Authorization: Basic` with argon2 password hashes.
///
/// Verification runs on tokio's blocking pool, never on the request executor, and at most
/// [`max_concurrent`](BasicAuthenticatorBuilder::max_concurrent) at once (each argon2 run holds
/// its memory cost, 19 MiB by default), so a flood of logins queues instead of exhausting memory;
/// when more than [`max_waiting`](BasicAuthenticatorBuilder::max_waiting) checks are queued, new
/// ones get 429 with `Retry-After`. An unknown user name is checked against a dummy hash made with
/// the users' own argon2 setting, so it takes as long as a wrong password; users with different
/// settings are refused at build time for the same reason.
///
/// ```
/// use portcullis::auth::{BasicAuthenticator, BasicUser, hash_password};
///
/// # fn main() -> Result<(), portcullis::ConfigError> {
/// let basic = BasicAuthenticator::builder()
///     .user(BasicUser::new("ops", &hash_password("a long passphrase")?)?.roles(["operator"]))
///     .build()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct BasicAuthenticator {
    inner: Arc<BasicInner>,
}

struct BasicInner {
    users: HashMap<String, (PasswordHashString, Identity)>,
    dummy: PasswordHashString,
    permits: Arc<Semaphore>,
    /// Checks queued or running, and the most that may be.
    in_flight: AtomicUsize,
    max_in_flight: usize,
}

/// Configures a [`BasicAuthenticator`].
#[must_use]
#[derive(Debug, Default)]
pub struct BasicAuthenticatorBuilder {
    users: Vec<BasicUser>,
    max_concurrent: Option<usize>,
    max_waiting: Option<usize>,
}

impl BasicAuthenticator {
    /// Starts the configuration.
    pub fn builder() -> BasicAuthenticatorBuilder {
        BasicAuthenticatorBuilder::default()
    }
}

impl BasicAuthenticatorBuilder {
    /// Adds a user.
    pub fn user(mut self, user: BasicUser) -> Self {
        self.users.push(user);
        self
    }

    /// How many password checks may run at once (default: the number of CPUs).
    pub fn max_concurrent(mut self, checks: usize) -> Self {
        self.max_concurrent = Some(checks.max(1));
        self
    }

    /// How many checks may wait for a free slot before new ones are refused with 429 (default
    /// 64 per concurrent slot).
    pub fn max_waiting(mut self, checks: usize) -> Self {
        self.max_waiting = Some(checks);
        self
    }

    /// Builds the authenticator, hashing the dummy password used for unknown users.
    ///
    /// Every user's hash must use the same argon2 variant, version and parameters: a check costs
    /// what its hash's parameters cost, so with mixed settings the time of an answer would tell
    /// which user names exist (and which have cheaper hashes). Rehash the odd ones out with the
    /// common setting, e.g. with [`hash_password`]. The dummy hash checked for unknown names
    /// uses that same setting, so an unknown name costs what a known one does.
    pub fn build(self) -> Result<BasicAuthenticator, ConfigError> {
        let mut settings = self.users.iter().map(|user| &user.setting);
        let setting = settings.next().cloned();
        if let Some(first) = &setting
            && settings.any(|other| other != first)
        {
            return Err(ConfigError::new(
                "Basic users' password hashes use different argon2 settings (variant, version, \
                 memory, passes, lanes or output length), which would let the answer time tell \
                 user names apart: rehash them with one setting",
            ));
        }
        let dummy_hasher = setting.map_or_else(Argon2::default, |setting| setting.hasher());
        let dummy = hash_with(&dummy_hasher, "portcullis dummy password")?;
        let mut users = HashMap::new();
        for user in self.users {
            let identity = Identity::builder(user.name.clone(), AuthMethod::Basic)
                .scopes(user.scopes)
                .roles(user.roles)
                .build();
            if users.insert(user.name, (user.hash, identity)).is_some() {
                return Err(ConfigError::new("two Basic users have the same name"));
            }
        }
        let permits = self.max_concurrent.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        let waiting = self.max_waiting.unwrap_or(permits * 64);
        Ok(BasicAuthenticator {
            inner: Arc::new(BasicInner {
                users,
                dummy,
                permits: Arc::new(Semaphore::new(permits)),
                in_flight: AtomicUsize::new(0),
                max_in_flight: permits + waiting,
            }),
        })
    }
}

/// Counts a check from the moment it is accepted until argon2 has finished with it.
struct InFlight(Arc<BasicInner>);

impl InFlight {
    fn enter(inner: &Arc<BasicInner>) -> Option<Self> {
        let before = inner.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = Self(inner.clone());
        (before < inner.max_in_flight).then_some(slot)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

fn rejected(reason: Reason) -> Rejection {
    Rejection::new(RejectionKind::InvalidCredentials)
        .with_reason(reason)
        .with_detail("The user name or password was not accepted.")
        .with_challenge(Scheme::Basic)
}

impl Authenticator for BasicAuthenticator {
    fn scheme(&self) -> Scheme {
        Scheme::Basic
    }

    fn authenticate(&self, request: &Parts) -> Authentication {
        let Some(decoded) = credential::basic(&request.headers, &request.extensions) else {
            return Authentication::NotPresent;
        };
        let Some(credentials) = decoded else {
            return Authentication::Rejected(rejected(Reason::MalformedBasic));
        };
        let Some(slot) = InFlight::enter(&self.inner) else {
            return Authentication::Rejected(
                Rejection::new(RejectionKind::TooManyRequests)
                    .with_reason(Reason::BasicQueueFull)
                    .with_detail("Too many logins are being checked; retry shortly.")
                    .with_header(RETRY_AFTER, HeaderValue::from_static("1")),
            );
        };
        let inner = self.inner.clone();
        Authentication::Pending(Box::pin(async move {
            let known = inner.users.get(&credentials.user);
            let hash = known.map_or(&inner.dummy, |(hash, _)| hash).clone();
            let Ok(permit) = inner.permits.clone().acquire_owned().await else {
                return Err(Rejection::new(RejectionKind::Internal));
            };
            // The permit moves into the blocking task: if the client goes away, the hash still
            // runs to the end and holds its permit (and memory) until then, so cancelled requests
            // cannot push more argon2 runs past the bound.
            let verified = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let _slot = slot;
                Argon2::default()
                    .verify_password(credentials.password.as_bytes(), &hash.password_hash())
                    .is_ok()
            })
            .await
            .map_err(|_| Rejection::new(RejectionKind::Internal))?;
            match known {
                Some((_, identity)) if verified => Ok(identity.clone()),
                Some(_) => Err(rejected(Reason::WrongPassword)),
                None => Err(rejected(Reason::UnknownUser)),
            }
        }))
    }
}

impl fmt::Debug for BasicAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicAuthenticator")
            .field("users", &self.inner.users.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    fn phc(algorithm: argon2::Algorithm, version: argon2::Version, m: u32, len: usize) -> String {
        let params = Params::new(m, 1, 1, Some(len)).unwrap();
        let hasher = Argon2::new(algorithm, version, params);
        hash_with(&hasher, "pw").unwrap().to_string()
    }

    fn user(name: &str, phc: &str) -> BasicUser {
        BasicUser::new(name, phc).unwrap()
    }

    /// Issue #16: users whose hashes cost different times to check are refused, whatever differs.
    #[test]
    fn mixed_argon2_settings_are_refused() {
        use argon2::{Algorithm::*, Version::*};
        let base = phc(Argon2id, V0x13, 1024, 32);
        for other in [
            phc(Argon2id, V0x13, 2048, 32),
            phc(Argon2i, V0x13, 1024, 32),
            phc(Argon2id, V0x10, 1024, 32),
            phc(Argon2id, V0x13, 1024, 64),
        ] {
            let built = BasicAuthenticator::builder()
                .user(user("a", &base))
                .user(user("b", &other))
                .build();
            let error = built.expect_err(&other).to_string();
            assert!(error.contains("argon2 settings"), "{error}");
        }
        let same = BasicAuthenticator::builder()
            .user(user("a", &base))
            .user(user("b", &phc(Argon2id, V0x13, 1024, 32)))
            .build();
        assert!(same.is_ok());
    }

    /// Issue #16: an unknown user name is checked against a hash of exactly the users' setting,
    /// so it costs what a known name costs.
    #[test]
    fn the_dummy_hash_has_the_users_setting() {
        use argon2::{Algorithm::*, Version::*};
        for phc in [
            phc(Argon2i, V0x10, 1024, 32),
            phc(Argon2d, V0x13, 2048, 48),
            phc(Argon2id, V0x13, 1024, 16),
        ] {
            let basic = BasicAuthenticator::builder()
                .user(user("a", &phc))
                .build()
                .unwrap();
            let dummy = Setting::of(&basic.inner.dummy.password_hash()).unwrap();
            assert_eq!(dummy, user("a", &phc).setting, "{phc}");
        }
        let none = BasicAuthenticator::builder().build().unwrap();
        let dummy = Setting::of(&none.inner.dummy.password_hash()).unwrap();
        assert_eq!(
            dummy,
            Setting::of(&PasswordHash::new(&hash_password("pw").unwrap()).unwrap()).unwrap(),
            "no users: the setting of hash_password"
        );
    }

    #[test]
    fn decodes_only_well_formed_credentials() {
        let encode = |s: &str| STANDARD.encode(s);
        assert_eq!(
            credential::decode_basic(&encode("alice:pa:ss")),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(credential::decode_basic(&encode("alice")), None);
        assert_eq!(credential::decode_basic(&encode(":pw")), None);
        assert_eq!(credential::decode_basic(&encode("al\u{7}ice:pw")), None);
        assert_eq!(
            credential::decode_basic("YWxpY2U6cHc"),
            None,
            "padding is required"
        );
        assert_eq!(
            credential::decode_basic(&STANDARD.encode([0xff, b':', b'x'])),
            None
        );
        assert_eq!(credential::decode_basic(&encode(&"a".repeat(4096))), None);
    }
}
