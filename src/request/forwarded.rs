//! Where a request comes from: the socket peer, the trusted proxies in front of us and what they
//! forward, the client address. Read by the client-IP, transport, rate-limit, lockout and audit
//! layers alike, so it lives below all of them.

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;
use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use crate::error::ConfigError;

/// The client's address as worked out by [`ClientIpLayer`](crate::client_ip::ClientIpLayer) (or
/// the socket peer without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// Which header your proxies write the client address into. Configure exactly the one your
/// proxy sets (and overwrites or appends to); the others are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, AWS ALB, most CDNs).
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
    /// `X-Real-IP: client`, a single address set by the proxy.
    XRealIp,
}

/// The proxies whose forwarding headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: Option<ProxyHeader>,
}

/// Longest forwarding header walked; longer chains stop at this many hops.
const MAX_HOPS: usize = 32;

impl TrustedProxies {
    /// No proxies: the socket peer is the client. The default.
    pub fn none() -> Self {
        Self::default()
    }

    /// Proxies in these networks (`"10.0.0.0/8"`, `"192.0.2.7"`, `"fd00::/8"`), read from
    /// `X-Forwarded-For` unless [`header`](Self::header) says otherwise.
    pub fn new<I: IntoIterator<Item = T>, T: AsRef<str>>(networks: I) -> Result<Self, ConfigError> {
        let mut parsed = Vec::new();
        for network in networks {
            let text = network.as_ref();
            let net = text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::new(format!("`{text}` is not an IP network")))?;
            parsed.push(net);
        }
        Ok(Self {
            networks: parsed,
            header: Some(ProxyHeader::XForwardedFor),
        })
    }

    /// Reads the client from this header.
    pub fn header(mut self, header: ProxyHeader) -> Self {
        self.header = Some(header);
        self
    }

    /// Whether these and `other` trust the same networks (in any order; the header may differ,
    /// since the transport layer reads the scheme and this layer the address).
    pub(crate) fn same_networks(&self, other: &TrustedProxies) -> bool {
        // `10.0.0.1/8` and `10.0.0.0/8` are the same network.
        let covered = |a: &Self, b: &Self| {
            a.networks.iter().all(|net| {
                b.networks
                    .iter()
                    .any(|theirs| theirs.trunc() == net.trunc())
            })
        };
        covered(self, other) && covered(other, self)
    }

    /// Whether any proxy is trusted.
    pub(crate) fn trusts_any(&self) -> bool {
        !self.networks.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// The client address for a request from `peer` with these headers.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        let Some(header) = self.header else {
            return peer;
        };
        if !self.trusts(peer) {
            return peer;
        }
        match header {
            ProxyHeader::XRealIp => {
                let mut values = headers.get_all(HeaderName::from_static("x-real-ip")).iter();
                match (values.next(), values.next()) {
                    (Some(value), None) => value
                        .to_str()
                        .ok()
                        .and_then(|v| v.trim().parse::<IpAddr>().ok())
                        .map_or(peer, canonical),
                    _ => peer,
                }
            }
            ProxyHeader::XForwardedFor => {
                self.walk(peer, headers, "x-forwarded-for", x_forwarded_for)
            }
            ProxyHeader::Forwarded => self.walk(peer, headers, "forwarded", forwarded_for),
        }
    }

    /// Walks the hops right to left (the right-most were appended by our own proxies) and returns
    /// the first address that is not a trusted proxy. A hop that cannot be read stops the walk at
    /// the last trusted address: better to rate-limit a proxy than to believe a forged value.
    fn walk(
        &self,
        peer: IpAddr,
        headers: &HeaderMap,
        name: &'static str,
        parse: impl Fn(&str) -> Option<IpAddr>,
    ) -> IpAddr {
        // Raw bytes, split per hop: a client can put non-ASCII bytes in its own (left-most) part
        // of the line, which must not make the hops our proxies appended unreadable.
        let values: Vec<&[u8]> = headers
            .get_all(HeaderName::from_static(name))
            .iter()
            .map(|value| value.as_bytes())
            .collect();
        let hops = values
            .iter()
            .rev()
            .flat_map(|value| value.rsplit(|b| *b == b','))
            .take(MAX_HOPS);
        let mut last_trusted = peer;
        for hop in hops {
            let hop = std::str::from_utf8(hop).ok();
            match hop.and_then(&parse).map(canonical) {
                Some(ip) if self.trusts(ip) => last_trusted = ip,
                Some(ip) => return ip,
                None => return last_trusted,
            }
        }
        last_trusted
    }

    /// Whether forwarding headers from this socket peer are believed: it is a trusted proxy and
    /// a header is configured.
    pub(crate) fn trusts_peer(&self, peer: IpAddr) -> bool {
        self.header.is_some() && self.trusts(canonical(peer))
    }

    /// Whether an address named in a forwarding header is one of the proxies.
    pub(crate) fn is_proxy(&self, ip: IpAddr) -> bool {
        self.trusts(canonical(ip))
    }

    /// The header the proxies write, if any.
    pub(crate) fn proxy_header(&self) -> Option<ProxyHeader> {
        self.header
    }
}

