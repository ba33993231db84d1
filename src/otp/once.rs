//! Accept-once: admit a key at most once within a time to live, across
//! every instance that shares a store ([`AcceptOnce`], blocking; and the
//! operation [`aio::AcceptOnce`](crate::otp::aio::AcceptOnce) shares).

use core::fmt;
use std::time::Duration;

use crate::envelope::{Seal, expiring_deadline};
use crate::otp::clock::{Clock, SystemClock, unix_millis};
use crate::otp::driver::{Blocking, Step, drive, run_blocking};
use crate::otp::record::Mac;
use crate::otp::store::{AsyncStore, MemoryStore, Store};
use crate::{Error, Key, Secret};

/// The longest time to live [`AcceptOnce::admit`] takes: 366 days.
const MAX_TTL_MS: u64 = 366 * 86_400_000;

/// How far apart the clocks of instances sharing a store may be: a mark for
/// an expiring envelope is kept this long past the envelope's deadline.
const CLOCK_ALLOWANCE_MS: u64 = 60_000;

/// The key and clock of an accept-once set, and its operations over any
/// [`AsyncStore`].
pub(crate) struct Once<C> {
    key: crate::mac::KeyedMac,
    clock: C,
}

impl<C> Once<C> {
    pub(crate) fn new(pepper: &Key, clock: C) -> Once<C> {
        Once {
            key: crate::mac::KeyedMac::new(crate::ExposeSecret::expose_secret(
                &pepper.derive("once/v1/key"),
            )),
            clock,
        }
    }

    pub(crate) fn clock(&self) -> &C {
        &self.clock
    }

    /// `o:` + hex(HMAC-SHA256(key, each part as a 4-byte big-endian length
    /// and its bytes)): parts cannot run into each other.
    fn store_key<P: AsRef<[u8]>>(&self, parts: &[P]) -> String {
        let lengths: Vec<[u8; 4]> = parts
            .iter()
            .map(|p| {
                u32::try_from(p.as_ref().len())
                    .unwrap_or(u32::MAX)
                    .to_be_bytes()
            })
            .collect();
        let mut input: Vec<&[u8]> = Vec::with_capacity(parts.len() * 2);
        for (part, length) in parts.iter().zip(&lengths) {
            input.push(length);
            input.push(part.as_ref());
        }
        let tag: Mac = self.key.mac(&input);
        crate::hex::prefixed("o:", &tag)
    }
}

impl<C: Clock> Once<C> {
    pub(crate) async fn admit<S: AsyncStore + ?Sized, P: AsRef<[u8]>>(
        &self,
        store: &S,
        parts: &[P],
        ttl: Duration,
    ) -> Result<bool, Error> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
            return Err(Error::InvalidPolicy);
        }
        let now_ms = unix_millis(self.clock.now());
        self.admit_until(store, parts, now_ms.saturating_add(ttl_ms), now_ms)
            .await
    }

    async fn admit_until<S: AsyncStore + ?Sized, P: AsRef<[u8]>>(
        &self,
        store: &S,
        parts: &[P],
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        // The first swap assumes the key absent: one round trip when it is.
        // Of all callers racing on one key, exactly one swap succeeds. A
        // mark whose deadline (by this instance's clock) has passed but
        // that the store still holds is replaced the same way.
        let mark = expires_ms.to_be_bytes();
        drive(
            store,
            &self.store_key(parts),
            now_ms,
            Some(None),
            |current| match current {
                None => Ok(Step::write(mark.to_vec(), expires_ms, true)),
                Some(bytes) => {
                    let until =
                        u64::from_be_bytes(bytes.try_into().map_err(|_| Error::StoreCorrupt)?);
                    if until <= now_ms {
                        Ok(Step::write(mark.to_vec(), expires_ms, true))
                    } else {
                        Ok(Step::Done(false))
                    }
                }
            },
        )
        .await
    }

    pub(crate) async fn open_once<S, E>(
        &self,
        store: &S,
        opener: &E,
        envelope: &[u8],
        aad: &[u8],
        ttl: Duration,
    ) -> Result<Secret<Vec<u8>>, Error>
    where
        S: AsyncStore + ?Sized,
        E: Seal + ?Sized,
    {
        // Authenticate first: a forgery never reaches the store.
        let plaintext = opener.open(envelope, aad)?;
        if self
            .admit(store, &[b"envelope".as_slice(), envelope], ttl)
            .await?
        {
            Ok(plaintext)
        } else {
            Err(Error::Replayed)
        }
    }

    pub(crate) async fn open_expiring_once<S, E>(
        &self,
        store: &S,
        opener: &E,
        envelope: &[u8],
        aad: &[u8],
    ) -> Result<Secret<Vec<u8>>, Error>
    where
        S: AsyncStore + ?Sized,
        E: Seal + ?Sized,
    {
        let now = self.clock.now();
        let plaintext = opener.open_expiring_at(envelope, aad, now)?;
        // Authentic and not expired: past its deadline the envelope opens
        // nowhere whose clock is within the allowance of this one, so the
        // mark may go then.
        let deadline_ms = expiring_deadline(envelope)
            .ok_or(Error::Decrypt)?
            .saturating_mul(1000)
            .saturating_add(CLOCK_ALLOWANCE_MS);
        let now_ms = unix_millis(now);
        if self
            .admit_until(
                store,
                &[b"expiring".as_slice(), envelope],
                deadline_ms,
                now_ms,
            )
            .await?
        {
            Ok(plaintext)
        } else {
            Err(Error::Replayed)
        }
    }
}

