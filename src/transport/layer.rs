use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tower_layer::Layer;

use super::TransportSecurity;
use super::scheme::Host;
use crate::error::ConfigError;
use crate::request::forwarded::TrustedProxies;

/// The shortest `max-age` the HSTS preload list accepts (hstspreload.org): one year.
const PRELOAD_MIN_AGE: u64 = 31_536_000;

/// Refuses plain HTTP and adds security headers to every response; see the
/// [module docs](super). [`new`](Self::new) has the defaults; [`builder`](Self::builder)
/// changes them, checked once at [`build`](TransportSecurityLayerBuilder::build).
///
/// ```
/// use std::time::Duration;
/// use portcullis::client_ip::{ProxyHeader, TrustedProxies};
/// use portcullis::transport::{Hsts, TransportSecurityLayer};
///
/// # fn main() -> Result<(), portcullis::ConfigError> {
/// let layer = TransportSecurityLayer::builder()
///     .trusted_proxies(TrustedProxies::new(["10.0.0.0/8"])?.header(ProxyHeader::Forwarded))
///     .redirect_to("api.example.com") // 308 for plain GET and HEAD without credentials
///     .hsts(Hsts::max_age(Duration::from_secs(2 * 365 * 24 * 3600)).preload())
///     .content_security_policy("default-src 'none'; frame-ancestors 'none'; sandbox")
///     .build()?;
/// # let _ = layer;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct TransportSecurityLayer {
    pub(super) config: Arc<TransportConfig>,
}

impl TransportSecurityLayer {
    pub(crate) fn proxies(&self) -> &TrustedProxies {
        &self.config.proxies
    }

    /// The builder of the whole stack hands over the client-IP layer's proxies.
    pub(crate) fn with_proxies(mut self, proxies: TrustedProxies) -> Self {
        Arc::make_mut(&mut self.config).proxies = proxies;
        self
    }

    /// The builder of the whole stack hands over the authenticators' credential headers.
    #[cfg_attr(not(feature = "auth"), allow(dead_code))]
    pub(crate) fn with_credential_header(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.config).add_credential_header(name);
        self
    }
}

#[derive(Clone, Debug)]
pub(super) struct TransportConfig {
    pub(super) proxies: TrustedProxies,
    pub(super) plain_http: PlainHttp,
    pub(super) loopback_http: bool,
    /// Paths served over plain HTTP to credential-less `GET` and `HEAD` (health probes).
    pub(super) http_paths: Vec<Box<str>>,
    pub(super) hsts: Option<HeaderValue>,
    pub(super) nosniff: bool,
    pub(super) content_security_policy: Option<HeaderValue>,
    pub(super) referrer_policy: Option<HeaderValue>,
    pub(super) cache_control: Option<HeaderValue>,
    pub(super) strip_server: bool,
    /// Headers whose presence makes a request credentialed.
    pub(super) credential_headers: Vec<HeaderName>,
}

impl TransportConfig {
    fn add_credential_header(&mut self, name: HeaderName) {
        if !self.credential_headers.contains(&name) {
            self.credential_headers.push(name);
        }
    }
}

/// What happens to a plain HTTP request.
#[derive(Clone, Debug)]
pub(super) enum PlainHttp {
    Refuse,
    /// 308 for credential-less `GET` and `HEAD`: to this host, or to the request's own.
    Redirect(Option<Host>),
}

/// A `Strict-Transport-Security` policy (RFC 6797): how long browsers must use HTTPS only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hsts {
    max_age: u64,
    include_subdomains: bool,
    preload: bool,
}

impl Default for Hsts {
    /// `max-age=31536000; includeSubDomains`: one year, this host and every subdomain.
    fn default() -> Self {
        Self {
            max_age: PRELOAD_MIN_AGE,
            include_subdomains: true,
            preload: false,
        }
    }
}

impl Hsts {
    /// This `max-age` (whole seconds), with `includeSubDomains`. `Duration::ZERO` tells browsers
    /// to forget the policy (RFC 6797 §6.1.1).
    pub fn max_age(max_age: Duration) -> Self {
        Self {
            max_age: max_age.as_secs(),
            ..Self::default()
        }
    }

    /// Whether the policy covers subdomains (`includeSubDomains`, on by default). Turn it off
    /// only if a subdomain cannot serve HTTPS: an attacker who controls plain HTTP on a
    /// subdomain can set cookies for this one.
    pub fn include_subdomains(mut self, include: bool) -> Self {
        self.include_subdomains = include;
        self
    }