/// The `for=` address of one RFC 7239 element: `for=192.0.2.60`, `for="[2001:db8::1]:4711"`,
/// `For="192.0.2.60:80"`. Obfuscated and `unknown` identifiers yield `None`.
///
/// Hand-written: the grammar is small and the crates for it are unmaintained; it is covered by
/// property tests.
/// One `X-Forwarded-For` hop: an address, or an address with the client's port as some proxies
/// write it (`203.0.113.7:51234`, `[2001:db8::1]:443`; Azure Application Gateway does). Reading
/// such a hop as unreadable would stop the walk at our own proxy, and every client behind it
/// would then share the proxy's address: one client's failures would lock out everyone.
fn x_forwarded_for(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    let port =
        |p: &str| p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok();
    if let Some(rest) = hop.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !after.is_empty() && !after.strip_prefix(':').is_some_and(port) {
            return None;
        }
        return inside.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (host, p) = hop.split_once(':')?;
    if !port(p) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

pub(crate) fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut found = None;
    for pair in element.split(';') {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            continue;
        }
        if found.is_some() {
            return None; // two `for` parameters in one element
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        let ip = if let Some(rest) = value.strip_prefix('[') {
            let (inside, _port) = rest.split_once(']')?;
            inside.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)?
        } else {
            let host = match value.split_once(':') {
                Some((host, _port)) => host,
                None => value,
            };
            host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)?
        };
        found = Some(ip);
    }
    found
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are the IPv4 client they carry.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The socket peer from axum's `ConnectInfo`, or `0.0.0.0` when the server does not provide it
/// (then every client shares one address: reported once, loudly).
pub(crate) fn peer(extensions: &http::Extensions) -> IpAddr {
    match extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(info) => info.0.ip(),
        None => {
            static WARNED: std::sync::atomic::AtomicBool =
                std::sync::atomic::AtomicBool::new(false);
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                tracing::warn!(
                    target: "portcullis::client_ip",
                    "no ConnectInfo<SocketAddr>: serve with into_make_service_with_connect_info, \
                     or every client counts as 0.0.0.0"
                );
            }
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        }
    }
}

/// The client address of a request: the [`ClientIp`] left by a
/// [`ClientIpLayer`](crate::client_ip::ClientIpLayer), else the peer.
pub(crate) fn of(extensions: &http::Extensions) -> IpAddr {
    match extensions.get::<ClientIp>() {
        Some(ClientIp(ip)) => *ip,
        None => canonical(peer(extensions)),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(of(&parts.extensions)))
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// IPv6 clients are grouped by prefix (default /64, one customer site): a single host can
/// otherwise rotate through 2^64 addresses and get a fresh budget for each.
pub(crate) fn group(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let prefix = u32::from(v6_prefix.min(128));
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - prefix)
            };
            IpAddr::V6(Ipv6Addr::from(bits & mask))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_send() {
        let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        let spoof = headers(&[("x-forwarded-for", "1.1.1.1")]);
        assert_eq!(
            proxies.client_ip(ip("203.0.113.9"), &spoof),
            ip("203.0.113.9")
        );
        assert_eq!(
            TrustedProxies::none().client_ip(ip("10.0.0.1"), &spoof),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]);
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), &chain),
            ip("198.51.100.7")
        );
        // Two header lines are one list.
        let split = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), &split),
            ip("198.51.100.7")
        );
        // Only proxies: the left-most proxy is as far as we can see.
        let internal = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.2"), &internal), ip("10.9.9.9"));
        // Garbage stops the walk at the last trusted hop.
        let garbage = headers(&[("x-forwarded-for", "1.2.3.4, nonsense, 10.1.1.1")]);
        assert_eq!(proxies.client_ip(ip("10.0.0.2"), &garbage), ip("10.1.1.1"));
        // A client's own non-ASCII bytes do not hide the hops our proxies appended.
        let mut dirty = HeaderMap::new();
        dirty.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff\xfe, 198.51.100.7").unwrap(),
        );
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), &dirty),
            ip("198.51.100.7")
        );
        // No header: the proxy itself.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn forwarded_and_x_real_ip() {
        let forwarded = TrustedProxies::new(["10.0.0.0/8"])
            .unwrap()
            .header(ProxyHeader::Forwarded);
        let value = headers(&[(
            "forwarded",
            r#"for=6.6.6.6, For="[2001:db8:cafe::17]:4711";proto=https, for=10.1.1.1;by=10.0.0.2"#,
        )]);
        assert_eq!(
            forwarded.client_ip(ip("10.0.0.2"), &value),
            ip("2001:db8:cafe::17")
        );
        let hidden = headers(&[("forwarded", "for=_hidden, for=10.1.1.1")]);
        assert_eq!(forwarded.client_ip(ip("10.0.0.2"), &hidden), ip("10.1.1.1"));
        let real = TrustedProxies::new(["10.0.0.2"])
            .unwrap()
            .header(ProxyHeader::XRealIp);
        assert_eq!(
            real.client_ip(ip("10.0.0.2"), &headers(&[("x-real-ip", "198.51.100.7")])),
            ip("198.51.100.7")
        );
        let twice = headers(&[("x-real-ip", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]);
        assert_eq!(real.client_ip(ip("10.0.0.2"), &twice), ip("10.0.0.2"));
    }

    #[test]
    fn forwarded_element_parsing() {
        assert_eq!(
            forwarded_for("for=192.0.2.60;proto=http"),
            Some(ip("192.0.2.60"))
        );
        assert_eq!(
            forwarded_for(r#"for="192.0.2.60:8080""#),
            Some(ip("192.0.2.60"))
        );
        assert_eq!(forwarded_for(r#"for="[::1]""#), Some(ip("::1")));
        for bad in [
            "for=unknown",
            "for=",
            "proto=http",
            "for=1.2.3.4;for=5.6.7.8",
            "for=[::1",
            "garbage",
            "for=::1",
        ] {
            assert_eq!(forwarded_for(bad), None, "{bad}");
        }
    }

    #[test]
    fn mapped_ipv6_is_ipv4() {
        assert_eq!(canonical(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert!(TrustedProxies::new(["not-a-network"]).is_err());
    }
}