/// Admits each key at most once within a time to live, across every
/// instance of a service that shares the store: webhook deliveries,
/// one-time envelopes, nonces, idempotency keys.
///
/// # Use case
///
/// A signature proves where a request came from, not that it is new: a
/// captured webhook that carried a caller's digits can be posted again,
/// and an envelope that crossed a queue can be delivered twice. Admit what
/// identifies it (the call id and the field, the envelope itself) before
/// acting on it; a second admission within the TTL is refused, on this
/// instance or any other on the same store. A process-local `HashSet` does
/// not see the other instances, nor survive a restart.
///
/// # About
///
/// - [`AcceptOnce::admit`] is one compare-and-swap from "absent" to a mark
///   (its deadline, 8 bytes) that expires after the TTL: one store round
///   trip for a new key, and exactly one of any number of concurrent
///   admissions of a key succeeds (on the memory store, Redis single node
///   and cluster, and DynamoDB). The deadline is kept by this service's
///   clock, as the OTP records are; a refused key costs a second round
///   trip, to read the mark.
/// - Keys reach the store only as `o:` + hex(HMAC-SHA256(k, parts)), with k
///   derived from the pepper as `once/v1/key` and each part
///   length-prefixed, so neither a call id nor an envelope is stored in
///   clear and `["ab", "c"]` differs from `["a", "bc"]`.
/// - [`AcceptOnce::open_once`] opens an envelope and admits it;
///   [`AcceptOnce::open_expiring_once`] does the same for an expiring
///   envelope and keeps the mark until a minute past the envelope's own
///   deadline, after which it opens on no instance whose clock is within a
///   minute of this one's.
/// - Services on an async runtime use
///   [`aio::AcceptOnce`](crate::otp::aio::AcceptOnce), the same operations
///   awaited.
///
/// # Errors
///
/// Store errors ([`Error::Store`], [`Error::StoreFull`]): nothing was
/// admitted, and the caller must treat the key as not accepted (fail
/// closed). A TTL under a millisecond or over 366 days is
/// [`Error::InvalidPolicy`].
///
/// # Security
///
/// - Memory is bounded by the keys admitted within one TTL; choose the TTL
///   as the time during which a replay could still do harm (for a webhook,
///   the call's longest duration; for an envelope, its lifetime).
/// - The pepper must be the same on every instance and across restarts,
///   and the store shared: a mark made under another pepper, or in another
///   process's memory store, is not seen. A TTL is counted by the clock of
///   the instance that admits, so instances' clocks should agree to well
///   within it.
/// - A store that loses writes (a Redis primary that fails before it
///   replicates) can forget an admission; see SECURITY.md on failover.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use pinseal::Key;
/// use pinseal::otp::AcceptOnce;
///
/// let once = AcceptOnce::new(&Key::generate());
/// let ttl = Duration::from_secs(4 * 3600);
/// assert!(once.admit(&["CA1234", "/gather/pin"], ttl)?);
/// assert!(!once.admit(&["CA1234", "/gather/pin"], ttl)?); // a replay
/// assert!(once.admit(&["CA1234", "/gather/last4"], ttl)?); // another key
/// # Ok::<(), pinseal::Error>(())
/// ```
pub struct AcceptOnce<S = MemoryStore, C = SystemClock> {
    once: Once<C>,
    store: S,
}

impl AcceptOnce {
    /// An accept-once set on its own in-memory store and the system clock
    /// (one process; use [`AcceptOnce::with_store`] with a shared store for
    /// several).
    pub fn new(pepper: &Key) -> AcceptOnce {
        AcceptOnce::with_parts(pepper, MemoryStore::new(), SystemClock)
    }
}

impl<S: Store> AcceptOnce<S, SystemClock> {
    /// An accept-once set over `store` and the system clock.
    pub fn with_store(pepper: &Key, store: S) -> Self {
        AcceptOnce::with_parts(pepper, store, SystemClock)
    }
}

