//! Reading what a request says about its transport and its host, believing as little as possible.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::{FORWARDED, HOST};
use http::request::Parts;
use http::{HeaderMap, HeaderName};

use super::TlsConnection;
use crate::request::forwarded::{self, ProxyHeader, TrustedProxies, forwarded_for};

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Longest `Forwarded` list walked; a longer one is not believed at all.
const MAX_HOPS: usize = 32;

/// Whether the request reached us over HTTPS; see the module docs for the rules.
pub(super) fn is_https(request: &Parts, proxies: &TrustedProxies) -> bool {
    let peer = forwarded::peer(&request.extensions);
    if proxies.trusts_peer(peer) {
        let headers = &request.headers;
        match proxies.proxy_header() {
            Some(ProxyHeader::Forwarded) if headers.contains_key(FORWARDED) => {
                return forwarded_https(headers, proxies);
            }
            Some(ProxyHeader::XForwardedFor | ProxyHeader::XRealIp)
                if headers.contains_key(X_FORWARDED_PROTO) =>
            {
                return x_forwarded_proto_https(headers);
            }
            _ => {}
        }
    }
    request.extensions.get::<TlsConnection>().is_some()
}

/// Exactly one `X-Forwarded-Proto` line holding exactly `https`. A list or a second line means
/// more than one writer, and there is no telling which value is ours.
fn x_forwarded_proto_https(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(X_FORWARDED_PROTO).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => value.as_bytes().trim_ascii().eq_ignore_ascii_case(b"https"),
        _ => false,
    }
}

/// Walks the `Forwarded` elements right to left while their `for=` is a trusted proxy, and
/// reads the `proto` of the first that is not (the client's hop), or of the left-most one.
fn forwarded_https(headers: &HeaderMap, proxies: &TrustedProxies) -> bool {
    let elements = headers
        .get_all(FORWARDED)
        .iter()
        .rev()
        .flat_map(|value| value.as_bytes().rsplit(|b| *b == b','));
    let mut proto = None;
    for (hop, element) in elements.enumerate() {
        if hop == MAX_HOPS {
            return false;
        }
        let Some(element) = std::str::from_utf8(element).ok() else {
            return false;
        };
        let Some(this) = element_proto(element) else {
            return false;
        };
        match forwarded_for(element) {
            Some(ip) if proxies.is_proxy(ip) => proto = Some(this),
            _ => return this.is_some_and(says_https),
        }
    }
    proto.flatten().is_some_and(says_https)
}

/// The `proto` parameter of one `Forwarded` element: `Some(None)` when it has none, `None` when
/// the element is malformed or names two.
fn element_proto(element: &str) -> Option<Option<&str>> {
    if element.trim().is_empty() {
        return None;
    }
    let mut found = None;
    for pair in element.split(';') {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("proto") {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let value = value.trim();
        found = Some(
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value),
        );
    }
    Some(found)
}

fn says_https(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("https")
}

/// A host name or IP literal with an optional port, checked strictly enough to be put in a
/// `Location` header: lower-case LDH labels (no trailing dot, not all-numeric at the end, which
/// URL parsers would read as an IPv4 address), a dotted-quad IPv4 or a bracketed IPv6 literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Host {
    name: String,
    port: Option<u16>,
}

