//! Reading the `Authorization` header strictly (RFC 9110 §11.6.2, RFC 6750 §2.1).
//!
//! Hand-written because it is a few lines and the available crates (`headers`) accept more than we
//! want: we refuse repeated headers, non-ASCII bytes and anything but `scheme 1*SP token68`.

use http::HeaderMap;
use http::header::AUTHORIZATION;

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
            "duplicate_authorization",
            "Send exactly one Authorization header.",
        ));
    }
    let parsed = value.to_str().ok().and_then(split_credentials);
    match parsed {
        Some(_) => Ok(true),
        None => Err(invalid_request(
            "malformed_authorization",
            "The Authorization header must be a scheme followed by exactly one credential.",
        )),
    }
}

/// The credentials of `scheme` (compared case-insensitively) from a header already accepted by
/// [`check_authorization`].
pub(crate) fn credentials<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    // Most callers ask for a scheme the request does not use: compare the scheme before
    // scanning a credential of several hundred bytes.
    let start = value.iter().position(|b| *b != b' ')?;
    let named = value.get(start..start + scheme.len())?;
    if !named.eq_ignore_ascii_case(scheme.as_bytes())
        || value.get(start + scheme.len()) != Some(&b' ')
    {
        return None;
    }
    let value = std::str::from_utf8(value).ok()?;
    let (found, credentials) = split_credentials(value)?;
    found.eq_ignore_ascii_case(scheme).then_some(credentials)
}

/// `scheme 1*SP token68`, with the token68 syntax checked (RFC 9110 §11.2).
fn split_credentials(value: &str) -> Option<(&str, &str)> {
    let value = value.trim_matches(' ');
    let (scheme, rest) = value.split_once(' ')?;
    let credentials = rest.trim_start_matches(' ');
    let valid_scheme = !scheme.is_empty() && scheme.bytes().all(is_tchar);
    let body = credentials.trim_end_matches('=');
    let valid_token68 = !body.is_empty() && body.bytes().all(|b| TOKEN68[usize::from(b)]);
    (valid_scheme && valid_token68).then_some((scheme, credentials))
}

/// `token68` characters besides the trailing `=` padding (RFC 9110 §11.2), as a table: the check
/// runs over every token on every request.
static TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A 400 `invalid_request`; the layer adds a challenge for each scheme it accepts.
pub(crate) fn invalid_request(reason: &'static str, detail: &'static str) -> Rejection {
    Rejection::new(RejectionKind::InvalidRequest)
        .with_reason(reason)
        .with_detail(detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_scheme_and_token68() {
        assert_eq!(
            split_credentials("Bearer abc.def-_~+/=="),
            Some(("Bearer", "abc.def-_~+/=="))
        );
        assert_eq!(split_credentials("bearer   abc"), Some(("bearer", "abc")));
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
        ] {
            assert_eq!(split_credentials(bad), None, "{bad:?}");
        }
    }
}
