//! Nonces: a per-thread pool of OS randomness that a forked child never
//! shares with its parent, checked without a system call per seal.
//!
//! # How a fork is seen
//!
//! Each thread reads OS randomness 4 KiB at a time and serves 341 nonces
//! from it, erasing each one as it is served. The pool remembers the
//! *generation* it was filled in, and is refilled whenever the process's
//! current generation differs.
//!
//! On Linux the current generation is a word in one page of memory marked
//! `MADV_WIPEONFORK`: the kernel hands a forked child that page filled with
//! zeros, whatever way the child was created (`fork`, `vfork`-less `clone`,
//! a raw system call that skips `pthread_atfork` handlers). A zero word
//! means "new process": the child picks a generation no pool of its own
//! has used, and the inherited pool is refilled before its first nonce.
//! Reading the word is one memory load; BoringSSL detects forks the same
//! way.
//!
//! Where the kernel refuses `MADV_WIPEONFORK` (Linux before 4.14, some
//! sandboxes, other systems), the generation is the process id, read on
//! every seal; that check misses a process id reused by a grandchild after
//! its grandparent exited, and a child that gets its parent's id in another
//! PID namespace.
//!
//! Neither check sees a restored memory snapshot (Firecracker, Lambda
//! SnapStart, CRIU): every instance restored from one snapshot holds the
//! same unused nonces. [`NonceSource::Os`] takes every nonce from the
//! operating system instead, whose generator Linux reseeds when a virtual
//! machine is restored (VM generation id, Linux 5.18 and later).

use std::cell::RefCell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Where seals take their nonces from, for every `Sealer` and `Keyring` in
/// the process: [`nonce_source`]; [`use_os_nonces`] switches to the OS for
/// good.
///
/// # Which to choose
///
/// - [`NonceSource::Pool`] (the default): each thread reads 4 KiB of OS
///   randomness at a time and serves 341 nonces from it, refilled after a
///   fork. A seal costs no system call (about 0.34 µs less than `Os` on a
///   4-byte seal, which takes half the time; BENCHMARKS.md, "Nonces").
/// - [`NonceSource::Os`]: one `getrandom` call per seal. Choose it for any
///   process whose memory may run as more than one copy: restored from a
///   snapshot (Firecracker, CRIU, Lambda SnapStart where a runtime offers
///   it) or a VM cloned while running. Every copy would otherwise serve the
///   same pooled nonces, and AES-GCM under a repeated nonce leaks the XOR
///   of the plaintexts and lets the authentication key be recovered.
///
/// The OS source is as good as the kernel's generator after a restore:
/// Linux 5.18 and later reseed it when the hypervisor exposes a VM
/// generation id (Firecracker, QEMU, Hyper-V), shortly after the resume; a
/// process-level restore (CRIU) does not copy the kernel's generator at
/// all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NonceSource {
    /// A per-thread pool of OS randomness, refilled after a fork.
    Pool,
    /// The operating system, for every nonce.
    Os,
}

/// Whether every nonce comes from the OS ([`use_os_nonces`]); never unset.
static OS_ONLY: AtomicBool = AtomicBool::new(false);

/// Takes every nonce of this process from the OS from now on, for good
/// (see [`NonceSource`] for when): no later call, in this crate or in a
/// dependency, switches back to the pool. Call it at start, before the
/// first seal and before any snapshot is taken.
///
/// # Example
///
/// ```
/// use pinseal::envelope::{NonceSource, nonce_source, use_os_nonces};
///
/// // At the start of a function that runs from a memory snapshot:
/// use_os_nonces();
/// assert_eq!(nonce_source(), NonceSource::Os);
/// ```
pub fn use_os_nonces() {
    OS_ONLY.store(true, Ordering::SeqCst);
}

/// Where seals take their nonces from now.
pub fn nonce_source() -> NonceSource {
    if OS_ONLY.load(Ordering::Relaxed) {
        NonceSource::Os
    } else {
        NonceSource::Pool
    }
}

/// Length of the random nonce at the start of an envelope.
pub const NONCE_LEN: usize = 12;

/// Nonces per refill of a thread's pool: 4092 bytes of OS randomness.
const POOL_NONCES: usize = 341;

/// A thread's supply of nonces.
#[cfg_attr(test, derive(Clone))]
struct Pool {
    bytes: [u8; POOL_NONCES * NONCE_LEN],
    next: usize,
    /// The generation the bytes were read in; 0 is never a generation.
    generation: u64,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            bytes: [0; POOL_NONCES * NONCE_LEN],
            next: POOL_NONCES,
            generation: 0,
        })
    };
}

impl Pool {
    fn take(&mut self, generation: u64) -> [u8; NONCE_LEN] {
        if self.generation != generation || self.next >= POOL_NONCES {
            crate::rand::fill(&mut self.bytes);
            self.next = 0;
            self.generation = generation;
        }
        let mut nonce = [0u8; NONCE_LEN];
        let used = self
            .bytes
            .chunks_exact_mut(NONCE_LEN)
            .nth(self.next)
            .unwrap_or_default();
        nonce.copy_from_slice(used);
        // Served once: the copy in the pool is erased.
        used.fill(0);
        self.next += 1;
        nonce
    }
}

/// A nonce straight from the OS.
fn os_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    crate::rand::fill(&mut nonce);
    nonce
}

/// A fresh random nonce from this thread's pool, or from the OS (under
/// [`NonceSource::Os`], and while the thread is being torn down).
pub(crate) fn fresh_nonce() -> [u8; NONCE_LEN] {
    if nonce_source() == NonceSource::Os {
        return os_nonce();
    }
    let generation = current_generation();
    POOL.try_with(|pool| pool.borrow_mut().take(generation))
        .unwrap_or_else(|_| os_nonce())
}

