//! A watching global allocator: `seal_into` and `open_into` allocate
//! nothing, and no buffer the crate frees still holds a secret (decrypted
//! plaintext, codes, keys are wiped before their memory is returned).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use pinseal::envelope::OVERHEAD;
use pinseal::{ExposeSecret, Key, Seal, Sealer};

struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed on this thread while watching.
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    /// While set, every freed block is searched for this byte string.
    static NEEDLE: Cell<Option<&'static [u8]>> = const { Cell::new(None) };
    static FREED_WITH_NEEDLE: Cell<usize> = const { Cell::new(0) };
}

/// Counts `ptr..ptr+size` as a leak if it contains the needle being watched.
fn inspect_freed(ptr: *const u8, size: usize) {
    let _ = NEEDLE.try_with(|n| {
        if let Some(needle) = n.get() {
            // SAFETY: the block is still allocated and `size` bytes long.
            let block = unsafe { std::slice::from_raw_parts(ptr, size) };
            if block.windows(needle.len()).any(|w| w == needle) {
                let _ = FREED_WITH_NEEDLE.try_with(|c| c.set(c.get() + 1));
            }
        }
    });
}

fn note(allocated: usize, freed: usize) {
    let _ = WATCHING.try_with(|w| {
        if w.get() {
            if allocated > 0 {
                let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
            }
            let _ = LIVE_BYTES.try_with(|b| b.set(b.get() + allocated as isize - freed as isize));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 0);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(0, layout.size());
        inspect_freed(ptr, layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size(), 0);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size, layout.size());
        inspect_freed(ptr, layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap bytes still held, of those allocated on this thread while `f` ran.
fn bytes_kept_by(f: impl FnOnce()) -> isize {
    LIVE_BYTES.with(|b| b.set(0));
    WATCHING.with(|w| w.set(true));
    f();
    WATCHING.with(|w| w.set(false));
    LIVE_BYTES.with(|b| b.get())
}

/// Allocations made on this thread while `f` runs.
fn allocations_in(f: impl FnOnce()) -> usize {
    ALLOCATIONS.with(|a| a.set(0));
    WATCHING.with(|w| w.set(true));
    f();
    WATCHING.with(|w| w.set(false));
    ALLOCATIONS.with(|a| a.get())
}

#[test]
fn seal_into_and_open_into_allocate_nothing() {
    let sealer = Sealer::new(&Key::from_bytes([3; 32]));
    let pt = [0x31u8; 64];
    let mut envelope = [0u8; 64 + OVERHEAD];
    let mut back = [0u8; 64];
    // Warm up: the first seal on a thread sets up its nonce pool.
    sealer.seal_into(&pt, b"aad", &mut envelope).unwrap();

    // 1000 seals cross several pool refills.
    let n = allocations_in(|| {
        for _ in 0..1000 {
            sealer.seal_into(&pt, b"aad", &mut envelope).unwrap();
            assert!(sealer.open_into(&envelope, b"other", &mut back).is_err());
            assert_eq!(sealer.open_into(&envelope, b"aad", &mut back), Ok(64));
        }
    });
    assert_eq!(n, 0, "seal_into/open_into allocated {n} times");
    assert_eq!(back, pt);

    // The counter does count: the allocating API is seen.
    let n = allocations_in(|| {
        let _ = sealer.seal(&pt, b"aad");
    });
    assert!(n > 0, "the counting allocator works");
}

/// Blocks freed on this thread while `f` runs that still contain `needle`.
fn freed_with(needle: &'static [u8], f: impl FnOnce()) -> usize {
    FREED_WITH_NEEDLE.with(|c| c.set(0));
    NEEDLE.with(|n| n.set(Some(needle)));
    f();
    NEEDLE.with(|n| n.set(None));
    FREED_WITH_NEEDLE.with(|c| c.get())
}

#[test]
fn freed_buffers_hold_no_secret() {
    const MARKER: &[u8] = b"PIN-7391-CARD-5555555555554444-MARKER";
    let sealer = Sealer::new(&Key::from_bytes([4; 32]));
    let envelope = sealer.seal(MARKER, b"aad");
    let hex = sealer.seal(MARKER, b"aad").to_string();

    let leaks = freed_with(MARKER, || {
        for _ in 0..10 {
            let opened = sealer.open(&envelope, b"aad").unwrap();
            assert_eq!(opened.expose_secret(), MARKER);
            drop(opened);
            let parsed: pinseal::envelope::Envelope = hex.parse().unwrap();
            let opened = sealer.open(&parsed, b"aad").unwrap();
            drop(opened);
            let secret = pinseal::Secret::new(String::from_utf8(MARKER.to_vec()).unwrap());
            drop(secret);
        }
    });
    assert_eq!(leaks, 0, "{leaks} freed buffers still held the plaintext");

    let pan_text: &'static str = "5555555555554444";
    let leaks = freed_with(pan_text.as_bytes(), || {
        let pan = pinseal::secret::Pan::parse(pan_text).unwrap();
        drop(pan);
    });
    assert_eq!(leaks, 0, "a freed buffer still held the card number");

    // Control: a plain Vec holding the marker is seen when it is freed.
    let leaks = freed_with(MARKER, || drop(MARKER.to_vec()));
    assert_eq!(leaks, 1, "the freed-memory scanner works");
}

#[test]
fn freed_buffers_hold_no_otp_code() {
    use pinseal::otp::{Otp, Policy};
    let otp = Otp::new(&Key::from_bytes([5; 32]), Policy::default());
    let (id, code) = otp.issue("subject-without-digits").unwrap();
    // The needle must outlive the code; leak a copy made by this test.
    let needle: &'static [u8] =
        Box::leak(code.expose_secret().as_bytes().to_vec().into_boxed_slice());
    let leaks = freed_with(needle, || {
        assert!(otp.verify(&id, code.expose_secret()).is_ok());
        drop(code);
    });
    assert_eq!(leaks, 0, "a freed buffer still held the code");
}

/// A `'static` copy of `bytes`, to watch for after the original is gone.
fn needle_of(bytes: &[u8]) -> &'static [u8] {
    Box::leak(bytes.to_vec().into_boxed_slice())
}

#[test]
fn freed_buffers_hold_no_key() {
    const RAW: [u8; 32] = *b"root-key-0123456789-ABCDEFGHIJKL";
    let raw: &'static [u8] = &RAW;

    // A key on the heap, and a root key's derived keys on the heap.
    let leaks = freed_with(raw, || drop(Box::new(Key::from_bytes(RAW))));
    assert_eq!(leaks, 0, "a freed Key still held its bytes");
    let root = Key::from_bytes(RAW);
    let derived = needle_of(root.derive("ivr/pin").expose_secret());
    let leaks = freed_with(derived, || drop(Box::new(root.derive("ivr/pin"))));
    assert_eq!(leaks, 0, "a freed derived Key still held its bytes");

    // Expanded keys: the first two AES-256 round keys are the key itself,
    // so an unwiped key schedule would be found.
    fn schedules_freed<E: pinseal::envelope::Engine>(raw: &'static [u8]) -> usize {
        freed_with(raw, || {
            drop(Box::new(Sealer::<E>::with_engine(&Key::from_bytes(RAW))));
            // Several previous keys, so the ring's list grows (reallocates).
            let ring = pinseal::Keyring::<E>::with_engine(&Key::from_bytes([1; 32]))
                .with_previous(&Key::from_bytes(RAW))
                .and_then(|r| r.with_previous(&Key::from_bytes([2; 32])))
                .unwrap();
            drop(ring);
        })
    }
    let leaks = schedules_freed::<pinseal::envelope::AesGcm>(raw);
    assert_eq!(leaks, 0, "a freed Sealer or Keyring still held the key");
    #[cfg(feature = "aws-lc-rs")]
    {
        let leaks = schedules_freed::<pinseal::envelope::AwsLc>(raw);
        assert_eq!(
            leaks, 0,
            "a freed aws-lc-rs Sealer or Keyring still held the key"
        );
    }
    #[cfg(feature = "ring")]
    {
        // Documented: `ring` does not wipe its expanded key (and a sealer on
        // it is not `ZeroizeOnDrop`). Should it start to, this fails and the
        // documentation changes with it.
        let leaks = schedules_freed::<pinseal::envelope::Ring>(raw);
        assert!(leaks > 0, "the ring engine now wipes its key schedule");
        eprintln!("ring engine: {leaks} freed blocks held the expanded key (documented)");
    }

    // The OTP service's derived keys.
    let code_key = needle_of(root.derive("otp/v1/code").expose_secret());
    let leaks = freed_with(code_key, || {
        let otp = std::sync::Arc::new(pinseal::otp::Otp::new(
            &root,
            pinseal::otp::Policy::default(),
        ));
        drop(otp);
    });
    assert_eq!(leaks, 0, "a freed Otp still held a derived key");

    // A key read from the environment: the hex text read into the process
    // is wiped, not only the parsed bytes.
    let hex_text = needle_of(const_hex::encode(RAW).as_bytes());
    // SAFETY: no other thread of this test binary reads this variable.
    unsafe { std::env::set_var("PINSEAL_ALLOC_TEST_KEY", const_hex::encode(RAW)) };
    let leaks = freed_with(hex_text, || {
        let key = Key::from_env("PINSEAL_ALLOC_TEST_KEY").unwrap();
        drop(Box::new(key));
    });
    assert_eq!(leaks, 0, "Key::from_env left the key's hex in freed memory");

    // Control: an unwiped heap copy of the key is seen.
    let leaks = freed_with(raw, || drop(Box::new(RAW)));
    assert_eq!(leaks, 1, "the freed-memory scanner sees a key");
}

/// The capacity figure in `MemoryStore`'s documentation: at most two
/// entries per issued challenge and under 420 bytes per entry with the
/// maps' overhead, so the default 100 000 entries stay under 42 MB.
#[test]
fn memory_store_bytes_per_entry_match_the_docs() {
    use pinseal::otp::{Clock, MemoryStore, Otp, Policy, SystemClock};
    const ISSUES: usize = 20_000;
    let store = std::sync::Arc::new(MemoryStore::new());
    let otp = Otp::with_parts(
        &Key::from_bytes([6; 32]),
        Policy::default(),
        store.clone(),
        SystemClock,
    );
    let mut subjects: Vec<String> = (0..ISSUES).map(|i| format!("+1555{i:07}")).collect();
    subjects.shrink_to_fit();
    let kept = bytes_kept_by(|| {
        for subject in &subjects {
            let (_id, _code) = otp.issue(subject).unwrap();
        }
    });
    let entries = store.len(SystemClock.now());
    assert!(
        entries <= 2 * ISSUES,
        "{entries} entries for {ISSUES} issues"
    );
    let per_entry = kept as f64 / entries as f64;
    eprintln!(
        "MemoryStore: {entries} entries, {kept} bytes, {per_entry:.0} bytes per entry, \
         {:.1} MB at the default capacity",
        per_entry * MemoryStore::DEFAULT_CAPACITY as f64 / 1e6
    );
    assert!(per_entry <= 420.0, "{per_entry:.0} bytes per entry");
    // The figure is not zero by accident: the store does hold its entries.
    assert!(
        per_entry >= 100.0,
        "{per_entry:.0} bytes per entry is too small to be real"
    );
}

#[test]
fn freed_buffers_hold_no_totp_secret() {
    use pinseal::otp::totp::Totp;
    let totp = Totp::random();
    let needle = needle_of(totp.secret_base32().expose_secret().as_bytes());
    let leaks = freed_with(needle, || {
        let uri = totp.to_uri("ACME Co", "alice@example.com");
        let back = Totp::from_uri(uri.expose_secret()).unwrap();
        assert!(back.secret() == totp.secret());
        drop((uri, back));
        drop(totp.secret_base32());
    });
    assert_eq!(
        leaks, 0,
        "a freed buffer still held the TOTP secret's base32"
    );
}
