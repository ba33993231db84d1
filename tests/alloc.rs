//! A watching global allocator: `seal_into` and `open_into` allocate
//! nothing, and no buffer the crate frees still holds a secret (decrypted
//! plaintext, codes, keys are wiped before their memory is returned).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use pinseal::{Key, OVERHEAD, Sealer};

struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
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

fn note() {
    let _ = WATCHING.try_with(|w| {
        if w.get() {
            let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        inspect_freed(ptr, layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        inspect_freed(ptr, layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

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
    let hex = sealer.seal_hex(MARKER, b"aad");

    let leaks = freed_with(MARKER, || {
        for _ in 0..10 {
            let opened = sealer.open(&envelope, b"aad").unwrap();
            assert_eq!(opened.expose_secret(), MARKER);
            drop(opened);
            let opened = sealer.open_hex(&hex, b"aad").unwrap();
            drop(opened);
            let secret = pinseal::Secret::new(String::from_utf8(MARKER.to_vec()).unwrap());
            drop(secret);
        }
    });
    assert_eq!(leaks, 0, "{leaks} freed buffers still held the plaintext");

    let pan_text: &'static str = "5555555555554444";
    let leaks = freed_with(pan_text.as_bytes(), || {
        let pan = pinseal::Pan::parse(pan_text).unwrap();
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
