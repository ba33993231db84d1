//! Randomness from the operating system.

/// Fills `buf` from the operating system's random number generator.
///
/// # Panics
///
/// If the operating system cannot provide random bytes. There is no safe
/// fallback: sealing with a predictable nonce or issuing a guessable code
/// would be worse than stopping.
pub(crate) fn fill(buf: &mut [u8]) {
    if getrandom::fill(buf).is_err() {
        panic!("pinseal: the operating system's random number generator failed");
    }
}
