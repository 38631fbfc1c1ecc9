//! Reading the `Authorization` header strictly (RFC 9110 §11.6.2, RFC 6750 §2.1).
//!
//! Hand-written because it is a few lines and the available crates (`headers`) accept more than we
//! want: we refuse repeated headers, non-ASCII bytes and anything but `scheme 1*SP token68`.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::AUTHORIZATION;
use http::{Extensions, HeaderMap, HeaderValue};

use crate::error::Reason;
use crate::error::{Rejection, RejectionKind};

/// Checks what the layer must refuse before any authenticator looks: repeated `Authorization`
/// headers and values that are not `scheme 1*SP token68`.
pub(crate) fn check_authorization(headers: &HeaderMap) -> Result<bool, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(false);
    };
    if values.next().is_some() {
        return Err(invalid_request(
            Reason::DuplicateAuthorization,
            "Send exactly one Authorization header.",
        ));
    }
    // The syntax check admits only ASCII, so no separate UTF-8 or visible-ASCII pass is needed.
    if !well_formed(value.as_bytes()) {
        return Err(invalid_request(
            Reason::MalformedAuthorization,
            "The Authorization header must be a scheme followed by exactly one credential.",
        ));
    }
    Ok(true)
}

/// The credentials of `scheme` (compared case-insensitively) from a header already accepted by
/// [`check_authorization`].
///
/// The layer checks the syntax before any authenticator runs, so the credential is not scanned a
/// second time here (that scan was a tenth of a microsecond per request). Used outside the layer,
/// a malformed credential is refused by what follows: strict decoding (base64, the JWT parts), a
/// key comparison, or [`is_credential`] before a token is sent for introspection; as an invalid
/// credential rather than a missing one.
pub(crate) fn credentials<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    credentials_in(headers.get(AUTHORIZATION)?, scheme)
}

/// [`credentials`] of one `Authorization` value.
fn credentials_in<'a>(value: &'a HeaderValue, scheme: &str) -> Option<&'a str> {
    let value = value.as_bytes();
    // Most callers ask for a scheme the request does not use: compare the scheme before
    // touching a credential of several hundred bytes.
    let start = value.iter().position(|b| *b != b' ')?;
    let named = value.get(start..start + scheme.len())?;
    if !named.eq_ignore_ascii_case(scheme.as_bytes())
        || value.get(start + scheme.len()) != Some(&b' ')
    {
        return None;
    }
    let credentials = trim_spaces(value.get(start + scheme.len()..)?);
    if credentials.is_empty() {
        return None;
    }
    std::str::from_utf8(credentials).ok()
}

/// Whether `value` is `scheme 1*SP token68`, with the token68 syntax checked (RFC 9110 §11.2).
fn well_formed(value: &[u8]) -> bool {
    let value = trim_spaces(value);
    let Some(space) = value.iter().position(|b| *b == b' ') else {
        return false;
    };
    let (scheme, rest) = (&value[..space], &value[space..]);
    let valid_scheme = !scheme.is_empty() && scheme.iter().all(|b| is_tchar(*b));
    valid_scheme && is_credential(trim_spaces(rest))
}

/// Whether `credential` is one `token68` (RFC 9110 §11.2): for callers that act on a credential
/// outside the layer's check, such as sending it to an identity provider.
pub(crate) fn is_credential(credential: &[u8]) -> bool {
    let padding = credential.iter().rev().take_while(|b| **b == b'=').count();
    let body = &credential[..credential.len() - padding];
    !body.is_empty() && is_token68(body)
}

/// Whether every byte is a `token68` character besides the trailing `=` padding (RFC 9110
/// §11.2). Branch-free per byte, in fixed chunks, so the compiler vectorizes it: this scans every
/// token of several hundred bytes on every request.
fn is_token68(bytes: &[u8]) -> bool {
    bytes
        .chunks(32)
        .all(|chunk| chunk.iter().fold(true, |ok, &b| ok & is_token68_byte(b)))
}

