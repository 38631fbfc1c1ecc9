//! The one HTTP client of the OIDC module: timeouts, no redirects, a size cap enforced while the
//! body streams in, and https only (plain http on a loopback address when explicitly allowed).

use std::fmt;
use std::time::Duration;

use http::HeaderMap;
use url::{Host, Url};

use crate::error::ConfigError;

/// How the module talks to a provider. Shared by discovery, JWKS and introspection.
#[derive(Clone, Debug)]
pub(crate) struct HttpConfig {
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) max_response_bytes: usize,
    pub(crate) allow_http_on_loopback: bool,
    /// Trusted besides the bundled web PKI roots: a provider behind a private CA.
    pub(crate) root_certificates: Vec<reqwest::Certificate>,
    /// The first bundle refused by a builder setter, reported when the client is built.
    pub(crate) refused: Option<ConfigError>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(10),
            max_response_bytes: 256 * 1024,
            allow_http_on_loopback: false,
            root_certificates: Vec::new(),
            refused: None,
        }
    }
}

/// Why a fetch failed. Only logged, never shown to a caller.
#[derive(Debug)]
pub(crate) enum FetchError {
    Transport(reqwest::Error),
    Status(u16),
    TooLarge,
    Url(&'static str),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transport(error) => write!(f, "transport error: {error}"),
            Self::Status(status) => write!(f, "HTTP status {status}"),
            Self::TooLarge => f.write_str("response larger than the configured cap"),
            Self::Url(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for FetchError {}

#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: reqwest::Client,
    config: HttpConfig,
}

/// A fetched body with the response headers.
pub(crate) struct Fetched {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl HttpConfig {
    /// Adds the certificates of a PEM bundle to the trusted roots; at least one is required. A
    /// refused bundle is kept as the configuration's error (the first one wins) and reported by
    /// [`HttpClient::new`], so builder setters stay infallible.
    pub(crate) fn add_root_certificates(&mut self, pem: &[u8]) {
        let refused = match reqwest::Certificate::from_pem_bundle(pem) {
            Err(_) => Some("the root certificate bundle is not valid PEM"),
            Ok(certificates) if certificates.is_empty() => {
                Some("the root certificate bundle holds no certificate")
            }
            Ok(certificates) => {
                self.root_certificates.extend(certificates);
                None
            }
        };
        if let Some(why) = refused {
            self.refused.get_or_insert(ConfigError::new(why));
        }
    }
}

impl HttpClient {
    pub(crate) fn new(config: HttpConfig) -> Result<Self, ConfigError> {
        if let Some(refused) = &config.refused {
            return Err(refused.clone());
        }
        let mut builder = reqwest::Client::builder();
        for root in &config.root_certificates {
            builder = builder.add_root_certificate(root.clone());
        }
        let client = builder
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            // The whole exchange, so a provider trickling bytes cannot hold a request forever.
            .timeout(config.connect_timeout + config.read_timeout)
            // A redirect could lead to a host or scheme we never checked.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| {
                ConfigError::new("cannot build the HTTP client (is every root certificate valid?)")
            })?;
        Ok(Self { client, config })
    }

    /// Parses `url` and checks it may be fetched: https, or http on a loopback host when allowed.
    pub(crate) fn check_url(&self, url: &str) -> Result<Url, ConfigError> {
        let parsed =
            Url::parse(url).map_err(|_| ConfigError::new(format!("not a URL: {url:?}")))?;
        match parsed.scheme() {
            "https" => Ok(parsed),
            "http" if self.config.allow_http_on_loopback && is_loopback(&parsed) => Ok(parsed),
            "http" if self.config.allow_http_on_loopback => Err(ConfigError::new(format!(
                "{url:?}: plain http is only allowed on a loopback address"
            ))),
            _ => Err(ConfigError::new(format!(
                "{url:?}: only https URLs are allowed (allow_http_on_loopback() permits \
                 http://127.0.0.1 for local tests)"
            ))),
        }
    }

    pub(crate) async fn get(&self, url: &Url) -> Result<Fetched, FetchError> {
        let request = self
            .client
            .get(url.clone())
            .header(http::header::ACCEPT, "application/json");
        self.send(request).await
    }

    /// Sends a request built elsewhere (the oauth2 introspection request), with the same limits.
    pub(crate) async fn execute(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, FetchError> {
        let url = Url::parse(&request.uri().to_string())
            .map_err(|_| FetchError::Url("request URL is not valid"))?;
        self.check_url(url.as_str())
            .map_err(|_| FetchError::Url("request URL is not allowed"))?;
        let (parts, body) = request.into_parts();
        let builder = self
            .client
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body);
        let fetched = self.send_any_status(builder).await?;
        let mut response = http::Response::new(fetched.1.body);
        *response.status_mut() = fetched.0;
        *response.headers_mut() = fetched.1.headers;
        Ok(response)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Fetched, FetchError> {
        let (status, fetched) = self.send_any_status(request).await?;
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        Ok(fetched)
    }

    async fn send_any_status(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(http::StatusCode, Fetched), FetchError> {
        let cap = self.config.max_response_bytes;
        let mut response = request.send().await.map_err(FetchError::Transport)?;
        if response
            .content_length()
            .is_some_and(|length| length > cap as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        // Checked chunk by chunk: a huge or endless body is cut off, never buffered whole.
        while let Some(chunk) = response.chunk().await.map_err(FetchError::Transport)? {
            if body.len() + chunk.len() > cap {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, Fetched { headers, body }))
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// `Cache-Control: max-age` of a response, if it has one (`no-store`/`no-cache` read as 0).
pub(crate) fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut found = None;
    for value in headers.get_all(http::header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            if directive.eq_ignore_ascii_case("no-store")
                || directive.eq_ignore_ascii_case("no-cache")
            {
                return Some(Duration::ZERO);
            }
            if let Some((name, seconds)) = directive.split_once('=')
                && name.trim().eq_ignore_ascii_case("max-age")
                && let Ok(seconds) = seconds.trim().trim_matches('"').parse::<u64>()
            {
                found = Some(Duration::from_secs(seconds));
            }
        }
    }
    found
}
