//! Arbitrary bytes in the forwarding headers (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`) of a
//! request from a trusted proxy: the client address is always some address, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::client_ip::{ProxyHeader, TrustedProxies};
use std::sync::LazyLock;

static PROXIES: LazyLock<[TrustedProxies; 3]> = LazyLock::new(|| {
    let trusted = || TrustedProxies::new(["10.0.0.0/8", "fd00::/8"]).expect("valid networks");
    [
        trusted().header(ProxyHeader::XForwardedFor),
        trusted().header(ProxyHeader::Forwarded),
        trusted().header(ProxyHeader::XRealIp),
    ]
});

fuzz_target!(|data: &[u8]| {
    let mut headers = http::HeaderMap::new();
    for chunk in data.split(|b| *b == b'\n').take(8) {
        if let Ok(value) = http::HeaderValue::from_bytes(chunk) {
            for name in ["x-forwarded-for", "forwarded", "x-real-ip"] {
                headers.append(name, value.clone());
            }
        }
    }
    for proxies in PROXIES.iter() {
        for peer in ["10.1.2.3", "203.0.113.9", "fd00::1"] {
            let peer = peer.parse().expect("a literal address");
            let _ = proxies.client_ip(peer, &headers);
        }
    }
});
