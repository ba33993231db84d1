//! Checking the signature a telephony provider puts on its webhooks.

use core::fmt;

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::ExposeSecret;
use crate::{Error, Secret};

/// The header that carries a webhook's signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The header that names the shared key and algorithm of a webhook signed
/// with a shared key: `key=<key id>,algorithm=HMAC_SHA256`.
pub const SIGNATURE_SETTINGS_HEADER: &str = "X-Twilio-Webhooks-Signature-Settings";

/// A webhook signature algorithm, as named in the settings header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// `HMAC_SHA1`: the Auth Token scheme, and the default.
    HmacSha1,
    /// `HMAC_SHA256`: shared keys.
    HmacSha256,
}

impl SignatureAlgorithm {
    /// The name in the settings header: `HMAC_SHA1` or `HMAC_SHA256`.
    pub fn name(self) -> &'static str {
        match self {
            SignatureAlgorithm::HmacSha1 => "HMAC_SHA1",
            SignatureAlgorithm::HmacSha256 => "HMAC_SHA256",
        }
    }

    /// The algorithm a settings-header name denotes (compared without
    /// regard to case, as the official library does), or `None`.
    fn from_name(name: &str) -> Option<SignatureAlgorithm> {
        if name.eq_ignore_ascii_case("HMAC_SHA1") {
            Some(SignatureAlgorithm::HmacSha1)
        } else if name.eq_ignore_ascii_case("HMAC_SHA256") {
            Some(SignatureAlgorithm::HmacSha256)
        } else {
            None
        }
    }
}

/// Verifies (and makes) `X-Twilio-Signature` webhook signatures, under the
/// account's Auth Tokens (a primary and, while a rotation propagates, a
/// secondary) and under webhook shared keys.
///
/// # Use case
///
/// The phone flow starts at a webhook: the provider posts the caller's
/// keypad digits to the service. Without a signature check anyone who
/// learns the URL can post forged digits. Check every request before
/// reading a parameter, and answer `403` when the check fails. With the
/// `axum` feature, `web::TwilioWebhook` does all of it, and refuses
/// replays.
///
/// # About
///
/// Two schemes, told apart by the [`SIGNATURE_SETTINGS_HEADER`]:
///
/// - **Auth Token** (no settings header): HMAC-SHA1 keyed by the account's
///   Auth Token. Every token given ([`TwilioSignature::new`],
///   [`TwilioSignature::with_secondary_token`]) is tried, so a service keeps
///   accepting webhooks while a rotated token propagates (60 s by default,
///   up to 300 s); remove the old token once the rotation is complete.
/// - **Shared key** (`key=<id>,algorithm=<HMAC_SHA1|HMAC_SHA256>`): the MAC
///   is keyed by the shared key's secret, found by its id among those given
///   ([`TwilioSignature::with_shared_key`]; every shared key when the
///   header names none). A missing `algorithm=` means `HMAC_SHA1`; any
///   other name, or a key id not given, is [`Error::WebhookAlgorithm`].
///
/// What is signed, in both schemes, is the base64 of the MAC of:
///
/// - **Form posts** (`application/x-www-form-urlencoded`): the full URL
///   (scheme, host, path and query string, as the provider called it)
///   followed by every POST parameter sorted by name, each name immediately
///   followed by its value. A name sent several times contributes each
///   distinct value, sorted.
/// - **JSON bodies**: the full URL only; the URL carries a `bodySHA256`
///   query parameter holding the hex SHA-256 of the raw body, which is
///   checked too. [`TwilioSignature::verify_form`] refuses such a URL
///   ([`Error::WebhookBody`]): its signature covers no parameter, so it
///   proves nothing about a body that is not hashed.
///
/// A URL's fragment (`#…`, where the provider reads connection overrides)
/// is never sent nor signed: it is removed before checking. As the official
/// helper libraries do, the URL is tried as received, without its port and
/// with the scheme's default port (`:443`/`:80`), since proxies add or drop
/// it; a signature matching any of them is accepted. The libraries' further
/// retries with a WHATWG-normalized URL are not made: pass the URL exactly
/// as the provider called it.
///
/// # Errors
///
/// [`Error::WebhookSignature`] when no candidate matches (a forged or
/// altered request, a wrong URL, a wrong token); [`Error::WebhookBody`]
/// for a JSON request whose body does not hash to its `bodySHA256` (or
/// whose URL has none), and for a form check of a URL that carries one;
/// [`Error::WebhookAlgorithm`] for a scheme or key this checker does not
/// know. None echoes a token, the URL or the parameters.
///
/// # Security
///
/// - Every candidate (each secret, each URL spelling) is computed and
///   compared in constant time (`subtle`), whichever matched.
/// - Tokens and shared keys are kept in [`Secret`] and wiped on drop;
///   `Debug` shows the shared keys' ids only.
/// - A signature proves origin, not freshness: a captured request can be
///   replayed. Admit each delivery once (`otp::AcceptOnce`, or the axum
///   extractor, which does it) and bind what the request carries to its
///   call (the `CallSid`).
///
/// # Example
///
/// ```
/// use pinseal::Secret;
/// use pinseal::webhook::TwilioSignature;
///
/// // The example from the provider's documentation, during a rotation.
/// let check = TwilioSignature::new(Secret::new("new-token".to_string()))
///     .with_secondary_token(Secret::new("12345".to_string()));
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
    /// Auth Tokens, the primary first.
    tokens: Vec<Secret<String>>,
    /// Shared keys by id.
    shared: Vec<(String, Secret<String>)>,
}