    /// Adds `preload`: consent to be compiled into browsers' HSTS lists, which is hard to undo.
    /// [`TransportSecurityLayerBuilder::hsts`] checks the list's requirements (a year or more,
    /// `includeSubDomains`).
    pub fn preload(mut self) -> Self {
        self.preload = true;
        self
    }

    fn header_value(self) -> HeaderValue {
        let mut value = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            value.push_str("; includeSubDomains");
        }
        if self.preload {
            value.push_str("; preload");
        }
        // Digits, letters, `=`, `;` and spaces: always a valid header value.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("max-age=0"))
    }
}

impl Default for TransportSecurityLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl TransportSecurityLayer {
    /// HTTPS only, believing no proxy: requests count as HTTPS only when they carry a
    /// [`TlsConnection`](super::TlsConnection). Plain HTTP is refused (403). Responses get
    /// `Strict-Transport-Security: max-age=31536000; includeSubDomains` (over HTTPS),
    /// `X-Content-Type-Options: nosniff`, `Content-Security-Policy: default-src 'none';
    /// frame-ancestors 'none'`, `Referrer-Policy: no-referrer`, `Cache-Control: no-store` when the
    /// request carried credentials, and no `Server` header.
    pub fn new() -> Self {
        Self {
            config: Arc::new(TransportConfig {
                proxies: TrustedProxies::none(),
                plain_http: PlainHttp::Refuse,
                loopback_http: false,
                http_paths: Vec::new(),
                hsts: Some(Hsts::default().header_value()),
                nosniff: true,
                content_security_policy: Some(HeaderValue::from_static(
                    "default-src 'none'; frame-ancestors 'none'",
                )),
                referrer_policy: Some(HeaderValue::from_static("no-referrer")),
                cache_control: Some(HeaderValue::from_static("no-store")),
                strip_server: true,
                credential_headers: vec![
                    http::header::AUTHORIZATION,
                    http::header::COOKIE,
                    HeaderName::from_static("x-api-key"),
                ],
            }),
        }
    }

    /// Starts from the defaults of [`new`](Self::new). Settings that can be wrong are checked
    /// at [`build`](TransportSecurityLayerBuilder::build).
    pub fn builder() -> TransportSecurityLayerBuilder {
        TransportSecurityLayerBuilder {
            config: Self::new().config.as_ref().clone(),
            error: None,
        }
    }
}

/// Configures a [`TransportSecurityLayer`]; [`build`](Self::build) reports the first setting
/// that was refused.
#[derive(Clone, Debug)]
#[must_use]
pub struct TransportSecurityLayerBuilder {
    config: TransportConfig,
    error: Option<ConfigError>,
}