impl<S, C> AcceptOnce<S, C> {
    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

impl<S: Store, C: Clock> AcceptOnce<S, C> {
    /// An accept-once set over a blocking [`Store`] and a [`Clock`].
    pub fn with_parts(pepper: &Key, store: S, clock: C) -> Self {
        AcceptOnce {
            once: Once::new(pepper, clock),
            store,
        }
    }

    /// Admits the key made of `parts` if it was not admitted within the
    /// last `ttl`: `Ok(true)` the first time, `Ok(false)` for a replay.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPolicy`] for a `ttl` under a millisecond or over 366
    /// days; store errors (then nothing was admitted).
    #[must_use = "a key is admitted only if this returns Ok(true)"]
    pub fn admit<P: AsRef<[u8]>>(&self, parts: &[P], ttl: Duration) -> Result<bool, Error> {
        run_blocking(self.once.admit(&Blocking(&self.store), parts, ttl))
    }

    /// Opens `envelope` with `opener` and admits it: the plaintext the first
    /// time within `ttl`, [`Error::Replayed`] after.
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`] for an envelope that does not open (the store is
    /// not touched); [`Error::Replayed`]; as [`AcceptOnce::admit`].
    pub fn open_once<E: Seal + ?Sized>(
        &self,
        opener: &E,
        envelope: &[u8],
        aad: &[u8],
        ttl: Duration,
    ) -> Result<Secret<Vec<u8>>, Error> {
        run_blocking(
            self.once
                .open_once(&Blocking(&self.store), opener, envelope, aad, ttl),
        )
    }

    /// Opens an expiring envelope (see [`Seal::open_expiring_at`]) at this
    /// set's clock and admits it until the envelope's own deadline.
    ///
    /// # Errors
    ///
    /// [`Error::Decrypt`]; [`Error::Expired`]; [`Error::Replayed`]; store
    /// errors.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// use pinseal::{Error, ExposeSecret, Key, Seal, Sealer};
    /// use pinseal::otp::AcceptOnce;
    ///
    /// let key = Key::generate();
    /// let sealer = Sealer::new(&key.derive("ivr/digits"));
    /// let once = AcceptOnce::new(&key.derive("ivr/once"));
    /// let envelope = sealer.seal_for(b"1234", b"CA1234", Duration::from_secs(60));
    /// let pin = once.open_expiring_once(&sealer, &envelope, b"CA1234")?;
    /// assert_eq!(pin.expose_secret(), b"1234");
    /// assert_eq!(
    ///     once.open_expiring_once(&sealer, &envelope, b"CA1234").unwrap_err(),
    ///     Error::Replayed
    /// );
    /// # Ok::<(), pinseal::Error>(())
    /// ```
    pub fn open_expiring_once<E: Seal + ?Sized>(
        &self,
        opener: &E,
        envelope: &[u8],
        aad: &[u8],
    ) -> Result<Secret<Vec<u8>>, Error> {
        run_blocking(
            self.once
                .open_expiring_once(&Blocking(&self.store), opener, envelope, aad),
        )
    }
}

impl<S: fmt::Debug, C: fmt::Debug> fmt::Debug for AcceptOnce<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptOnce")
            .field("key", &crate::secret::REDACTED)
            .field("store", &self.store)
            .field("clock", self.once.clock())
            .finish()
    }
}

/// The derived key is wiped on drop, and a [`MemoryStore`] holds no secret.
impl<C> zeroize::ZeroizeOnDrop for AcceptOnce<MemoryStore, C> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otp::ManualClock;
    use std::time::UNIX_EPOCH;

    #[test]
    fn parts_are_length_prefixed() {
        let once = Once::new(&Key::from_bytes([1; 32]), SystemClock);
        assert_ne!(once.store_key(&["ab", "c"]), once.store_key(&["a", "bc"]));
        assert_eq!(
            once.store_key(&["ab", "c"]),
            once.store_key(&[b"ab".as_slice(), b"c"])
        );
    }

    #[test]
    fn the_mark_lasts_exactly_the_ttl() {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let once =
            AcceptOnce::with_parts(&Key::from_bytes([2; 32]), MemoryStore::new(), clock.clone());
        let ttl = Duration::from_secs(10);
        assert!(once.admit(&["k"], ttl).unwrap());
        clock.advance(Duration::from_millis(9_999));
        assert!(!once.admit(&["k"], ttl).unwrap());
        clock.advance(Duration::from_millis(1));
        assert!(once.admit(&["k"], ttl).unwrap());
        assert_eq!(
            once.admit(&["k"], Duration::ZERO),
            Err(Error::InvalidPolicy)
        );
    }
}
