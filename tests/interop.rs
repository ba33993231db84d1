//! Interoperability with independent AES-256-GCM implementations: Node.js
//! `crypto` and Python's `cryptography` package.
//!
//! Each peer opens what `Sealer::seal` makes (with associated data),
//! `Sealer::open` opens what the peer seals, the peer builds the same
//! [`Aad`] bytes from the same fields with its own code, opens expiring
//! envelopes from their documented layout, and computes the same
//! pseudonyms. A peer that is not
//! installed makes its tests print why and pass, except under CI (`CI`
//! set), where they fail: CI must install both.
//!
//! Python is `PINSEAL_PYTHON` if set (`.ci/run` points it at a virtualenv
//! with `cryptography`), else `python3`.

mod common;

use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use pinseal::envelope::Envelope;
use pinseal::pseudonym::Pseudonymizer;
use pinseal::{Aad, ExposeSecret, Key, Seal, Sealer};

#[derive(Clone, Copy, Debug)]
enum Peer {
    Node,
    Python,
}

impl Peer {
    fn command(self) -> Command {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
        match self {
            Peer::Node => {
                let mut c = Command::new("node");
                c.arg(format!("{dir}/node_gcm.js"));
                c
            }
            Peer::Python => {
                let python = std::env::var("PINSEAL_PYTHON").unwrap_or_else(|_| "python3".into());
                let mut c = Command::new(python);
                c.arg(format!("{dir}/python_gcm.py"));
                c
            }
        }
    }

    /// Whether the peer can run here; says why not (or fails under CI).
    fn available(self) -> bool {
        let probe = match self {
            Peer::Node => Command::new("node").arg("--version").output(),
            Peer::Python => {
                let python = std::env::var("PINSEAL_PYTHON").unwrap_or_else(|_| "python3".into());
                Command::new(python)
                    .args(["-c", "import cryptography"])
                    .output()
            }
        };
        let ok = probe.as_ref().is_ok_and(|o| o.status.success());
        if !ok {
            common::unavailable(match self {
                Peer::Node => "Node.js (`node`) for the interop tests",
                Peer::Python => "Python with the `cryptography` package for the interop tests",
            });
        }
        ok
    }

    /// Runs the peer over `lines`, returning one output line per input.
    fn run(self, lines: &[String]) -> Vec<String> {
        common::run_lines(self.command(), lines)
    }
}

