use std::fmt::Write as _;
use std::hash::Hash;
use std::net::IpAddr;

use axum::extract::MatchedPath;
use http::HeaderName;
use http::request::Parts;

use crate::identity::{Identity, Principal, length_prefixed};
use crate::request::forwarded::{self, group};

/// What a limit counts requests by.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyBy {
    /// The client address ([`ClientIp`](crate::ClientIp)); IPv6 grouped by prefix.
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
#[derive(Hash, Debug, PartialEq, Eq)]
pub(crate) enum Material<'a> {
    Ip(IpAddr),
    /// The whole principal: `sub` values of two identity providers, a Basic user and an API key
    /// subject of the same name are different callers.
    Subject(Principal<'a>),
    ApiKey(&'a str),
    Header(&'a [u8]),
    Route(&'a str),
    RouteSubject(&'a str, Principal<'a>),
    RouteIp(&'a str, IpAddr),
    Global,
}

impl KeyBy {
    /// The policy name of a limit that was not given one: what it counts by.
    pub(crate) fn default_name(&self) -> &'static str {
        match self {
            Self::ClientIp => "per-ip",
            Self::Subject => "per-subject",
            Self::ApiKeyId => "per-api-key",
            Self::Header(_) => "per-header",
            Self::Route => "per-route",
            Self::RouteAndSubject => "per-route-subject",
            Self::RouteAndClientIp => "per-route-ip",
            Self::Global => "global",
        }
    }

    pub(crate) fn material<'a>(&self, request: &'a Parts, v6_prefix: u8) -> Material<'a> {
        let extensions = &request.extensions;
        let ip = || group(forwarded::of(extensions), v6_prefix);
        // Looked up only by the keys that need it: every lookup is on the hot path.
        let identity = || extensions.get::<Identity>();
        let route = || {
            extensions
                .get::<MatchedPath>()
                .map_or("<unmatched>", MatchedPath::as_str)
        };
        match self {
            KeyBy::ClientIp => Material::Ip(ip()),
            KeyBy::Subject => {
                identity().map_or_else(|| Material::Ip(ip()), |i| Material::Subject(i.principal()))
            }
            KeyBy::ApiKeyId => identity()
                .and_then(Identity::api_key_id)
                .map_or_else(|| Material::Ip(ip()), Material::ApiKey),
            KeyBy::Header(name) => {
                let mut values = request.headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    // The whole value: two values that share a prefix are different clients.
                    (Some(value), None) => Material::Header(value.as_bytes()),
                    _ => Material::Ip(ip()),
                }
            }
            KeyBy::Route => Material::Route(route()),
            KeyBy::RouteAndSubject => match identity() {
                Some(identity) => Material::RouteSubject(route(), identity.principal()),
                None => Material::RouteIp(route(), ip()),
            },
            KeyBy::RouteAndClientIp => Material::RouteIp(route(), ip()),
            KeyBy::Global => Material::Global,
        }
    }
}

impl Material<'_> {
    /// A printable form for shared backends (the same on every replica), which the backend
    /// digests into its key.
    ///
    /// Injective: every variable part is written with its length in front, and an issuer that
    /// is absent has its own tag, distinct from an empty one, so two different materials never
    /// share a counter (`iss="a|b", sub="c"` is not `iss="a", sub="b|c"`).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        match self {
            Material::Ip(ip) => ip_part(&mut out, *ip),
            Material::Subject(principal) => subject_part(&mut out, principal),
            Material::ApiKey(k) => {
                out.push_str("key:");
                part(&mut out, k);
            }
            Material::Header(h) => {
                // Hex, so that different byte strings never become the same text.
                out.push_str("hdr:");
                part(&mut out, &hex::encode(h));
            }
            Material::Route(r) => route_part(&mut out, r),
            Material::RouteSubject(r, principal) => {
                route_part(&mut out, r);
                subject_part(&mut out, principal);
            }
            Material::RouteIp(r, ip) => {
                route_part(&mut out, r);
                ip_part(&mut out, *ip);
            }
            Material::Global => out.push_str("global"),
        }
        out
    }
}

/// One variable part: its length in bytes, `:`, the part itself. Nothing can be read into a
/// part beyond its length, whatever it contains.
pub(crate) fn part(out: &mut String, value: &str) {
    length_prefixed(out, value);
}

fn ip_part(out: &mut String, ip: IpAddr) {
    // An address's text form has no `;`, and fixes its own length with it.
    let _ = write!(out, "ip:{ip};");
}

fn route_part(out: &mut String, route: &str) {
    out.push_str("route:");
    part(out, route);
}

