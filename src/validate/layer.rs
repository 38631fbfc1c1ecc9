use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use http::uri::Authority;
use http::{HeaderName, HeaderValue, Method};
use tower_layer::Layer;

use super::{BodyLimits, Validate};
use crate::error::ConfigError;

/// serde_json refuses a 128th level whatever we configure; staying well below it keeps our own
/// limit the one that answers, and bounds the stack a parse can use.
const MAX_JSON_DEPTH_LIMIT: usize = 100;

/// Request-level rules checked before any body is read, and the body limits of the [`Valid`]
/// extractors behind it; see the [module docs](super). [`new`](Self::new) has the defaults;
/// [`builder`](Self::builder) changes them, checked once at
/// [`build`](ValidateLayerBuilder::build).
///
/// [`Valid`]: super::Valid
#[derive(Clone)]
#[must_use]
pub struct ValidateLayer {
    pub(super) config: Arc<ValidateConfig>,
}

#[derive(Clone, Debug)]
pub(super) struct ValidateConfig {
    pub(super) methods: Vec<Method>,
    /// The `Allow` header value for 405s, built once from `methods`.
    pub(super) allow: HeaderValue,
    pub(super) max_uri_bytes: usize,
    pub(super) max_header_bytes: usize,
    pub(super) required_headers: Vec<HeaderName>,
    /// Empty: any host.
    pub(super) hosts: Vec<AllowedHost>,
    pub(super) bodiless: Vec<Method>,
    pub(super) limits: BodyLimits,
}

/// One entry of the host allowlist: a lower-case host name or IP literal, and a port if the entry
/// named one (without one, any port matches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct AllowedHost {
    host: String,
    port: Option<u16>,
}

impl AllowedHost {
    pub(super) fn parse(value: &str) -> Option<Self> {
        let authority = Authority::from_str(value).ok()?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return None;
        }
        Some(Self {
            host: normalize(authority.host()),
            port: authority.port_u16(),
        })
    }

    pub(super) fn matches(&self, other: &Self) -> bool {
        self.host == other.host && self.port.is_none_or(|port| other.port == Some(port))
    }
}

