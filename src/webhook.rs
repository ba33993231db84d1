//! Checking the signature a telephony provider puts on its webhooks.

use core::fmt;

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::ExposeSecret;
use crate::{Error, Secret};

/// Verifies (and makes) `X-Twilio-Signature` webhook signatures.
///
/// # Use case
///
/// The phone flow starts at a webhook: the provider posts the caller's
/// keypad digits to the service. Without a signature check anyone who
/// learns the URL can post forged digits. Check every request before
/// reading a parameter, and answer `403` when the check fails.
///
/// # About
///
/// The provider signs each request with HMAC-SHA1 (its choice; SHA-1's
/// collisions do not weaken HMAC) keyed by the account's
/// auth token, and sends the base64 of the MAC in the `X-Twilio-Signature`
/// header. What it signs:
///
/// - **Form posts** (`application/x-www-form-urlencoded`): the full URL
///   (scheme, host, path and query string, as the provider called it)
///   followed by every POST parameter sorted by name, each name immediately
///   followed by its value. A name sent several times contributes each
///   distinct value, sorted.
/// - **JSON bodies**: the full URL only; the URL carries a `bodySHA256`
///   query parameter holding the hex SHA-256 of the raw body, which is
///   checked too.
///
/// As the official helper libraries do, the URL is tried as received,
/// without its port and with the scheme's default port (`:443`/`:80`), since
/// proxies add or drop it; a signature matching any of them is accepted.
/// The libraries' further retries with a WHATWG-normalized URL are not
/// made: pass the URL exactly as the provider called it.
///
/// # Errors
///
/// [`Error::WebhookSignature`] when no variant matches (a forged or
/// altered request, a wrong URL, a wrong token); [`Error::WebhookBody`]
/// when a JSON request's URL has no `bodySHA256` or the body does not hash
/// to it. Neither echoes the token, the URL or the parameters.
///
/// # Security
///
/// - The comparison is constant-time (`subtle`).
/// - The auth token is kept in a [`Secret`] and wiped on drop; `Debug`
///   shows nothing of it.
/// - A signature proves origin, not freshness: a captured request can be
///   replayed. Bind what the request carries to its call (the `CallSid`)
///   and refuse a call's digits twice.
///
/// # Example
///
/// ```
/// use pinseal::Secret;
/// use pinseal::webhook::TwilioSignature;
///
/// // The example from the provider's documentation.
/// let check = TwilioSignature::new(Secret::new("12345".to_string()));
/// let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
/// let params = [
///     ("CallSid", "CA1234567890ABCDE"),
///     ("Caller", "+14158675310"),
///     ("Digits", "1234"),
///     ("From", "+14158675310"),
///     ("To", "+18005551212"),
/// ];
/// check.verify_form(url, &params, "GvWf1cFY/Q7PnoempGyD5oXAezc=")?;
/// assert!(check.verify_form(url, &params[1..], "GvWf1cFY/Q7PnoempGyD5oXAezc=").is_err());
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct TwilioSignature {
    auth_token: Secret<String>,
}

impl TwilioSignature {
    /// A checker for the account whose auth token is `auth_token`.
    pub fn new(auth_token: Secret<String>) -> TwilioSignature {
        TwilioSignature { auth_token }
    }

    /// Checks the signature of a form post: `url` as the provider called
    /// it, every POST parameter (in any order; repeated names allowed) and
    /// the `X-Twilio-Signature` header.
    ///
    /// # Errors
    ///
    /// [`Error::WebhookSignature`] if the signature does not match.
    pub fn verify_form(
        &self,
        url: &str,
        params: &[(&str, &str)],
        header: &str,
    ) -> Result<(), Error> {
        self.verify_url_variants(url, params, header)
    }

    /// Checks the signature of a JSON request: `url` (with its
    /// `bodySHA256` query parameter), the raw `body` and the header.
    ///
    /// # Errors
    ///
    /// [`Error::WebhookSignature`] if the signature does not match;
    /// [`Error::WebhookBody`] if the URL has no `bodySHA256` or `body` does
    /// not hash to it.
    pub fn verify_json(&self, url: &str, body: &[u8], header: &str) -> Result<(), Error> {
        self.verify_url_variants(url, &[], header)?;
        let claimed = query_param(url, "bodySHA256").ok_or(Error::WebhookBody)?;
        let actual = body_sha256(body);
        if bool::from(actual.as_bytes().ct_eq(claimed.as_bytes())) {
            Ok(())
        } else {
            Err(Error::WebhookBody)
        }
    }

