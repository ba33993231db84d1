//! Fork safety of the nonce pool: after `fork`, parent and child never
//! produce the same nonce. (Test code may use `unsafe`; the crate does not.)
//!
//! The child allocates nothing and talks to the parent through a pipe.

#![cfg(unix)]

use pinseal::{Key, OVERHEAD, Sealer};

const N: usize = 500;

fn next_nonces(sealer: &Sealer, out: &mut [[u8; 12]; N]) {
    let mut envelope = [0u8; 4 + OVERHEAD];
    for nonce in out.iter_mut() {
        sealer.seal_into(b"1234", b"", &mut envelope).unwrap();
        nonce.copy_from_slice(&envelope[..12]);
    }
}

#[test]
fn parent_and_child_never_share_a_nonce() {
    let sealer = Sealer::new(&Key::from_bytes([1; 32]));
    // Fill this thread's pool before forking, so the child inherits it.
    let mut envelope = [0u8; 4 + OVERHEAD];
    sealer.seal_into(b"1234", b"", &mut envelope).unwrap();

    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let pid = unsafe { libc::fork() };
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