/// How this process notices that it is a fork.
#[derive(Clone, Copy)]
enum ForkWatch {
    /// A word the kernel zeroes in a forked child.
    WipeOnFork(&'static AtomicU64),
    /// The process id, read on every call.
    ProcessId,
}

/// Sets up fork detection now rather than at the first seal, so that no
/// thread can be inside the one-time setup when another forks.
pub(crate) fn prepare() {
    let _ = fork_watch();
}

fn fork_watch() -> ForkWatch {
    static WATCH: OnceLock<ForkWatch> = OnceLock::new();
    *WATCH.get_or_init(|| wipe_on_fork_word().map_or(ForkWatch::ProcessId, ForkWatch::WipeOnFork))
}

/// Generations handed out in this process so far. A child inherits the
/// count, so a generation it picks is newer than any its parent's pools
/// (including the one it inherited) were filled in.
static GENERATIONS: AtomicU64 = AtomicU64::new(0);

/// The process's current generation: never 0, and different in a forked
/// child from every generation its parent used.
fn current_generation() -> u64 {
    match fork_watch() {
        ForkWatch::WipeOnFork(word) => match word.load(Ordering::Acquire) {
            0 => {
                // First use, or the first nonce of a forked child.
                let fresh = GENERATIONS.fetch_add(1, Ordering::AcqRel) + 1;
                match word.compare_exchange(0, fresh, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => fresh,
                    Err(set_by_another_thread) => set_by_another_thread,
                }
            }
            generation => generation,
        },
        // Process ids are never 0; the high bit keeps them apart from
        // wipe-on-fork generations should the watch ever differ.
        ForkWatch::ProcessId => u64::from(std::process::id()) | 1 << 63,
    }
}

/// Maps one page, asks the kernel to wipe it in forked children, and
/// returns its first word; `None` where the kernel does not offer
/// wipe-on-fork memory. The page is never unmapped.
///
/// This is the crate's only `unsafe` code (a test counts the sites).
#[allow(unsafe_code)]
fn wipe_on_fork_word() -> Option<&'static AtomicU64> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use rustix::mm::{Advice, MapFlags, ProtFlags, madvise, mmap_anonymous, munmap};
        let len = rustix::param::page_size();
        // SAFETY:
        // - `mmap_anonymous` with a null address asks the kernel for a new
        //   private mapping; it overlaps nothing the program owns.
        // - `madvise` and `munmap` are given exactly that mapping.
        // - On success the mapping is never unmapped, so a `'static`
        //   reference into it stays valid for the life of the process. It
        //   is page-aligned (so aligned for `AtomicU64`), readable and
        //   writable, zero-filled by the kernel (a valid `AtomicU64`), and
        //   only ever accessed through that atomic. A forked child gets the
        //   same mapping at the same address, zeroed: still valid.
        unsafe {
            let page = mmap_anonymous(
                core::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE,
            )
            .ok()?;
            if madvise(page, len, Advice::LinuxWipeOnFork).is_err() {
                let _ = munmap(page, len);
                return None;
            }
            Some(&*page.cast::<AtomicU64>())
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels this crate is tested on (Linux 4.14 and later) offer
    /// wipe-on-fork memory, so the fork test exercises that path.
    #[test]
    #[cfg(target_os = "linux")]
    fn linux_uses_wipe_on_fork() {
        assert!(matches!(fork_watch(), ForkWatch::WipeOnFork(_)));
        let generation = current_generation();
        assert_ne!(generation, 0);
        assert_eq!(current_generation(), generation, "stable within a process");
    }

    /// Two instances restored from one snapshot: both hold the same pool.
    /// The pool serves both the same nonces; the OS source does not.
    #[test]
    fn a_restored_pool_repeats_and_os_nonces_do_not() {
        let mut original = Pool {
            bytes: [0; POOL_NONCES * NONCE_LEN],
            next: POOL_NONCES,
            generation: 0,
        };
        let _ = original.take(7); // filled before the snapshot
        let mut restored = original.clone();
        let from_original: Vec<_> = (0..100).map(|_| original.take(7)).collect();
        let from_restored: Vec<_> = (0..100).map(|_| restored.take(7)).collect();
        assert_eq!(from_original, from_restored, "every pooled nonce repeats");

        let a: std::collections::HashSet<_> = (0..1000).map(|_| os_nonce()).collect();
        let b: std::collections::HashSet<_> = (0..1000).map(|_| os_nonce()).collect();
        assert_eq!((a.len(), b.len()), (1000, 1000));
        assert!(a.is_disjoint(&b), "OS nonces repeat across copies");
    }

    /// This thread's pool's position: how many nonces it has served.
    fn pool_position() -> usize {
        POOL.with(|pool| pool.borrow().next)
    }

    #[test]
    fn the_os_source_does_not_touch_the_pool_and_cannot_be_undone() {
        // Each test runs on a thread of its own: this pool is this test's.
        if nonce_source() == NonceSource::Pool {
            let _ = fresh_nonce();
            let before = pool_position();
            let _ = fresh_nonce();
            assert_eq!(pool_position(), before + 1, "the pool serves");
        }
        use_os_nonces();
        let before = pool_position();
        let nonces: std::collections::HashSet<_> = (0..100).map(|_| fresh_nonce()).collect();
        assert_eq!(nonces.len(), 100);
        assert_eq!(pool_position(), before, "the OS serves, not the pool");
        assert_eq!(nonce_source(), NonceSource::Os);
    }

    #[test]
    fn nonces_differ() {
        let a = fresh_nonce();
        let b = fresh_nonce();
        assert_ne!(a, b);
        assert_ne!(a, [0; NONCE_LEN]);
    }
}