impl TransportSecurityLayerBuilder {
    /// The layer, or the first setting that was refused.
    pub fn build(self) -> Result<TransportSecurityLayer, ConfigError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(TransportSecurityLayer {
                config: Arc::new(self.config),
            }),
        }
    }

    fn fail(&mut self, error: ConfigError) {
        self.error.get_or_insert(error);
    }

    /// Believes the proto header of these proxies (`Forwarded` if their
    /// [`ProxyHeader`](crate::client_ip::ProxyHeader) is `Forwarded`, else `X-Forwarded-Proto`)
    /// when they are the socket peer. They must overwrite `X-Forwarded-Proto` (or append to
    /// `Forwarded`), never pass a client's on. Use the same value as your
    /// [`ClientIpLayer`](crate::ClientIpLayer).
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.config.proxies = proxies;
        self
    }

    /// Answers plain `GET` and `HEAD` requests without credentials with a 308 (`no-store`) to
    /// the same path and query on `https://` and the request's own host (its port dropped: it is
    /// the plain HTTP one). Other plain requests are still refused. A host that is not one well-formed name or IP literal is refused, not echoed;
    /// still, any well-formed host is: prefer [`redirect_to`](Self::redirect_to), or put a
    /// [`ValidateLayer`](crate::ValidateLayer) with `allowed_hosts` outside this layer.
    pub fn redirect(mut self) -> Self {
        self.config.plain_http = PlainHttp::Redirect(None);
        self
    }

    /// As [`redirect`](Self::redirect), but always to this canonical host
    /// (`api.example.com`, `api.example.com:8443`, `[2001:db8::1]`); the request's `Host` is not
    /// read at all.
    pub fn redirect_to(mut self, host: &str) -> Self {
        match Host::parse(host) {
            Some(host) => self.config.plain_http = PlainHttp::Redirect(Some(host)),
            None => self.fail(ConfigError::new(format!(
                "redirect_to: {host:?} is not a lower-case host name or IP literal with an optional port"
            ))),
        }
        self
    }

    /// Serves plain HTTP from a loopback peer to a loopback host (`localhost`, `127.0.0.1`,
    /// `[::1]`), for local development; without HSTS. Never for a trusted proxy's requests, nor
    /// for requests with a forwarding header. A proxy on the same machine is a loopback peer
    /// too: list it in [`trusted_proxies`](Self::trusted_proxies), or leave this off.
    pub fn allow_http_on_loopback(mut self) -> Self {
        self.config.loopback_http = true;
        self
    }

    /// Serves plain HTTP on these paths (exactly as requested, no query), for health probes of
    /// load balancers that speak HTTP and send no proto header. Only `GET` and `HEAD`, only
    /// without credentials (a credential there is still refused), and without HSTS. Each path
    /// starts with `/`; list only public routes that reveal nothing.
    ///
    /// ```
    /// use portcullis::TransportSecurityLayer;
    ///
    /// # fn main() -> Result<(), portcullis::ConfigError> {
    /// let transport = TransportSecurityLayer::builder()
    ///     .allow_http_on_paths(["/health", "/ready"])
    ///     .build()?;
    /// # let _ = transport;
    /// # Ok(())
    /// # }
    /// ```
    pub fn allow_http_on_paths<I, P>(mut self, paths: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        for path in paths {
            let path = path.into();
            if !path.starts_with('/') || path.contains(['?', '#']) || path.len() > 1024 {
                self.fail(ConfigError::new(format!(
                    "allow_http_on_paths: {path:?} is not a path starting with `/`, without query"
                )));
            } else {
                self.config.http_paths.push(path.into());
            }
        }
        self
    }

    /// The former name of [`allow_http_on_loopback`](Self::allow_http_on_loopback), the
    /// spelling the OIDC builders use for the same setting.
    #[deprecated(since = "0.2.0", note = "renamed to `allow_http_on_loopback`")]
    pub fn allow_loopback_http(self) -> Self {
        self.allow_http_on_loopback()
    }

    /// The `Strict-Transport-Security` policy sent over HTTPS (default [`Hsts::default`]).
    /// A `preload` policy must last at least a year and include subdomains.
    pub fn hsts(mut self, hsts: Hsts) -> Self {
        if hsts.preload && (hsts.max_age < PRELOAD_MIN_AGE || !hsts.include_subdomains) {
            self.fail(ConfigError::new(
                "an HSTS preload policy needs max-age of at least 31536000 and includeSubDomains",
            ));
        } else {
            self.config.hsts = Some(hsts.header_value());
        }
        self
    }

    /// Sends no `Strict-Transport-Security` (a proxy in front sets it, say). It is still
    /// removed from plain HTTP responses.
    pub fn without_hsts(mut self) -> Self {
        self.config.hsts = None;
        self
    }

    /// Sends no `X-Content-Type-Options: nosniff`.
    pub fn without_nosniff(mut self) -> Self {
        self.config.nosniff = false;
        self
    }

    /// The default `Content-Security-Policy` (`default-src 'none'; frame-ancestors 'none'`:
    /// a JSON API loads nothing and is framed by no one). A handler's own value wins.
    pub fn content_security_policy(mut self, policy: &str) -> Self {
        match header_value("content_security_policy", policy) {
            Ok(value) => self.config.content_security_policy = Some(value),
            Err(error) => self.fail(error),
        }
        self
    }

    /// Sends no default `Content-Security-Policy`.
    pub fn without_content_security_policy(mut self) -> Self {
        self.config.content_security_policy = None;
        self
    }

    /// The default `Referrer-Policy` (`no-referrer`): one of the W3C tokens, or a
    /// comma-separated fallback list of them. A handler's own value wins.
    pub fn referrer_policy(mut self, policy: &str) -> Self {
        const TOKENS: [&str; 8] = [
            "no-referrer",
            "no-referrer-when-downgrade",
            "same-origin",
            "origin",
            "strict-origin",
            "origin-when-cross-origin",
            "strict-origin-when-cross-origin",
            "unsafe-url",
        ];
        if !policy
            .split(',')
            .all(|token| TOKENS.contains(&token.trim()))
        {
            self.fail(ConfigError::new(format!(
                "referrer_policy: {policy:?} is not a list of Referrer-Policy tokens"
            )));
            return self;
        }
        match header_value("referrer_policy", policy) {
            Ok(value) => self.config.referrer_policy = Some(value),
            Err(error) => self.fail(error),
        }
        self
    }

    /// Sends no default `Referrer-Policy`.
    pub fn without_referrer_policy(mut self) -> Self {
        self.config.referrer_policy = None;
        self
    }

    /// The `Cache-Control` of responses to credentialed requests (default `no-store`: shared
    /// caches must not keep one user's data for the next). A handler's own value wins.
    pub fn cache_control(mut self, value: &str) -> Self {
        match header_value("cache_control", value) {
            Ok(value) => self.config.cache_control = Some(value),
            Err(error) => self.fail(error),
        }
        self
    }

    /// Sends no default `Cache-Control`.
    pub fn without_cache_control(mut self) -> Self {
        self.config.cache_control = None;
        self
    }

    /// Counts this header as a credential too (besides `Authorization`, `Cookie` and
    /// `X-Api-Key`), e.g. your API key header: such requests get `Cache-Control` and are never
    /// redirected.
    pub fn credential_header(mut self, name: HeaderName) -> Self {
        self.config.add_credential_header(name);
        self
    }

    /// Leaves a `Server` header set by a handler or an inner layer in place (it is removed by
    /// default: versions in it help attackers pick exploits).
    pub fn allow_server_header(mut self) -> Self {
        self.config.strip_server = false;
        self
    }

    /// The former name of [`allow_server_header`](Self::allow_server_header): every weakened
    /// default is spelled `allow_*`.
    #[deprecated(since = "0.2.0", note = "renamed to `allow_server_header`")]
    pub fn keep_server_header(self) -> Self {
        self.allow_server_header()
    }
}

