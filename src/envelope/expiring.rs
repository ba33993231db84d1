//! The expiring envelope's layout: the deadline in front, bound into the
//! associated data.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{EXPIRY_LEN, Envelope, OVERHEAD, Seal};
use crate::Error;
use crate::aad::Aad;
use crate::secret::Secret;

/// `t` in whole Unix seconds, rounded down; 0 before 1970.
pub(super) fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The associated data the inner envelope is sealed with.
fn inner_aad(expires_at: u64, aad: &[u8]) -> Aad {
    Aad::new()
        .field("pinseal/expires", expires_at.to_be_bytes())
        .field("aad", aad)
}

/// `expires_at || envelope`, the envelope sealed by `sealer` under the
/// expiry-bound associated data.
pub(super) fn seal<S: Seal + ?Sized>(
    sealer: &S,
    plaintext: &[u8],
    aad: &[u8],
    expires_at: u64,
) -> Envelope {
    let mut out = vec![0u8; EXPIRY_LEN + plaintext.len() + OVERHEAD];
    let (expiry, inner) = out.split_at_mut(EXPIRY_LEN);
    expiry.copy_from_slice(&expires_at.to_be_bytes());
    if sealer
        .seal_into(plaintext, inner_aad(expires_at, aad).as_bytes(), inner)
        .is_err()
    {
        // The buffer has the exact length: only the GCM limit remains.
        panic!("pinseal: plaintext exceeds the AES-GCM limit of 2^36 - 32 bytes");
    }
    Envelope::from(out)
}

/// The expiry and the inner envelope of an expiring envelope.
pub(super) fn split(envelope: &[u8]) -> Result<(u64, &[u8]), Error> {
    let (expiry, inner) = envelope
        .split_first_chunk::<EXPIRY_LEN>()
        .ok_or(Error::Decrypt)?;
    Ok((u64::from_be_bytes(*expiry), inner))
}

/// The deadline written in front of an expiring envelope, in seconds since
/// the Unix epoch (authentic only once the envelope has opened).
pub(crate) fn deadline(envelope: &[u8]) -> Option<u64> {
    split(envelope).ok().map(|(expires_at, _)| expires_at)
}

/// Opens with `opener`: the tag first, then the expiry against `now`.
pub(super) fn open<S: Seal + ?Sized>(
    opener: &S,
    envelope: &[u8],
    aad: &[u8],
    now: SystemTime,
) -> Result<Secret<Vec<u8>>, Error> {
    let (expires_at, inner) = split(envelope)?;
    let plaintext = opener.open(inner, inner_aad(expires_at, aad).as_bytes())?;
    if unix_seconds(now) >= expires_at {
        return Err(Error::Expired);
    }
    Ok(plaintext)
}
