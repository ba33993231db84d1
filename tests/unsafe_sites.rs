//! The crate's `unsafe` code is one audited function: `wipe_on_fork_word`
//! in `src/nonce.rs` (one `#[allow(unsafe_code)]`, one `unsafe` block, a
//! `SAFETY` comment), under `#![deny(unsafe_code)]` everywhere else.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Lines of code (comments dropped) that use the `unsafe` keyword, and
/// lines that allow `unsafe_code`, per file.
#[test]
fn unsafe_is_confined_to_one_function() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 10, "found the sources");
    let mut keyword_sites = Vec::new();
    let mut allows = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.strip_prefix(&src).unwrap().display().to_string();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("allow(unsafe_code)") {
                allows.push(format!("{name}:{}", n + 1));
            }
            let keyword = code
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| word == "unsafe");
            if keyword {
                keyword_sites.push(format!("{name}:{}", n + 1));
            }
        }
    }
    assert_eq!(allows.len(), 1, "one #[allow(unsafe_code)]: {allows:?}");
    assert!(allows[0].starts_with("nonce.rs:"), "{allows:?}");
    assert_eq!(
        keyword_sites.len(),
        1,
        "one unsafe block: {keyword_sites:?}"
    );
    assert!(
        keyword_sites[0].starts_with("nonce.rs:"),
        "{keyword_sites:?}"
    );

    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    assert!(lib.contains("#![deny(unsafe_code)]"));
    let nonce = std::fs::read_to_string(src.join("nonce.rs")).unwrap();
    assert!(
        nonce.contains("// SAFETY:"),
        "the unsafe block is explained"
    );
}
