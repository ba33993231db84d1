//! The one hex spelling this crate reads and writes.
//!
//! Output is lowercase. Input is accepted in either case, with exactly two
//! characters per byte and nothing else: unlike
//! `const_hex::decode_to_slice`, no `0x` prefix, so every textual form this
//! crate parses (keys, challenge ids, envelopes) has exactly one spelling
//! per value up to case.

use core::fmt;

/// Decodes exactly `2 * out.len()` hex characters (either case) into `out`.
pub(crate) fn decode_exact(text: &str, out: &mut [u8]) -> Result<(), ()> {
    if text.len() != 2 * out.len() {
        return Err(());
    }
    const_hex::decode_to_slice(text, out).map_err(|_| ())
}

/// Decodes hex text of any even length into a new buffer.
pub(crate) fn decode(text: &str) -> Result<Vec<u8>, ()> {
    if text.len() % 2 != 0 {
        return Err(());
    }
    let mut bytes = vec![0u8; text.len() / 2];
    decode_exact(text, &mut bytes)?;
    Ok(bytes)
}

/// Lowercase hex of `bytes`.
pub(crate) fn encode(bytes: impl AsRef<[u8]>) -> String {
    const_hex::encode(bytes)
}

/// `prefix` followed by the lowercase hex of `bytes`, in one allocation:
/// the store keys (`s:` and a tag's hex, ...).
pub(crate) fn prefixed(prefix: &str, bytes: &[u8]) -> String {
    let mut out = vec![0u8; prefix.len() + 2 * bytes.len()];
    out[..prefix.len()].copy_from_slice(prefix.as_bytes());
    // The output is exactly twice the input and hex digits are ASCII, so
    // neither step fails; if one did, the slower spelling gives the same
    // key (never a shared fallback).
    if const_hex::encode_to_slice(bytes, &mut out[prefix.len()..]).is_ok() {
        if let Ok(key) = String::from_utf8(out) {
            return key;
        }
    }
    format!("{prefix}{}", encode(bytes))
}

/// Writes `bytes` of any length as lowercase hex, through a stack buffer
/// (no allocation, whatever the length).
pub(crate) fn write_all(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 512];
    for chunk in bytes.chunks(buf.len() / 2) {
        let text = &mut buf[..2 * chunk.len()];
        const_hex::encode_to_slice(chunk, text).map_err(|_| fmt::Error)?;
        f.write_str(core::str::from_utf8(text).map_err(|_| fmt::Error)?)?;
    }
    Ok(())
}

/// Writes `bytes` as lowercase hex without allocating (`H` = 2 * `N`).
pub(crate) fn write<const N: usize, const H: usize>(
    f: &mut fmt::Formatter<'_>,
    bytes: &[u8; N],
) -> fmt::Result {
    let mut buf = [0u8; H];
    const_hex::encode_to_slice(bytes, &mut buf).map_err(|_| fmt::Error)?;
    f.write_str(core::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixed_is_the_prefix_then_the_hex() {
        assert_eq!(prefixed("s:", &[0x00, 0xab, 0xff]), "s:00abff");
        assert_eq!(prefixed("", &[0x10]), "10");
        assert_eq!(prefixed("pinseal:", &[]), "pinseal:");
    }

    #[test]
    fn one_spelling_per_value_up_to_case() {
        let mut out = [0u8; 2];
        assert_eq!(decode_exact("aBcD", &mut out), Ok(()));
        assert_eq!(out, [0xab, 0xcd]);
        for bad in ["0xab", "abc", "abcde", "zzzz", " abc"] {
            assert!(decode_exact(bad, &mut out).is_err(), "{bad:?}");
        }
        assert_eq!(decode("00ff"), Ok(vec![0, 255]));
        assert!(decode("0").is_err());
        assert_eq!(encode([0xab, 0xcd]), "abcd");
    }

    #[test]
    fn write_all_matches_encode_across_chunk_edges() {
        struct Hex<'a>(&'a [u8]);
        impl fmt::Display for Hex<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_all(f, self.0)
            }
        }
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 37 % 256) as u8).collect();
        for len in [0, 1, 255, 256, 257, 512, 1000] {
            assert_eq!(
                Hex(&bytes[..len]).to_string(),
                encode(&bytes[..len]),
                "{len}"
            );
        }
    }
}