fn header_value(setting: &str, value: &str) -> Result<HeaderValue, ConfigError> {
    match HeaderValue::from_str(value.trim()) {
        Ok(header) if !header.is_empty() => Ok(header),
        _ => Err(ConfigError::new(format!(
            "{setting}: {value:?} is not a non-empty header value"
        ))),
    }
}

impl fmt::Debug for TransportSecurityLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportSecurityLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl<S> Layer<S> for TransportSecurityLayer {
    type Service = TransportSecurity<S>;

    fn layer(&self, inner: S) -> Self::Service {
        crate::guard::Guard::new(inner, self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsts_values() {
        assert_eq!(
            Hsts::default().header_value(),
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(
            Hsts::max_age(Duration::from_secs(600))
                .include_subdomains(false)
                .header_value(),
            "max-age=600"
        );
        assert_eq!(
            Hsts::default().preload().header_value(),
            "max-age=31536000; includeSubDomains; preload"
        );
    }

    #[test]
    fn fallible_settings_refuse_nonsense() {
        let layer = TransportSecurityLayer::builder;
        assert!(layer().hsts(Hsts::default().preload()).build().is_ok());
        assert!(
            layer()
                .hsts(Hsts::max_age(Duration::from_secs(86_400)).preload())
                .build()
                .is_err()
        );
        assert!(
            layer()
                .hsts(Hsts::default().include_subdomains(false).preload())
                .build()
                .is_err()
        );
        assert!(layer().redirect_to("api.example.com:8443").build().is_ok());
        for bad in ["https://api.example.com", "a b", "", "user@host", "host/"] {
            assert!(layer().redirect_to(bad).build().is_err(), "{bad}");
        }
        assert!(layer().content_security_policy("").build().is_err());
        assert!(
            layer()
                .content_security_policy("default-src\n'self'")
                .build()
                .is_err()
        );
        assert!(layer().referrer_policy("same-origin").build().is_ok());
        assert!(
            layer()
                .referrer_policy("no-referrer, strict-origin-when-cross-origin")
                .build()
                .is_ok()
        );
        assert!(layer().referrer_policy("nope").build().is_err());
        assert!(layer().cache_control(" ").build().is_err());
        // A refused setting is reported even when a later one would be fine: the first error
        // is the one to fix.
        let error = layer()
            .redirect_to("a b")
            .cache_control("")
            .redirect()
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("redirect_to"), "{error}");
    }
}