impl Host {
    pub(super) fn parse(text: &str) -> Option<Self> {
        if text.is_empty() || text.len() > 262 {
            return None;
        }
        let (name, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']')?;
            let ip = inside.parse::<Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                _ => Some(port(after.strip_prefix(':')?)?),
            };
            (format!("[{ip}]"), port)
        } else {
            let (name, port) = match text.split_once(':') {
                Some((name, digits)) => (name, Some(port(digits)?)),
                None => (text, None),
            };
            (host_name(name)?, port)
        };
        Some(Self { name, port })
    }

    /// The host a plain request names: its `Host` header (exactly one) and its target's
    /// authority (HTTP/2, absolute form), which must agree when both are present.
    pub(super) fn of_request(request: &Parts) -> Option<Self> {
        let mut lines = request.headers.get_all(HOST).iter();
        let header = match (lines.next(), lines.next()) {
            (Some(value), None) => Some(Self::parse(value.to_str().ok()?)?),
            (None, _) => None,
            (Some(_), Some(_)) => return None,
        };
        let target = match request.uri.authority() {
            Some(authority) => Some(Self::parse(authority.as_str())?),
            None => None,
        };
        match (header, target) {
            (Some(header), Some(target)) => (header == target).then_some(header),
            (header, target) => header.or(target),
        }
    }

    /// The same host without its port: a plain request's port is the plain-HTTP one.
    pub(super) fn without_port(self) -> Self {
        Self { port: None, ..self }
    }

    /// `localhost` or a loopback address.
    pub(super) fn is_loopback(&self) -> bool {
        if self.name == "localhost" {
            return true;
        }
        let bare = self.name.trim_start_matches('[').trim_end_matches(']');
        bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// 1 to 5 digits, 1 to 65535.
fn port(digits: &str) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u16>().ok().filter(|port| *port != 0)
}

/// A dotted-quad IPv4 address, or a DNS host name of letters, digits and inner hyphens.
fn host_name(name: &str) -> Option<String> {
    if let Ok(ip) = name.parse::<Ipv4Addr>() {
        return Some(ip.to_string());
    }
    if name.is_empty() || name.len() > 253 {
        return None;
    }
    let mut last = "";
    for label in name.split('.') {
        let bytes = label.as_bytes();
        if bytes.is_empty()
            || bytes.len() > 63
            || !bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            || bytes.first() == Some(&b'-')
            || bytes.last() == Some(&b'-')
        {
            return None;
        }
        last = label;
    }
    // `127.1`, `0x7f.1` or `1.2.3.4.5`: numbers that URL parsers may turn into an address.
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || (last.len() > 1 && last[..2].eq_ignore_ascii_case("0x"));
    if numeric {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_parsed_strictly() {
        for (text, shown) in [
            ("api.example.com", "api.example.com"),
            ("API.Example.COM:8443", "api.example.com:8443"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]:3000", "[::1]:3000"),
            ("[2001:DB8::1]", "[2001:db8::1]"),
            ("localhost", "localhost"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ] {
            assert_eq!(
                Host::parse(text).map(|h| h.to_string()).as_deref(),
                Some(shown)
            );
        }
        for bad in [
            "",
            "evil.com@api.example.com",
            "api.example.com/path",
            "api.example.com.",
            "a..b",
            "-a.example",
            "a-.example",
            "under_score.example",
            "api.example.com:",
            "api.example.com:0",
            "api.example.com:65536",
            "api.example.com:+80",
            "api.example.com:80:80",
            "[::1",
            "[::1]x",
            "[::1]:",
            "127.1",
            "0x7f.1",
            "1.2.3.4.5",
            "010.0.0.1",
            "bücher.example",
            "a b",
            "host\tname",
            "%65vil.com",
            "example.com\\@evil.com",
        ] {
            assert_eq!(Host::parse(bad), None, "{bad:?}");
        }
        assert!(Host::parse(&"a".repeat(64)).is_none());
        assert!(Host::parse(&["a"; 200].join(".")).is_none());
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "localhost:3000",
            "127.0.0.1",
            "127.9.9.9:80",
            "[::1]:8080",
        ] {
            assert!(Host::parse(host).unwrap().is_loopback(), "{host}");
        }
        for host in ["localhost.example", "10.0.0.1", "[::2]", "example.com"] {
            assert!(!Host::parse(host).unwrap().is_loopback(), "{host}");
        }
    }

    #[test]
    fn forwarded_elements() {
        assert_eq!(
            element_proto("for=1.2.3.4;proto=https"),
            Some(Some("https"))
        );
        assert_eq!(element_proto(r#"Proto="HTTPS";for=x"#), Some(Some("HTTPS")));
        assert_eq!(element_proto("for=1.2.3.4"), Some(None));
        assert_eq!(element_proto("proto=https;proto=https"), None);
        assert_eq!(element_proto("proto=https;garbage"), None);
        assert_eq!(element_proto(" "), None);
    }
}