impl TwilioSignature {
    /// A checker for the account whose (primary) Auth Token is
    /// `auth_token`.
    pub fn new(auth_token: Secret<String>) -> TwilioSignature {
        TwilioSignature {
            tokens: vec![auth_token],
            shared: Vec::new(),
        }
    }

    /// Also accepts signatures under `token`: the other Auth Token while a
    /// rotation propagates.
    #[must_use]
    pub fn with_secondary_token(mut self, token: Secret<String>) -> TwilioSignature {
        self.tokens.push(token);
        self
    }

    /// Also accepts webhooks signed with the shared key `key_id` (its id
    /// is not secret; `secret` is), named in the settings header.
    #[must_use]
    pub fn with_shared_key(mut self, key_id: &str, secret: Secret<String>) -> TwilioSignature {
        self.shared.push((key_id.to_string(), secret));
        self
    }

    /// Checks the signature of a form post signed with an Auth Token (no
    /// settings header): `url` as the provider called it, every POST
    /// parameter (in any order; repeated names allowed) and the
    /// `X-Twilio-Signature` header.
    ///
    /// # Errors
    ///
    /// [`Error::WebhookSignature`] if the signature does not match;
    /// [`Error::WebhookBody`] if `url` carries `bodySHA256` (a JSON
    /// webhook: use [`TwilioSignature::verify_json`]).
    pub fn verify_form<K: AsRef<str>, V: AsRef<str>>(
        &self,
        url: &str,
        params: &[(K, V)],
        signature: &str,
    ) -> Result<(), Error> {
        self.verify_form_with_settings(url, params, signature, None)
    }

    /// [`TwilioSignature::verify_form`] for any scheme: `settings` is the
    /// [`SIGNATURE_SETTINGS_HEADER`], if the request had one.
    ///
    /// # Errors
    ///
    /// As [`TwilioSignature::verify_form`]; [`Error::WebhookAlgorithm`] for
    /// an unknown algorithm or key id.
    pub fn verify_form_with_settings<K: AsRef<str>, V: AsRef<str>>(
        &self,
        url: &str,
        params: &[(K, V)],
        signature: &str,
        settings: Option<&str>,
    ) -> Result<(), Error> {
        let url = without_fragment(url);
        if query_param(url, "bodySHA256").is_some() {
            return Err(Error::WebhookBody);
        }
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        self.verify_url_variants(url, &pairs, signature, settings)
    }

    /// Checks the signature of a JSON request signed with an Auth Token:
    /// `url` (with its `bodySHA256` query parameter), the raw `body` and the
    /// header.
    ///
    /// # Errors
    ///
    /// [`Error::WebhookSignature`] if the signature does not match;
    /// [`Error::WebhookBody`] if the URL has no `bodySHA256` or `body` does
    /// not hash to it.
    pub fn verify_json(&self, url: &str, body: &[u8], signature: &str) -> Result<(), Error> {
        self.verify_json_with_settings(url, body, signature, None)
    }

    /// [`TwilioSignature::verify_json`] for any scheme: `settings` is the
    /// [`SIGNATURE_SETTINGS_HEADER`], if the request had one.
    ///
    /// # Errors
    ///
    /// As [`TwilioSignature::verify_json`]; [`Error::WebhookAlgorithm`] for
    /// an unknown algorithm or key id.
    pub fn verify_json_with_settings(
        &self,
        url: &str,
        body: &[u8],
        signature: &str,
        settings: Option<&str>,
    ) -> Result<(), Error> {
        let url = without_fragment(url);
        self.verify_url_variants(url, &[], signature, settings)?;
        let claimed = query_param(url, "bodySHA256").ok_or(Error::WebhookBody)?;
        let actual = body_sha256(body);
        if bool::from(actual.as_bytes().ct_eq(claimed.as_bytes())) {
            Ok(())
        } else {
            Err(Error::WebhookBody)
        }
    }

    /// The signature the provider would send for a form post to `url` with
    /// `params` under the primary Auth Token (for tests, and for services
    /// that forward webhooks).
    pub fn sign_form<K: AsRef<str>, V: AsRef<str>>(&self, url: &str, params: &[(K, V)]) -> String {
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        let token = self
            .tokens
            .first()
            .map_or("", |t| t.expose_secret().as_str());
        sign(
            token,
            SignatureAlgorithm::HmacSha1,
            without_fragment(url),
            &pairs,
        )
    }

