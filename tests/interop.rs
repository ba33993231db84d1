//! Interoperability with an independent AES-256-GCM: Node.js `crypto`.
//!
//! Node opens what `Sealer::seal` makes (with associated data), and
//! `Sealer::open` opens what Node seals. If `node` is not installed the test
//! prints why and passes, except under CI (`CI` set), where it fails: CI
//! must install Node.

use std::io::Write;
use std::process::{Command, Stdio};

use pinseal::{Key, Sealer};

fn hexd(b: &[u8]) -> String {
    if b.is_empty() {
        "-".into()
    } else {
        hex::encode(b)
    }
}

/// Runs the Node helper over `lines`, returning one output line per input.
fn node(lines: &[String]) -> Option<Vec<String>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/node_gcm.js");
    let mut child = match Command::new("node")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "node is required under CI but could not be started: {e}"
            );
            eprintln!("SKIPPED: Node.js interop, `node` could not be started: {e}");
            return None;
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all((lines.join("\n") + "\n").as_bytes())
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "node failed");
    let text = String::from_utf8(output.stdout).unwrap();
    let out: Vec<String> = text.lines().map(str::to_string).collect();
    assert_eq!(out.len(), lines.len(), "node answered every line");
    Some(out)
}

fn cases() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (b"1234".to_vec(), b"call-7f3a/pin".to_vec()),
        (b"4321".to_vec(), b"call-7f3a/last4".to_vec()),
        (Vec::new(), b"empty plaintext".to_vec()),
        (b"no aad".to_vec(), Vec::new()),
        ((0..=255).collect(), vec![0xA5; 1000]),
        (vec![7; 70_000], b"large".to_vec()),
    ]
}

#[test]
fn node_opens_what_pinseal_seals() {
    let key = Key::generate();
    let sealer = Sealer::new(&key);
    let khex = hex::encode(key.expose_secret());
    let lines: Vec<String> = cases()
        .iter()
        .map(|(pt, aad)| format!("open {khex} {} {}", hexd(aad), hexd(&sealer.seal(pt, aad))))
        .collect();
    let Some(out) = node(&lines) else { return };
    for ((pt, _), got) in cases().iter().zip(&out) {
        assert_eq!(got, &hexd(pt));
    }
    // And Node refuses a pinseal envelope with the wrong AAD.
    let wrong = format!(
        "open {khex} {} {}",
        hexd(b"x"),
        hexd(&sealer.seal(b"1234", b"y"))
    );
    assert_eq!(node(&[wrong]).unwrap(), ["ERR"]);
}

#[test]
fn pinseal_opens_what_node_seals() {
    let key = Key::generate();
    let sealer = Sealer::new(&key);
    let khex = hex::encode(key.expose_secret());
    let lines: Vec<String> = cases()
        .iter()
        .map(|(pt, aad)| format!("seal {khex} {} {}", hexd(aad), hexd(pt)))
        .collect();
    let Some(out) = node(&lines) else { return };
    for ((pt, aad), envelope) in cases().iter().zip(&out) {
        let envelope = if envelope == "-" {
            String::new()
        } else {
            envelope.clone()
        };
        assert_eq!(sealer.open_hex(&envelope, aad).unwrap().expose_secret(), pt);
        assert!(sealer.open_hex(&envelope, b"another context").is_err());
    }
}
