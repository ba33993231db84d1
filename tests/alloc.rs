//! `seal_into` and `open_into` allocate nothing: a counting global allocator
//! watches this thread while they run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use pinseal::{Key, OVERHEAD, Sealer};

struct Counting;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
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
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
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