    /// The settings header and signature the provider would send for a form
    /// post to `url` signed with the shared key `key_id` under `algorithm`.
    ///
    /// # Errors
    ///
    /// [`Error::WebhookAlgorithm`] if no shared key `key_id` was given.
    pub fn sign_form_shared<K: AsRef<str>, V: AsRef<str>>(
        &self,
        key_id: &str,
        algorithm: SignatureAlgorithm,
        url: &str,
        params: &[(K, V)],
    ) -> Result<(String, String), Error> {
        let (_, secret) = self
            .shared
            .iter()
            .find(|(id, _)| id == key_id)
            .ok_or(Error::WebhookAlgorithm)?;
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        let settings = format!("key={key_id},algorithm={}", algorithm.name());
        let signature = sign(
            secret.expose_secret(),
            algorithm,
            without_fragment(url),
            &pairs,
        );
        Ok((settings, signature))
    }

    /// The URL and signature the provider would send for a JSON `body`
    /// posted to `url`: `url` with `bodySHA256=<hex>` appended, and its
    /// signature under the primary Auth Token.
    pub fn sign_json(&self, url: &str, body: &[u8]) -> (String, String) {
        let url = without_fragment(url);
        let separator = if url.contains('?') { '&' } else { '?' };
        let signed_url = format!("{url}{separator}bodySHA256={}", body_sha256(body));
        let signature = self.sign_form::<&str, &str>(&signed_url, &[]);
        (signed_url, signature)
    }

    /// The secrets and algorithm `settings` selects.
    fn candidates(
        &self,
        settings: Option<&str>,
    ) -> Result<(Vec<&Secret<String>>, SignatureAlgorithm), Error> {
        let settings = settings.map(str::trim).filter(|s| !s.is_empty());
        let Some(settings) = settings else {
            return Ok((self.tokens.iter().collect(), SignatureAlgorithm::HmacSha1));
        };
        let mut key_id = None;
        let mut algorithm = SignatureAlgorithm::HmacSha1;
        for part in settings.split(',') {
            let Some((name, value)) = part.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match name.trim() {
                "key" if !value.is_empty() => key_id = Some(value),
                "algorithm" if !value.is_empty() => {
                    algorithm =
                        SignatureAlgorithm::from_name(value).ok_or(Error::WebhookAlgorithm)?;
                }
                _ => {}
            }
        }
        let secrets: Vec<&Secret<String>> = self
            .shared
            .iter()
            .filter(|(id, _)| key_id.is_none_or(|k| k == id))
            .map(|(_, secret)| secret)
            .collect();
        if secrets.is_empty() {
            return Err(Error::WebhookAlgorithm);
        }
        Ok((secrets, algorithm))
    }

    fn verify_url_variants(
        &self,
        url: &str,
        params: &[(&str, &str)],
        signature: &str,
        settings: Option<&str>,
    ) -> Result<(), Error> {
        let (secrets, algorithm) = self.candidates(settings)?;
        let urls = [url.to_string(), remove_port(url), add_port(url)];
        // Every candidate is computed and compared, whatever matched first.
        let mut matched = subtle::Choice::from(0);
        for secret in &secrets {
            for candidate in &urls {
                let expected = sign(secret.expose_secret(), algorithm, candidate, params);
                matched |= expected.as_bytes().ct_eq(signature.as_bytes());
            }
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err(Error::WebhookSignature)
        }
    }
}

impl fmt::Debug for TwilioSignature {
    /// The tokens as `*REDACTED*`, the shared keys by id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct SharedKeys<'a>(&'a [(String, Secret<String>)]);
        impl fmt::Debug for SharedKeys<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(id, secret)| (id, secret)))
                    .finish()
            }
        }
        f.debug_struct("TwilioSignature")
            .field("auth_tokens", &self.tokens)
            .field("shared_keys", &SharedKeys(&self.shared))
            .finish()
    }
}

/// The base64 MAC of `url` and the sorted `params` under `secret`.
fn sign(secret: &str, algorithm: SignatureAlgorithm, url: &str, params: &[(&str, &str)]) -> String {
    fn run<M: Mac + KeyInit>(secret: &str, url: &str, params: &[(&str, &str)]) -> String {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        #[allow(clippy::expect_used)]
        let mut mac = <M as KeyInit>::new_from_slice(secret.as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(url.as_bytes());
        for (name, value) in signed_pairs(params) {
            mac.update(name.as_bytes());
            mac.update(value.as_bytes());
        }
        BASE64.encode(&mac.finalize().into_bytes())
    }
    match algorithm {
        SignatureAlgorithm::HmacSha1 => run::<Hmac<Sha1>>(secret, url, params),
        SignatureAlgorithm::HmacSha256 => run::<Hmac<Sha256>>(secret, url, params),
    }
}

/// Whether `url` carries a `bodySHA256` query parameter: a JSON webhook.
#[cfg(feature = "axum")]
pub(crate) fn carries_body_hash(url: &str) -> bool {
    query_param(url, "bodySHA256").is_some()
}

/// `url` without its fragment.
fn without_fragment(url: &str) -> &str {
    url.split_once('#').map_or(url, |(before, _)| before)
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
    let query = without_fragment(url).split_once('?')?.1;
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
