//! Fork safety of the nonce pool: after a fork, parent and child never
//! produce the same nonce, whether the child was made by `fork(3)` (which
//! runs `pthread_atfork` handlers) or by the raw `clone` system call (which
//! runs none). Test code may use `unsafe`; see `tests/unsafe_sites.rs` for
//! the crate's own.
//!
//! The child allocates nothing and talks to the parent through a pipe.

#![cfg(target_os = "linux")]

use pinseal::envelope::OVERHEAD;
use pinseal::{Key, Seal, Sealer};

const N: usize = 500;

fn next_nonces(sealer: &Sealer, out: &mut [[u8; 12]; N]) {
    let mut envelope = [0u8; 4 + OVERHEAD];
    for nonce in out.iter_mut() {
        sealer.seal_into(b"1234", b"", &mut envelope).unwrap();
        nonce.copy_from_slice(&envelope[..12]);
    }
}

/// `fork(3)` from the C library.
fn libc_fork() -> libc::pid_t {
    unsafe { libc::fork() }
}

/// The `clone` system call with only `SIGCHLD`: a fork that bypasses the C
/// library, so no atfork handler runs and no cached process state is reset.
fn raw_clone() -> libc::pid_t {
    let pid = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
    pid as libc::pid_t
}

#[test]
fn parent_and_child_never_share_a_nonce_after_fork() {
    parent_and_child_never_share_a_nonce(libc_fork);
}

#[test]
fn parent_and_child_never_share_a_nonce_after_raw_clone() {
    parent_and_child_never_share_a_nonce(raw_clone);
}

fn parent_and_child_never_share_a_nonce(fork: fn() -> libc::pid_t) {
    let sealer = Sealer::new(&Key::from_bytes([1; 32]));
    // Fill this thread's pool before forking, so the child inherits it.
    let mut envelope = [0u8; 4 + OVERHEAD];
    sealer.seal_into(b"1234", b"", &mut envelope).unwrap();

    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let pid = fork();
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // Child: its next N nonces, raw, into the pipe; then leave at once.
        let mut mine = [[0u8; 12]; N];
        next_nonces(&sealer, &mut mine);
        let bytes = mine.as_flattened();
        let mut written = 0;
        while written < bytes.len() {
            let n = unsafe {
                libc::write(
                    fds[1],
                    bytes[written..].as_ptr().cast(),
                    bytes.len() - written,
                )
            };
            if n <= 0 {
                unsafe { libc::_exit(1) };
            }
            written += n as usize;
        }
        unsafe { libc::_exit(0) };
    }
    unsafe { libc::close(fds[1]) };
    let mut parent = [[0u8; 12]; N];
    next_nonces(&sealer, &mut parent);

    let mut child = vec![0u8; N * 12];
    let mut read = 0;
    while read < child.len() {
        let n = unsafe {
            libc::read(
                fds[0],
                child[read..].as_mut_ptr().cast(),
                child.len() - read,
            )
        };
        assert!(n > 0, "child wrote too little");
        read += n as usize;
    }
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed"
    );

    let parent: std::collections::HashSet<[u8; 12]> = parent.into_iter().collect();
    assert_eq!(parent.len(), N, "the parent's own nonces are distinct");
    let shared = child
        .chunks_exact(12)
        .filter(|c| parent.contains(&<[u8; 12]>::try_from(*c).unwrap()))
        .count();
    assert_eq!(
        shared, 0,
        "parent and child produced {shared} identical nonces"
    );
}