fn hexd(b: &[u8]) -> String {
    if b.is_empty() {
        "-".into()
    } else {
        const_hex::encode(b)
    }
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

fn peer_opens_what_pinseal_seals(peer: Peer) {
    if !peer.available() {
        return;
    }
    let key = Key::generate();
    let sealer = Sealer::new(&key);
    let khex = const_hex::encode(key.expose_secret());
    let lines: Vec<String> = cases()
        .iter()
        .map(|(pt, aad)| format!("open {khex} {} {}", hexd(aad), hexd(&sealer.seal(pt, aad))))
        .collect();
    let out = peer.run(&lines);
    for ((pt, _), got) in cases().iter().zip(&out) {
        assert_eq!(got, &hexd(pt));
    }
    // And the peer refuses a pinseal envelope with the wrong AAD.
    let wrong = format!(
        "open {khex} {} {}",
        hexd(b"x"),
        hexd(&sealer.seal(b"1234", b"y"))
    );
    assert_eq!(peer.run(&[wrong]), ["ERR"]);
}

fn pinseal_opens_what_peer_seals(peer: Peer) {
    if !peer.available() {
        return;
    }
    let key = Key::generate();
    let sealer = Sealer::new(&key);
    let khex = const_hex::encode(key.expose_secret());
    let lines: Vec<String> = cases()
        .iter()
        .map(|(pt, aad)| format!("seal {khex} {} {}", hexd(aad), hexd(pt)))
        .collect();
    let out = peer.run(&lines);
    for ((pt, aad), envelope) in cases().iter().zip(&out) {
        let envelope = if envelope == "-" { "" } else { envelope };
        let envelope: Envelope = envelope.parse().unwrap();
        assert_eq!(sealer.open(&envelope, aad).unwrap().expose_secret(), pt);
        assert!(sealer.open(&envelope, b"another context").is_err());
    }
}

/// Field lists, including empty names and values, separators, non-ASCII
/// text and binary values.
fn field_lists() -> Vec<Vec<(String, Vec<u8>)>> {
    let mut lists: Vec<Vec<(String, Vec<u8>)>> = vec![
        vec![],
        vec![("".into(), vec![])],
        vec![
            ("call".into(), b"CA-1001".to_vec()),
            ("field".into(), b"pin".to_vec()),
        ],
        vec![
            ("call".into(), b"1;field=pin".to_vec()),
            ("field".into(), b"last4".to_vec()),
        ],
        vec![("appel".into(), "numéro-☎".as_bytes().to_vec())],
        vec![("bin".into(), (0..=255).collect())],
    ];
    let mut seed = [0u8; 64];
    getrandom::fill(&mut seed).unwrap();
    for chunk in seed.chunks(16) {
        let n = usize::from(chunk[0] % 5);
        lists.push(
            (0..n)
                .map(|i| {
                    (
                        format!("f{i}"),
                        chunk[..usize::from(chunk[i + 1] % 16)].to_vec(),
                    )
                })
                .collect(),
        );
    }
    lists
}

fn peer_builds_the_same_aad(peer: Peer) {
    if !peer.available() {
        return;
    }
    let lists = field_lists();
    let lines: Vec<String> = lists
        .iter()
        .map(|fields| {
            let mut line = String::from("aad");
            for (name, value) in fields {
                line += &format!(" {} {}", hexd(name.as_bytes()), hexd(value));
            }
            line
        })
        .collect();
    let out = peer.run(&lines);
    let key = Key::generate();
    let sealer = Sealer::new(&key);
    let khex = const_hex::encode(key.expose_secret());
    let mut opens = Vec::new();
    for (fields, got) in lists.iter().zip(&out) {
        let aad = fields
            .iter()
            .fold(Aad::new(), |aad, (name, value)| aad.field(name, value));
        assert_eq!(
            got,
            &hexd(aad.as_bytes()),
            "{peer:?} built other bytes for {fields:?}"
        );
        // The peer opens with the AAD it built itself.
        opens.push(format!(
            "open {khex} {got} {}",
            hexd(&sealer.seal(b"1234", aad.as_bytes()))
        ));
    }
    assert!(peer.run(&opens).iter().all(|pt| pt == &hexd(b"1234")));
}

/// Expiring envelopes open in the peer with the documented associated
/// data, and only before their expiry.
fn peer_opens_expiring_envelopes(peer: Peer) {
    if !peer.available() {
        return;
    }
    let key = Key::generate();
    let sealer = Sealer::new(&key);
    let khex = const_hex::encode(key.expose_secret());
    let now = 1_700_000_000u64;
    let mut lines = Vec::new();
    let mut expected = Vec::new();
    for (pt, aad) in cases() {
        let deadline = UNIX_EPOCH + Duration::from_secs(now + 300);
        let envelope = sealer.seal_until(&pt, &aad, deadline);
        for (at, opens) in [(now, true), (now + 299, true), (now + 300, false)] {
            lines.push(format!(
                "openexp {khex} {} {} {at}",
                hexd(&aad),
                hexd(&envelope)
            ));
            expected.push(if opens { hexd(&pt) } else { "ERR".into() });
        }
        // A changed expiry is a forgery there too.
        let mut moved = envelope.to_vec();
        moved[7] ^= 1;
        lines.push(format!(
            "openexp {khex} {} {} {now}",
            hexd(&aad),
            hexd(&moved)
        ));
        expected.push("ERR".into());
    }
    assert_eq!(peer.run(&lines), expected);
}

/// The peer computes the same pseudonyms from the documented construction.
fn peer_builds_the_same_pseudonym(peer: Peer) {
    if !peer.available() {
        return;
    }
    let root = Key::generate();
    let rhex = const_hex::encode(root.expose_secret());
    let inputs = [
        "+15551234567",
        "+15551234568",
        "",
        "alice@example.com",
        "☎ 42",
    ];
    let mut lines = Vec::new();
    let mut expected = Vec::new();
    for purpose in ["ivr/caller", "sms/recipient", ""] {
        let p = Pseudonymizer::new(&root, purpose);
        for input in inputs {
            lines.push(format!(
                "pseudonym {rhex} {} {}",
                hexd(purpose.as_bytes()),
                hexd(input.as_bytes())
            ));
            expected.push(p.pseudonym(input).to_string());
        }
    }
    assert_eq!(peer.run(&lines), expected);
}

macro_rules! interop_tests {
    ($($peer:ident => $module:ident),*) => {$(
        mod $module {
            use super::*;
            #[test]
            fn opens_what_pinseal_seals() {
                peer_opens_what_pinseal_seals(Peer::$peer);
            }
            #[test]
            fn seals_what_pinseal_opens() {
                pinseal_opens_what_peer_seals(Peer::$peer);
            }
            #[test]
            fn builds_the_same_aad() {
                peer_builds_the_same_aad(Peer::$peer);
            }
            #[test]
            fn opens_expiring_envelopes() {
                peer_opens_expiring_envelopes(Peer::$peer);
            }
            #[test]
            fn builds_the_same_pseudonym() {
                peer_builds_the_same_pseudonym(Peer::$peer);
            }
        }
    )*};
}

interop_tests!(Node => node, Python => python);
