//! Enrollment in authenticator apps: the `otpauth://` Key URI Format and,
//! with the `qr` feature, its QR code.

use data_encoding::BASE32_NOPAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use std::time::Duration;

use super::{Algorithm, MAX_URI_SECRET_LEN, MIN_SECRET_LEN, Totp};
use crate::secret::{ExposeSecret, ExposeSecretMut};
use crate::{Error, Secret};

/// Everything but RFC 3986's unreserved characters is percent-encoded.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Longest time step a URI may carry: one day.
const MAX_PERIOD: u64 = 86_400;

impl Algorithm {
    /// The name the Key URI Format uses: `SHA1`, `SHA256` or `SHA512`.
    pub fn uri_name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

impl Totp {
    /// The secret in base32 (RFC 4648, upper case, no padding), as
    /// authenticator apps take it when typed in by hand.
    pub fn secret_base32(&self) -> Secret<String> {
        Secret::new(BASE32_NOPAD.encode(self.secret().expose_secret()))
    }

    /// The enrollment URI in the Key URI Format that authenticator apps
    /// read from a QR code:
    ///
    /// ```text
    /// otpauth://totp/ISSUER:ACCOUNT?secret=BASE32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30
    /// ```
    ///
    /// `issuer` and `account` are percent-encoded (a `:` inside either is
    /// encoded too, so the label splits unambiguously).
    ///
    /// # Security
    ///
    /// The URI contains the secret: it is returned as a [`Secret`]. Show it
    /// to the user once (as a QR code) and never log it.
    ///
    /// # Example
    ///
    /// ```
    /// use pinseal::ExposeSecret;
    /// use pinseal::otp::totp::Totp;
    ///
    /// let totp = Totp::random();
    /// let uri = totp.to_uri("ACME Co", "alice@example.com");
    /// assert!(uri.expose_secret().starts_with("otpauth://totp/ACME%20Co:alice%40example.com?secret="));
    /// let back = Totp::from_uri(uri.expose_secret())?;
    /// assert!(back.secret() == totp.secret());
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn to_uri(&self, issuer: &str, account: &str) -> Secret<String> {
        let issuer = utf8_percent_encode(issuer, ENCODE).to_string();
        let account = utf8_percent_encode(account, ENCODE).to_string();
        let secret = self.secret_base32();
        let tail = format!(
            "&issuer={issuer}&algorithm={}&digits={}&period={}",
            self.algorithm().uri_name(),
            self.digits(),
            self.step().as_secs()
        );
        let parts = [
            "otpauth://totp/",
            &issuer,
            ":",
            &account,
            "?secret=",
            secret.expose_secret(),
            &tail,
        ];
        // Allocated once at its final size: no reallocation leaves a copy
        // of the secret behind.
        let mut uri = Secret::new(String::with_capacity(parts.iter().map(|p| p.len()).sum()));
        for part in parts {
            uri.expose_secret_mut().push_str(part);
        }
        uri
    }

    /// Reads an enrollment URI in the Key URI Format (as written by
    /// [`Totp::to_uri`], pyotp's `provisioning_uri` and most enrollment
    /// servers).
    ///
    /// `secret` is required (base32, either case, padding optional);
    /// `algorithm` (`SHA1`, `SHA256`, `SHA512`), `digits` (6 to 8) and
    /// `period` (1 to 86 400 s) default to SHA-1, 6 and 30 as the format
    /// says; other parameters (`issuer`, `image`, ...) and the label are
    /// ignored, and only the four named ones may not repeat.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOtpUri`] if the text is not an `otpauth://totp/` URI,
    /// a parameter is repeated, malformed or out of range, the secret is
    /// shorter than 16 bytes (RFC 4226's minimum; some generators still make
    /// 10-byte secrets, which this crate refuses) or longer than
    /// [`MAX_URI_SECRET_LEN`] (64 bytes), or the URI is longer than 2 048
    /// characters. The error never contains the URI, which holds the
    /// secret.
    pub fn from_uri(uri: &str) -> Result<Totp, Error> {
        if uri.len() > MAX_URI_LEN {
            return Err(Error::InvalidOtpUri);
        }
        let rest = strip_prefix_ignore_case(uri, "otpauth://totp/").ok_or(Error::InvalidOtpUri)?;
        let query = rest.split_once('?').map_or("", |(_label, q)| q);
        let (mut secret, mut hash, mut digits, mut period) = (None, None, None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = Secret::new(decode_component(value)?);
            let slot_taken = match name {
                "secret" => secret
                    .replace(decode_secret(value.expose_secret())?)
                    .is_some(),
                "algorithm" => hash.replace(parse_hash(value.expose_secret())?).is_some(),
                "digits" => digits
                    .replace(parse_number(value.expose_secret())?)
                    .is_some(),
                "period" => period
                    .replace(parse_number(value.expose_secret())?)
                    .is_some(),
                _ => false,
            };
            if slot_taken {
                return Err(Error::InvalidOtpUri);
            }
        }
        let secret = secret.ok_or(Error::InvalidOtpUri)?;
        let digits = u8::try_from(digits.unwrap_or(6)).map_err(|_| Error::InvalidOtpUri)?;
        let period = period.unwrap_or(30);
        if secret.expose_secret().len() < MIN_SECRET_LEN || !(1..=MAX_PERIOD).contains(&period) {
            return Err(Error::InvalidOtpUri);
        }
        Totp::new(
            secret,
            Duration::from_secs(period),
            digits,
            hash.unwrap_or(Algorithm::Sha1),
        )
        .map_err(|_| Error::InvalidOtpUri)
    }