/// `sub:` then the principal's key: its kind, `-` for no issuer or `+` and the issuer, then the
/// subject.
fn subject_part(out: &mut String, principal: &Principal<'_>) {
    out.push_str("sub:");
    principal.write_key(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::PrincipalKind;
    use proptest::prelude::*;

    fn user<'a>(issuer: Option<&'a str>, subject: &'a str) -> Principal<'a> {
        Principal::new(PrincipalKind::TokenSubject, issuer, subject)
    }

    /// Issue #16: the shared-backend text of two different materials always differs.
    #[test]
    fn texts_of_different_materials_differ() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let pairs = [
            (
                Material::Subject(user(Some("a|b"), "c")),
                Material::Subject(user(Some("a"), "b|c")),
            ),
            (
                Material::Subject(user(None, "x")),
                Material::Subject(user(Some(""), "x")),
            ),
            (
                Material::Subject(user(None, "x")),
                Material::Subject(Principal::new(PrincipalKind::Basic, None, "x")),
            ),
            (
                Material::Subject(user(Some("i"), "x")),
                Material::Subject(Principal::new(PrincipalKind::Client, Some("i"), "x")),
            ),
            (
                Material::Subject(user(Some("1:a"), "b")),
                Material::Subject(user(Some("1"), ":ab")),
            ),
            (
                Material::RouteSubject("/a", user(Some("i"), "s")),
                Material::RouteSubject("/a|sub:i", user(None, "s")),
            ),
            (
                Material::RouteIp("/a|ip:192.0.2.1", ip),
                Material::RouteIp("/a", ip),
            ),
            (
                Material::Route("/a|ip:192.0.2.1"),
                Material::RouteIp("/a", ip),
            ),
            (Material::ApiKey("k|x"), Material::ApiKey("k")),
        ];
        for (a, b) in pairs {
            assert_ne!(a.text(), b.text(), "{a:?} and {b:?}");
        }
    }

    fn part() -> impl Strategy<Value = String> {
        // Short strings of the separators and digits the encoding itself uses.
        proptest::string::string_regex("[a1:|+;-]{0,4}").unwrap()
    }

    fn kind() -> impl Strategy<Value = PrincipalKind> {
        prop_oneof![
            Just(PrincipalKind::TokenSubject),
            Just(PrincipalKind::Client),
            Just(PrincipalKind::ApiKey),
            Just(PrincipalKind::Basic),
        ]
    }

    fn ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            Just("192.0.2.1".parse().unwrap()),
            Just("2001:db8::1".parse().unwrap())
        ]
    }

    #[derive(Clone, Debug)]
    enum Owned {
        Ip(IpAddr),
        Subject(PrincipalKind, Option<String>, String),
        ApiKey(String),
        Header(Vec<u8>),
        Route(String),
        RouteSubject(String, PrincipalKind, Option<String>, String),
        RouteIp(String, IpAddr),
        Global,
    }

    impl Owned {
        fn material(&self) -> Material<'_> {
            match self {
                Owned::Ip(ip) => Material::Ip(*ip),
                Owned::Subject(k, i, s) => Material::Subject(Principal::new(*k, i.as_deref(), s)),
                Owned::ApiKey(k) => Material::ApiKey(k),
                Owned::Header(h) => Material::Header(h),
                Owned::Route(r) => Material::Route(r),
                Owned::RouteSubject(r, k, i, s) => {
                    Material::RouteSubject(r, Principal::new(*k, i.as_deref(), s))
                }
                Owned::RouteIp(r, ip) => Material::RouteIp(r, *ip),
                Owned::Global => Material::Global,
            }
        }
    }

    fn material() -> impl Strategy<Value = Owned> {
        prop_oneof![
            ip().prop_map(Owned::Ip),
            (kind(), proptest::option::of(part()), part())
                .prop_map(|(k, i, s)| Owned::Subject(k, i, s)),
            part().prop_map(Owned::ApiKey),
            proptest::collection::vec(any::<u8>(), 0..4).prop_map(Owned::Header),
            part().prop_map(Owned::Route),
            (part(), kind(), proptest::option::of(part()), part())
                .prop_map(|(r, k, i, s)| Owned::RouteSubject(r, k, i, s)),
            (part(), ip()).prop_map(|(r, ip)| Owned::RouteIp(r, ip)),
            Just(Owned::Global),
        ]
    }

    proptest! {
        /// Equal texts only for equal materials.
        #[test]
        fn text_is_injective(a in material(), b in material()) {
            let (a, b) = (a.material(), b.material());
            prop_assert_eq!(a.text() == b.text(), a == b, "{:?} / {:?}", a, b);
        }
    }

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
