//! HMAC-SHA256, as the crate's keyed hashes use it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Length of an HMAC-SHA256 output.
pub(crate) const MAC_LEN: usize = 32;

/// HMAC-SHA256 keyed once: each use clones the keyed state instead of
/// hashing the key again (two SHA-256 compressions saved per MAC). The
/// state stands for the key, so it is wiped on drop, and so is every clone:
/// it is two SHA-256 cores (inner and outer), and with `sha2`'s `zeroize`
/// feature each core wipes its state when dropped.
#[derive(Clone)]
pub(crate) struct KeyedMac(Hmac<Sha256>);

impl KeyedMac {
    pub(crate) fn new(key: &[u8]) -> KeyedMac {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        #[allow(clippy::expect_used)]
        KeyedMac(
            <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                .expect("HMAC accepts keys of any length"),
        )
    }

    /// HMAC-SHA256 over the concatenation of `parts`.
    pub(crate) fn mac(&self, parts: &[&[u8]]) -> [u8; MAC_LEN] {
        #[cfg(test)]
        COMPUTED.with(|n| n.set(n.get() + 1));
        let mut mac = self.0.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
thread_local! {
    /// How many MACs this thread has computed: for tests that count them.
    pub(crate) static COMPUTED: core::cell::Cell<usize> = const { core::cell::Cell::new(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each `Key`/`Msg`/`MD` block of the vector file.
    fn vectors() -> Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let text = include_str!("../tests/data/rfc4231_hmac_sha256.txt");
        let mut out = Vec::new();
        let (mut key, mut msg) = (None, None);
        for line in text.lines() {
            let hex = |v: &str| crate::hex::decode(v.trim()).unwrap();
            if let Some(v) = line.strip_prefix("Key = ") {
                key = Some(hex(v));
            } else if let Some(v) = line.strip_prefix("Msg = ") {
                msg = Some(hex(v));
            } else if let Some(v) = line.strip_prefix("MD = ") {
                out.push((key.take().unwrap(), msg.take().unwrap(), hex(v)));
            }
        }
        out
    }

    #[test]
    fn rfc4231_vectors_keyed_once_and_each_time() {
        let vectors = vectors();
        assert_eq!(vectors.len(), 6);
        for (key, msg, want) in vectors {
            let keyed = KeyedMac::new(&key);
            // Twice from one keyed state: the clone leaves it unchanged.
            for _ in 0..2 {
                assert_eq!(keyed.mac(&[&msg]).as_slice(), want.as_slice());
            }
            // Split into parts, as the callers pass them.
            let (a, b) = msg.split_at(msg.len() / 3);
            assert_eq!(keyed.mac(&[a, b]).as_slice(), want.as_slice());
        }
    }
}