    /// The enrollment URI of [`Totp::to_uri`] as a QR code, an SVG document
    /// ready to embed in a page (feature `qr`, the `qrcode` crate).
    ///
    /// # Security
    ///
    /// The picture encodes the secret: serve it once, over TLS, with
    /// `Cache-Control: no-store`. The `qrcode` crate's working buffers are
    /// freed without being wiped.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOtpUri`] if the URI does not fit in a QR code
    /// (issuer and account names of several hundred characters).
    #[cfg(feature = "qr")]
    #[cfg_attr(docsrs, doc(cfg(feature = "qr")))]
    pub fn to_qr_svg(&self, issuer: &str, account: &str) -> Result<Secret<String>, Error> {
        let uri = self.to_uri(issuer, account);
        let code = qrcode::QrCode::new(uri.expose_secret().as_bytes())
            .map_err(|_| Error::InvalidOtpUri)?;
        Ok(Secret::new(
            code.render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(240, 240)
                .build(),
        ))
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

/// Percent-decodes a query value (`+` is a space, as in forms). The
/// copies are made at their final size and wiped: the value may be the
/// secret.
fn decode_component(value: &str) -> Result<String, Error> {
    let mut spaced = Secret::new(String::with_capacity(value.len()));
    for c in value.chars() {
        spaced
            .expose_secret_mut()
            .push(if c == '+' { ' ' } else { c });
    }
    let decoded = percent_decode_str(spaced.expose_secret())
        .decode_utf8()
        .map_err(|_| Error::InvalidOtpUri)?;
    let mut out = String::with_capacity(decoded.len());
    out.push_str(&decoded);
    if let std::borrow::Cow::Owned(mut owned) = decoded {
        zeroize::Zeroize::zeroize(&mut owned);
    }
    Ok(out)
}

/// The longest enrollment URI read.
const MAX_URI_LEN: usize = 2048;

/// Base32 in either case, with or without `=` padding, of at most
/// [`MAX_URI_SECRET_LEN`] bytes (checked before decoding).
fn decode_secret(value: &str) -> Result<Secret<Vec<u8>>, Error> {
    if value.trim_end_matches('=').len() > (MAX_URI_SECRET_LEN * 8).div_ceil(5) {
        return Err(Error::InvalidOtpUri);
    }
    let mut upper = Secret::new(value.trim_end_matches('=').to_ascii_uppercase());
    let decoded = BASE32_NOPAD
        .decode(upper.expose_secret_mut().as_bytes())
        .map_err(|_| Error::InvalidOtpUri)?;
    Ok(Secret::new(decoded))
}

fn parse_hash(value: &str) -> Result<Algorithm, Error> {
    match value.to_ascii_uppercase().as_str() {
        "SHA1" => Ok(Algorithm::Sha1),
        "SHA256" => Ok(Algorithm::Sha256),
        "SHA512" => Ok(Algorithm::Sha512),
        _ => Err(Error::InvalidOtpUri),
    }
}

fn parse_number(value: &str) -> Result<u64, Error> {
    if value.is_empty() || value.len() > 6 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidOtpUri);
    }
    value.parse().map_err(|_| Error::InvalidOtpUri)
}