fn is_token68_byte(b: u8) -> bool {
    // `b | 0x20` lower-cases letters and maps no other byte into `a..=z`.
    ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

/// Trims spaces only (not tabs or other whitespace, which the syntax refuses).
fn trim_spaces(mut value: &[u8]) -> &[u8] {
    while let [b' ', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' '] = value {
        value = rest;
    }
    value
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A 400 `invalid_request`; the layer adds a challenge for each scheme it accepts.
pub(crate) fn invalid_request(reason: Reason, detail: &'static str) -> Rejection {
    Rejection::new(RejectionKind::InvalidRequest)
        .with_reason(reason)
        .with_detail(detail)
}

/// Longest accepted `user:password` after base64 decoding.
const MAX_CREDENTIALS_LEN: usize = 1024;

/// `user:password` from the base64 credentials, or `None` when they are not well-formed.
pub(crate) fn decode_basic(encoded: &str) -> Option<(String, String)> {
    if encoded.len() > MAX_CREDENTIALS_LEN * 4 / 3 + 4 {
        return None;
    }
    let decoded = STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    if user.is_empty() || user.chars().any(char::is_control) {
        return None;
    }
    Some((user.to_owned(), password.to_owned()))
}

/// A user name and password from a Basic `Authorization` header.
pub(crate) struct BasicCredentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

/// A request's Basic credentials, decoded once for the audit trail, the lockout and the Basic
/// authenticator: a request extension, kept with the header value it was decoded from. A reader
/// whose request carries another value (a layer in between replaced it) decodes that one rather
/// than trust what was kept. The type is crate-private, so nothing else can insert one.
#[derive(Clone)]
struct DecodedBasic {
    header: HeaderValue,
    /// `None`: a Basic credential that is not `user:password` in base64.
    credentials: Option<Arc<BasicCredentials>>,
}

/// The request's Basic credentials: `None` without a Basic `Authorization` value,
/// `Some(None)` for a malformed one. Reads what [`keep_basic`] kept when it is for this value.
pub(crate) fn basic(
    headers: &HeaderMap,
    extensions: &Extensions,
) -> Option<Option<Arc<BasicCredentials>>> {
    let value = headers.get(AUTHORIZATION)?;
    match kept(value, extensions) {
        Some(credentials) => Some(credentials),
        None => decode_basic_value(value),
    }
}

/// What [`keep_basic`] kept for exactly this header value, if anything.
fn kept(value: &HeaderValue, extensions: &Extensions) -> Option<Option<Arc<BasicCredentials>>> {
    let kept = extensions.get::<DecodedBasic>()?;
    (kept.header == value).then(|| kept.credentials.clone())
}

fn decode_basic_value(value: &HeaderValue) -> Option<Option<Arc<BasicCredentials>>> {
    let encoded = credentials_in(value, "Basic")?;
    Some(decode_basic(encoded).map(|(user, password)| Arc::new(BasicCredentials { user, password })))
}

/// As [`basic`], and keeps the result in `extensions` for the layers inside, so that the header
/// is decoded once per request. Requests without Basic credentials get no extension.
pub(crate) fn keep_basic(
    headers: &HeaderMap,
    extensions: &mut Extensions,
) -> Option<Option<Arc<BasicCredentials>>> {
    let value = headers.get(AUTHORIZATION)?;
    if let Some(credentials) = kept(value, extensions) {
        return Some(credentials);
    }
    let found = decode_basic_value(value)?;
    extensions.insert(DecodedBasic {
        header: value.clone(),
        credentials: found.clone(),
    });
    Some(found)
}

/// The user name a request tries to log in as with Basic, for brute-force counting and the
/// audit trail.
pub(crate) fn basic_user_name(headers: &HeaderMap, extensions: &Extensions) -> Option<String> {
    basic(headers, extensions)?.map(|credentials| credentials.user.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic_header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn basic_credentials_are_decoded_once_and_only_for_their_own_header() {
        let alice = format!("Basic {}", STANDARD.encode("alice:secret"));
        let bob = format!("Basic {}", STANDARD.encode("bob:other"));
        let mut extensions = Extensions::new();
        let kept = keep_basic(&basic_header(&alice), &mut extensions).unwrap().unwrap();
        assert_eq!((kept.user.as_str(), kept.password.as_str()), ("alice", "secret"));
        // The same header reads what was kept: the very same decoding, not a second one.
        let again = basic(&basic_header(&alice), &extensions).unwrap().unwrap();
        assert!(Arc::ptr_eq(&kept, &again));
        // A header replaced after it was kept is decoded afresh, never answered from the kept one.
        let other = basic(&basic_header(&bob), &extensions).unwrap().unwrap();
        assert_eq!(other.user, "bob");
        assert_eq!(basic_user_name(&basic_header(&bob), &extensions).as_deref(), Some("bob"));
        // Kept again for the new header, it replaces the old entry.
        let bob_kept = keep_basic(&basic_header(&bob), &mut extensions).unwrap().unwrap();
        assert!(Arc::ptr_eq(
            &bob_kept,
            &basic(&basic_header(&bob), &extensions).unwrap().unwrap()
        ));
        // Malformed: present, but no credentials; other schemes and no header: absent.
        let mut extensions = Extensions::new();
        assert!(matches!(keep_basic(&basic_header("Basic !!!"), &mut extensions), Some(None)));
        assert!(matches!(basic(&basic_header("Basic !!!"), &extensions), Some(None)));
        assert!(basic(&basic_header("Bearer abc"), &Extensions::new()).is_none());
        assert!(basic(&HeaderMap::new(), &Extensions::new()).is_none());
        let mut untouched = Extensions::new();
        assert!(keep_basic(&basic_header("Bearer abc"), &mut untouched).is_none());
        assert!(untouched.get::<DecodedBasic>().is_none());
        // A Basic header replaced by another scheme after it was kept: no Basic credentials.
        let mut extensions = Extensions::new();
        keep_basic(&basic_header(&alice), &mut extensions);
        assert!(basic(&basic_header("Bearer abc"), &extensions).is_none());
        // With two values, the first is read, as `credentials` reads it (the layer refuses
        // duplicates before any authenticator runs).
        let mut two = basic_header(&alice);
        two.append(AUTHORIZATION, HeaderValue::from_str(&bob).unwrap());
        let mut extensions = Extensions::new();
        assert_eq!(keep_basic(&two, &mut extensions).unwrap().unwrap().user, "alice");
    }

    #[test]
    fn token68_bytes_are_exactly_the_rfc_set() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_token68_byte(b), expected, "byte {b:#04x}");
        }
        let long = "a".repeat(100) + "%" + &"b".repeat(100);
        assert!(!is_token68(long.as_bytes()));
        assert!(is_token68(&long.as_bytes()[..100]));
    }

    #[test]
    fn accepts_only_a_scheme_and_token68() {
        assert!(well_formed(b"Bearer abc.def-_~+/=="));
        assert!(well_formed(b"bearer   abc"));
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer ==",
            "Bearer a=b",
            " abc",
            "Be\"arer abc",
            "Bearer a\tb",
            "Bearer \tabc",
            "\tBearer abc",
            "Bearer abc\t",
            "Bearer é",
        ] {
            assert!(!well_formed(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn credentials_are_those_of_the_scheme_asked_for() {
        let headers = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, http::HeaderValue::from_static(value));
            headers
        };
        assert_eq!(credentials(&headers("Bearer abc"), "Bearer"), Some("abc"));
        assert_eq!(
            credentials(&headers("  bearer   abc  "), "Bearer"),
            Some("abc")
        );
        assert_eq!(credentials(&headers("Bearer abc"), "Basic"), None);
        assert_eq!(credentials(&headers("Bearerabc x"), "Bearer"), None);
        assert_eq!(credentials(&headers("Bearer    "), "Bearer"), None);
        assert_eq!(credentials(&headers("Bear"), "Bearer"), None);
        assert_eq!(credentials(&HeaderMap::new(), "Bearer"), None);
        // Not checked again here: the layer refused these before any authenticator asked, and
        // an authenticator used alone refuses them as it decodes (or, for introspection, with
        // `is_credential`).
        assert_eq!(credentials(&headers("Bearer a b"), "Bearer"), Some("a b"));
        for bad in ["a b", "a,b", "==", "a=b", "\tabc", ""] {
            assert!(!is_credential(bad.as_bytes()), "{bad:?}");
        }
        assert!(is_credential(b"abc.def-_~+/=="));
    }
}
