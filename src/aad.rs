//! Associated data built from named fields, without ambiguity.

use core::fmt;

/// Associated data made of named fields, encoded so that two different
/// field lists never produce the same bytes.
///
/// # Use case
///
/// Bind an envelope to its context (the call, the field, the tenant) when
/// sealing with [`Sealer`](crate::Sealer) or [`Keyring`](crate::Keyring).
/// Associated data glued together by hand, such as
/// `format!("call={call};field={field}")`, is ambiguous as soon as a value
/// can contain the separator: the call id `1;field=pin` with the field
/// `last4` gives the same string as the call id `1` with the field
/// `pin;field=last4`. `Aad` cannot be confused that way.
///
/// # About
///
/// The bytes are the fields in the order they were added, each written as
///
/// ```text
/// len(name) (8 bytes, big-endian) || name (UTF-8) || len(value) (8 bytes, big-endian) || value
/// ```
///
/// with no header and nothing between fields, so `Aad::new()` alone is the
/// empty string. Every field is length-prefixed, so the encoding is
/// injective: different lists of `(name, value)` pairs always give
/// different bytes. The order is part of the data: open with the fields
/// added in the same order as when sealing. Any language can build the
/// same bytes; in Node.js:
///
/// ```text
/// const u64 = (n) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; };
/// const field = (name, value) => { const n = Buffer.from(name), v = Buffer.from(value);
///   return Buffer.concat([u64(n.length), n, u64(v.length), v]); };
/// const aad = Buffer.concat([field('call', 'CA-1001'), field('field', 'pin')]);
/// ```
///
/// and in Python, `b"".join(len(x).to_bytes(8, "big") + x for n, v in
/// fields for x in (n.encode(), v))`.
///
/// # Security
///
/// Associated data is authenticated, not encrypted, and not stored in the
/// envelope: whoever opens must rebuild it. `Debug` shows the field names
/// and the lengths of their values, never the values, so a call id or a
/// phone number used as context does not reach a log through it.
///
/// # Example
///
/// ```
/// use pinseal::{Aad, ExposeSecret, Key, Seal, Sealer};
///
/// let sealer = Sealer::new(&Key::generate());
/// let aad = Aad::new().field("call", "CA-1001").field("field", "pin");
/// let envelope = sealer.seal(b"1234", aad.as_bytes());
/// assert_eq!(sealer.open(&envelope, aad.as_bytes())?.expose_secret(), b"1234");
///
/// // Another call, or the same values split differently, do not open it.
/// let other = Aad::new().field("call", "CA-1001;field=pin").field("field", "");
/// assert!(sealer.open(&envelope, other.as_bytes()).is_err());
/// # Ok::<(), pinseal::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Aad {
    bytes: Vec<u8>,
    /// Offsets of each field's start in `bytes`, for `Debug`.
    fields: Vec<usize>,
}

impl Aad {
    /// Associated data with no field (the empty byte string).
    #[must_use]
    pub fn new() -> Aad {
        Aad::default()
    }

    /// Appends the field `name` with `value` (text or bytes).
    #[must_use]
    pub fn field(mut self, name: &str, value: impl AsRef<[u8]>) -> Aad {
        self.push(name, value.as_ref());
        self
    }

    /// Appends the field `name` with `value`, in place.
    pub fn push(&mut self, name: &str, value: &[u8]) {
        self.fields.push(self.bytes.len());
        self.bytes.reserve(16 + name.len() + value.len());
        for part in [name.as_bytes(), value] {
            self.bytes
                .extend_from_slice(&(part.len() as u64).to_be_bytes());
            self.bytes.extend_from_slice(part);
        }
    }

    /// The encoded bytes, to pass as `aad` to seal and open.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl AsRef<[u8]> for Aad {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for Aad {
    /// Field names and value lengths only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for &start in &self.fields {
            if let Some((name, value_len)) = self.field_at(start) {
                list.entry(&format_args!("{name:?}: {value_len} bytes"));
            }
        }
        list.finish()
    }
}

impl Aad {
    /// The name and value length of the field that starts at `start`.
    fn field_at(&self, start: usize) -> Option<(&str, u64)> {
        let rest = self.bytes.get(start..)?;
        let (len, rest) = rest.split_first_chunk::<8>()?;
        let name_len = usize::try_from(u64::from_be_bytes(*len)).ok()?;
        let name = core::str::from_utf8(rest.get(..name_len)?).ok()?;
        let (value_len, _) = rest.get(name_len..)?.split_first_chunk::<8>()?;
        Some((name, u64::from_be_bytes(*value_len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_as_documented() {
        let aad = Aad::new().field("ab", "xyz").field("", [0u8; 0]);
        let mut expected = Vec::new();
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.extend_from_slice(b"ab");
        expected.extend_from_slice(&3u64.to_be_bytes());
        expected.extend_from_slice(b"xyz");
        expected.extend_from_slice(&[0; 16]);
        assert_eq!(aad.as_bytes(), expected);
        assert_eq!(Aad::new().as_bytes(), b"");
    }

    #[test]
    fn debug_shows_names_and_lengths_only() {
        let aad = Aad::new()
            .field("caller", "+15551234567")
            .field("field", "pin");
        let shown = format!("{aad:?}");
        assert_eq!(shown, r#"["caller": 12 bytes, "field": 3 bytes]"#);
    }
}