    /// The signature the provider would send for a form post to `url` with
    /// `params` (for tests, and for services that forward webhooks).
    pub fn sign_form(&self, url: &str, params: &[(&str, &str)]) -> String {
        let mut mac = self.mac();
        mac.update(url.as_bytes());
        for (name, value) in signed_pairs(params) {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
        BASE64.encode(&mac.finalize().into_bytes())
    }

    /// The URL and signature the provider would send for a JSON `body`
    /// posted to `url`: `url` with `bodySHA256=<hex>` appended, and its
    /// signature.
    pub fn sign_json(&self, url: &str, body: &[u8]) -> (String, String) {
        let separator = if url.contains('?') { '&' } else { '?' };
        let signed_url = format!("{url}{separator}bodySHA256={}", body_sha256(body));
        let signature = self.sign_form(&signed_url, &[]);
        (signed_url, signature)
    }

    fn mac(&self) -> Hmac<Sha1> {
        #[allow(clippy::expect_used)]
        <Hmac<Sha1> as KeyInit>::new_from_slice(self.auth_token.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length")
    }

    fn verify_url_variants(
        &self,
        url: &str,
        params: &[(&str, &str)],
        header: &str,
    ) -> Result<(), Error> {
        let candidates = [url.to_string(), remove_port(url), add_port(url)];
        // Every candidate is computed and compared, whatever matched first.
        let mut matched = subtle::Choice::from(0);
        for candidate in &candidates {
            let expected = self.sign_form(candidate, params);
            matched |= expected.as_bytes().ct_eq(header.as_bytes());
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Error::WebhookSignature)
        }
    }
}

impl fmt::Debug for TwilioSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSignature")
            .field("auth_token", &self.auth_token)
            .finish()
    }
}

/// The hex SHA-256 of a request body, as carried in `bodySHA256`.
pub fn body_sha256(body: &[u8]) -> String {
    crate::hex::encode(Sha256::digest(body))
}

/// Parameters in signing order: by name (in UTF-16 code units, as the
/// provider's JavaScript library sorts), and for a repeated name each
/// distinct value, sorted the same way.
fn signed_pairs<'a>(params: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut pairs: Vec<(&str, &str)> = params.to_vec();
    pairs.sort_by(|a, b| {
        a.0.encode_utf16()
            .cmp(b.0.encode_utf16())
            .then_with(|| a.1.encode_utf16().cmp(b.1.encode_utf16()))
    });
    pairs.dedup();
    pairs
}

/// The first value of query parameter `name` in `url`, percent-decoded.
fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        (n == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// `scheme://` and the authority of `url`, split as the provider's library
/// does: (scheme with `://`, user info with `@`, host, `:port` or "", rest).
fn split_url(url: &str) -> Option<(&str, &str, &str, &str, &str)> {
    let scheme_end = url.find("://")?;
    let scheme = url.get(..scheme_end)?;
    let mut chars = scheme.chars();
    if !chars.next()?.is_ascii_alphabetic()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
    {
        return None;
    }
    let after = url.get(scheme_end + 3..)?;
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(authority_end);
    let user_end = authority.rfind('@').map_or(0, |i| i + 1);
    let (user, host_port) = authority.split_at(user_end);
    let search_from = host_port.rfind(']').map_or(0, |i| i + 1);
    let (host, port) = match host_port.get(search_from..)?.find(':') {
        Some(i) => host_port.split_at(search_from + i),
        None => (host_port, ""),
    };
    Some((url.get(..scheme_end + 3)?, user, host, port, rest))
}

fn remove_port(url: &str) -> String {
    match split_url(url) {
        Some((scheme, user, host, _, rest)) => format!("{scheme}{user}{host}{rest}"),
        None => url.to_string(),
    }
}

fn add_port(url: &str) -> String {
    match split_url(url) {
        Some((scheme, user, host, "", rest)) => {
            let port = if scheme.eq_ignore_ascii_case("https://") {
                ":443"
            } else {
                ":80"
            };
            format!("{scheme}{user}{host}{port}{rest}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_added_and_removed_like_the_official_library() {
        assert_eq!(
            add_port("https://a.example/x?y=1"),
            "https://a.example:443/x?y=1"
        );
        assert_eq!(add_port("http://a.example"), "http://a.example:80");
        assert_eq!(
            add_port("https://a.example:8443/x"),
            "https://a.example:8443/x"
        );
        assert_eq!(
            remove_port("https://u:p@a.example:8443/x"),
            "https://u:p@a.example/x"
        );
        assert_eq!(remove_port("https://[::1]:8443/x"), "https://[::1]/x");
        assert_eq!(add_port("https://[::1]/x"), "https://[::1]:443/x");
        assert_eq!(add_port("not a url"), "not a url");
    }
}