/// Host names compare case-insensitively, and `example.com.` is `example.com`.
fn normalize(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

impl Default for ValidateLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ValidateLayer {
    /// The defaults: the methods `GET`, `HEAD`, `POST`, `PUT`, `PATCH`, `DELETE` and `OPTIONS`
    /// (anything else, `TRACE`, `CONNECT` and unknown methods like `FOO` included, is 405); URIs up
    /// to 8 KiB (414); header fields up to 16 KiB in all (431); any host; bodies up to 1 MiB and
    /// JSON nested up to 32 levels for the [`Valid`](super::Valid) extractors.
    pub fn new() -> Self {
        let methods = vec![
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ];
        Self {
            config: Arc::new(ValidateConfig {
                allow: allow_header(&methods),
                methods,
                max_uri_bytes: 8 * 1024,
                max_header_bytes: 16 * 1024,
                required_headers: Vec::new(),
                hosts: Vec::new(),
                bodiless: Vec::new(),
                limits: BodyLimits::default(),
            }),
        }
    }

    /// Starts from the defaults of [`new`](Self::new). Settings that can be wrong are checked
    /// at [`build`](ValidateLayerBuilder::build).
    pub fn builder() -> ValidateLayerBuilder {
        ValidateLayerBuilder {
            config: Self::new().config.as_ref().clone(),
            error: None,
        }
    }
}

/// Configures a [`ValidateLayer`]; [`build`](Self::build) reports the first setting that was
/// refused.
#[derive(Clone, Debug)]
#[must_use]
pub struct ValidateLayerBuilder {
    config: ValidateConfig,
    error: Option<ConfigError>,
}

impl ValidateLayerBuilder {
    /// The layer, or the first setting that was refused.
    pub fn build(self) -> Result<ValidateLayer, ConfigError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(ValidateLayer {
                config: Arc::new(self.config),
            }),
        }
    }

    fn fail(&mut self, error: ConfigError) {
        self.error.get_or_insert(error);
    }

    /// The only methods served (replacing the default list); others get 405 with `Allow`.
    pub fn allowed_methods<I: IntoIterator<Item = Method>>(mut self, methods: I) -> Self {
        let mut list: Vec<Method> = Vec::new();
        for method in methods {
            if !list.contains(&method) {
                list.push(method);
            }
        }
        if list.is_empty() {
            self.fail(ConfigError::new(
                "allowed_methods needs at least one method",
            ));
            return self;
        }
        self.config.allow = allow_header(&list);
        self.config.methods = list;
        self
    }

    /// The longest request target (path and query, plus scheme and authority when sent), in
    /// bytes; longer ones get 414.
    pub fn max_uri_bytes(mut self, bytes: usize) -> Self {
        self.config.max_uri_bytes = bytes;
        self
    }

    /// The most bytes of header fields (names, values and 4 bytes of framing each, as on the wire
    /// in HTTP/1.1); more get 431.
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.config.max_header_bytes = bytes;
        self
    }

    /// Requests without this header get 400 (the response names the header).
    pub fn require_header(mut self, name: HeaderName) -> Self {
        let config = &mut self.config;
        if !config.required_headers.contains(&name) {
            config.required_headers.push(name);
        }
        self
    }

    /// Serves only these hosts (`api.example.com`, `api.example.com:8443`, `127.0.0.1`,
    /// `[::1]:3000`); an entry without a port matches any port. Requests for another host get
    /// 421, requests naming no host 400. Both the request target's authority (HTTP/2, absolute
    /// form) and the `Host` header are checked when present.
    pub fn allowed_hosts<I, T>(mut self, hosts: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let mut list = Vec::new();
        for host in hosts {
            let host = host.as_ref();
            match AllowedHost::parse(host) {
                Some(allowed) => list.push(allowed),
                None => {
                    self.fail(ConfigError::new(format!(
                        "allowed_hosts: {host:?} is not a host name or IP literal with an optional port"
                    )));
                    return self;
                }
            }
        }
        if list.is_empty() {
            self.fail(ConfigError::new("allowed_hosts needs at least one host"));
            return self;
        }
        self.config.hosts = list;
        self
    }

    /// Refuses (400) requests of these methods that carry a body: a `GET` body has no meaning
    /// (RFC 9110 §9.3.1) and is a classic request-smuggling and cache-poisoning vector.
    pub fn deny_body_on<I: IntoIterator<Item = Method>>(mut self, methods: I) -> Self {
        let config = &mut self.config;
        for method in methods {
            if !config.bodiless.contains(&method) {
                config.bodiless.push(method);
            }
        }
        self
    }

    /// The largest body the [`Valid`](super::Valid) extractors read (default 1 MiB); larger ones
    /// get 413 without being buffered. Other extractors keep axum's `DefaultBodyLimit`.
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.config.limits.max_body_bytes = bytes;
        self
    }

    /// The deepest nesting of arrays and objects `Valid<Json<T>>` accepts (default 32, at most
    /// 100, below serde_json's own limit of 127); deeper bodies get 400 before they are parsed.
    pub fn max_json_depth(mut self, depth: usize) -> Self {
        if (1..=MAX_JSON_DEPTH_LIMIT).contains(&depth) {
            self.config.limits.max_json_depth = depth;
        } else {
            self.fail(ConfigError::new("max_json_depth must be between 1 and 100"));
        }
        self
    }
}

fn allow_header(methods: &[Method]) -> HeaderValue {
    let names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    // Method names are HTTP tokens, always valid in a header value.
    HeaderValue::from_str(&names.join(", ")).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl fmt::Debug for ValidateLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidateLayer")
            .field("config", &self.config)
            .finish()
    }
}

impl<S> Layer<S> for ValidateLayer {
    type Service = Validate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        crate::guard::Guard::new(inner, self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_entries_are_checked_and_normalized() {
        let entry = AllowedHost::parse("API.Example.com.").unwrap();
        assert!(entry.matches(&AllowedHost::parse("api.example.com:8443").unwrap()));
        let with_port = AllowedHost::parse("api.example.com:8443").unwrap();
        assert!(!with_port.matches(&AllowedHost::parse("api.example.com").unwrap()));
        assert!(AllowedHost::parse("[::1]:3000").is_some());
        for bad in ["", "user@host", "http://host", "host/path", "ho st"] {
            assert!(AllowedHost::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn fallible_settings_refuse_nonsense() {
        let layer = ValidateLayer::builder;
        assert!(layer().max_json_depth(0).build().is_err());
        assert!(layer().max_json_depth(101).build().is_err());
        assert!(layer().max_json_depth(100).build().is_ok());
        assert!(layer().allowed_methods([]).build().is_err());
        assert!(layer().allowed_hosts(["a b"]).build().is_err());
        assert!(layer().allowed_hosts::<_, &str>([]).build().is_err());
        // The first refusal is reported, whatever comes after it.
        let error = layer()
            .max_json_depth(0)
            .allowed_hosts(["a b"])
            .max_json_depth(10)
            .build()
            .unwrap_err();
        assert!(error.to_string().contains("max_json_depth"), "{error}");
    }
}
