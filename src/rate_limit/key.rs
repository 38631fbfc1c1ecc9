use std::fmt::Write as _;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};

use axum::extract::MatchedPath;
use http::{HeaderName, Request};

use crate::identity::Identity;

/// What a limit counts requests by.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyBy {
    /// The client address ([`ClientIp`](crate::client_ip::ClientIp)); IPv6 grouped by prefix.
    ClientIp,
    /// The authenticated subject; anonymous requests count by client address.
    Subject,
    /// The API key id; requests without one count by client address.
    ApiKeyId,
    /// The value of a header; requests without it count by client address. Clients choose
    /// header values: key by a header only behind authentication, never as the only limit in
    /// front of it (each new value is a fresh budget).
    Header(HeaderName),
    /// The route pattern: one budget per route for everybody.
    Route,
    /// Route and subject (anonymous: route and client address).
    RouteAndSubject,
    /// Route and client address.
    RouteAndClientIp,
    /// One budget for the whole service.
    Global,
}

/// The part of a request a limit counts by, borrowed from the request.
#[derive(Hash, Debug)]
pub(crate) enum Material<'a> {
    Ip(IpAddr),
    /// Issuer and subject: `sub` values of two identity providers are different people.
    Subject(Option<&'a str>, &'a str),
    ApiKey(&'a str),
    Header(&'a [u8]),
    Route(&'a str),
    RouteSubject(&'a str, Option<&'a str>, &'a str),
    RouteIp(&'a str, IpAddr),
    Global,
}

/// Longest header value used as a key; longer ones are cut (their prefix still separates them).
const MAX_HEADER_KEY: usize = 256;

impl KeyBy {
    pub(crate) fn material<'a, B>(&self, request: &'a Request<B>, v6_prefix: u8) -> Material<'a> {
        let extensions = request.extensions();
        let ip = || group(crate::client_ip::of(extensions), v6_prefix);
        // Looked up only by the keys that need it: every lookup is on the hot path.
        let identity = || extensions.get::<Identity>();
        let route = || {
            extensions
                .get::<MatchedPath>()
                .map_or("<unmatched>", MatchedPath::as_str)
        };
        match self {
            KeyBy::ClientIp => Material::Ip(ip()),
            KeyBy::Subject => identity().map_or_else(
                || Material::Ip(ip()),
                |i| Material::Subject(i.issuer(), i.subject()),
            ),
            KeyBy::ApiKeyId => identity()
                .and_then(Identity::api_key_id)
                .map_or_else(|| Material::Ip(ip()), Material::ApiKey),
            KeyBy::Header(name) => {
                let mut values = request.headers().get_all(name).iter();
                match (values.next(), values.next()) {
                    (Some(value), None) => {
                        let bytes = value.as_bytes();
                        Material::Header(&bytes[..bytes.len().min(MAX_HEADER_KEY)])
                    }
                    _ => Material::Ip(ip()),
                }
            }
            KeyBy::Route => Material::Route(route()),
            KeyBy::RouteAndSubject => match identity() {
                Some(identity) => {
                    Material::RouteSubject(route(), identity.issuer(), identity.subject())
                }
                None => Material::RouteIp(route(), ip()),
            },
            KeyBy::RouteAndClientIp => Material::RouteIp(route(), ip()),
            KeyBy::Global => Material::Global,
        }
    }
}

impl Material<'_> {
    /// A printable, bounded form for shared backends (the same on every replica).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = match self {
            Material::Ip(ip) => write!(out, "ip:{ip}"),
            Material::Subject(iss, s) => write!(out, "sub:{}|{s}", iss.unwrap_or("")),
            Material::ApiKey(k) => write!(out, "key:{k}"),
            // Hex, so that different byte strings never become the same text.
            Material::Header(h) => {
                out.push_str("hdr:");
                h.iter().try_for_each(|b| write!(out, "{b:02x}"))
            }
            Material::Route(r) => write!(out, "route:{r}"),
            Material::RouteSubject(r, iss, s) => {
                write!(out, "route:{r}|sub:{}|{s}", iss.unwrap_or(""))
            }
            Material::RouteIp(r, ip) => write!(out, "route:{r}|ip:{ip}"),
            Material::Global => write!(out, "global"),
        };
        out
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

    #[test]
    fn ipv6_is_grouped_by_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(group(a, 64), group(b, 64));
        assert_ne!(group(a, 64), group(c, 64));
        assert_eq!(group(a, 128), a);
        assert_eq!(group(a, 0), "::".parse::<IpAddr>().unwrap());
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(group(v4, 64), v4);
    }
}
