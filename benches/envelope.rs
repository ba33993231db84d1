//! Seal and open against the two baselines a user would otherwise pick, in
//! the same process and the same criterion group:
//!
//! - `ring`: `LessSafeKey` AES-256-GCM with a nonce from
//!   `ring::rand::SystemRandom`, output assembled as a pinseal envelope;
//! - `aes-gcm`: the raw RustCrypto crate with a nonce from `getrandom`.
//!
//! pinseal runs on the engine this bench picks from its features:
//! `AwsLc` with `aws-lc-rs`, else `Ring` with `ring`, else the default
//! `AesGcm` (the library itself never switches engines on a feature).
//!
//! Run: `cargo bench --bench envelope [--features ring|aws-lc-rs]`;
//! `benches/compare.sh [ENGINE]` turns the results into the ratio table of
//! BENCHMARKS.md.

use std::hint::black_box;

use aes_gcm::aead::{AeadInOut, KeyInit};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pinseal::envelope::{Engine, OVERHEAD};
use pinseal::{Key, Seal, Sealer};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

#[cfg(feature = "aws-lc-rs")]
type Pinseal = pinseal::envelope::AwsLc;
#[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
type Pinseal = pinseal::envelope::Ring;
#[cfg(not(any(feature = "ring", feature = "aws-lc-rs")))]
type Pinseal = pinseal::envelope::AesGcm;

const SIZES: [usize; 6] = [4, 16, 64, 1024, 16 * 1024, 1024 * 1024];
const AAD: &[u8] = b"call=CA-1001;field=pin";

struct RingSealer {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl RingSealer {
    fn new(key: &[u8; 32]) -> Self {
        RingSealer {
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap()),
            rng: SystemRandom::new(),
        }
    }
    /// nonce || ciphertext || tag, like a pinseal envelope.
    fn seal(&self, pt: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).unwrap();
        let mut out = Vec::with_capacity(pt.len() + OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(pt);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut out[NONCE_LEN..],
            )
            .unwrap();
        out.extend_from_slice(tag.as_ref());
        out
    }
    fn open(&self, envelope: &[u8]) -> Vec<u8> {
        let nonce = Nonce::try_assume_unique_for_key(&envelope[..NONCE_LEN]).unwrap();
        let mut buf = envelope[NONCE_LEN..].to_vec();
        let len = self
            .key
            .open_in_place(nonce, Aad::from(AAD), &mut buf)
            .unwrap()
            .len();
        buf.truncate(len);
        buf
    }
}

struct RawAesGcm {
    cipher: aes_gcm::Aes256Gcm,
}

impl RawAesGcm {
    fn seal(&self, pt: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; pt.len() + OVERHEAD];
        getrandom::fill(&mut out[..12]).unwrap();
        let (nonce, rest) = out.split_at_mut(12);
        let (body, tag_out) = rest.split_at_mut(pt.len());
        body.copy_from_slice(pt);
        let nonce = aes_gcm::Nonce::try_from(&*nonce).unwrap();
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce, AAD, body.into())
            .unwrap();
        tag_out.copy_from_slice(&tag);
        out
    }
    fn open(&self, envelope: &[u8]) -> Vec<u8> {
        let (nonce, rest) = envelope.split_at(12);
        let (ct, tag) = rest.split_at(rest.len() - 16);
        let mut buf = ct.to_vec();
        let nonce = aes_gcm::Nonce::try_from(nonce).unwrap();
        let tag = aes_gcm::Tag::try_from(tag).unwrap();
        self.cipher
            .decrypt_inout_detached(&nonce, AAD, buf.as_mut_slice().into(), &tag)
            .unwrap();
        buf
    }
}

fn envelope(c: &mut Criterion) {
    eprintln!("pinseal engine: {}", Pinseal::NAME);
    let key_bytes = [0x42u8; 32];
    let sealer = Sealer::<Pinseal>::with_engine(&Key::from_bytes(key_bytes));
    let ring = RingSealer::new(&key_bytes);
    let raw = RawAesGcm {
        cipher: aes_gcm::Aes256Gcm::new(&key_bytes.into()),
    };

    for size in SIZES {
        let pt = vec![0x5au8; size];
        let envelope = sealer.seal(&pt, AAD);
        let mut out = vec![0u8; size + OVERHEAD];
        let mut back = vec![0u8; size];

        let mut g = c.benchmark_group(format!("envelope/{size}"));
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 16 * 1024 {
            g.sample_size(20);
        }
        g.bench_function(BenchmarkId::new("seal", "pinseal"), |b| {
            b.iter(|| sealer.seal(black_box(&pt), AAD))
        });
        g.bench_function(BenchmarkId::new("seal_into", "pinseal"), |b| {
            b.iter(|| sealer.seal_into(black_box(&pt), AAD, &mut out).unwrap())
        });
        g.bench_function(BenchmarkId::new("seal_hex", "pinseal"), |b| {
            b.iter(|| sealer.seal(black_box(&pt), AAD).to_string())
        });
        g.bench_function(BenchmarkId::new("seal", "ring"), |b| {
            b.iter(|| ring.seal(black_box(&pt)))
        });
        g.bench_function(BenchmarkId::new("seal", "aes-gcm"), |b| {
            b.iter(|| raw.seal(black_box(&pt)))
        });
        g.bench_function(BenchmarkId::new("open", "pinseal"), |b| {
            b.iter(|| sealer.open(black_box(&envelope), AAD).unwrap())
        });
        g.bench_function(BenchmarkId::new("open_into", "pinseal"), |b| {
            b.iter(|| {
                sealer
                    .open_into(black_box(&envelope), AAD, &mut back)
                    .unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("open", "ring"), |b| {
            b.iter(|| ring.open(black_box(&envelope)))
        });
        g.bench_function(BenchmarkId::new("open", "aes-gcm"), |b| {
            b.iter(|| raw.open(black_box(&envelope)))
        });
        g.finish();
    }
}

/// The two nonce sources (the pool, then `use_os_nonces`, which cannot be
/// undone: this group runs last) on a PIN-sized seal, beside the raw `aes-gcm` crate (whose nonce is one
/// `getrandom` call, as the OS source's is).
fn nonces(c: &mut Criterion) {
    use pinseal::envelope::use_os_nonces;
    let key_bytes = [0x42u8; 32];
    let sealer = Sealer::<Pinseal>::with_engine(&Key::from_bytes(key_bytes));
    let raw = RawAesGcm {
        cipher: aes_gcm::Aes256Gcm::new(&key_bytes.into()),
    };
    let pt = [0x5au8; 4];
    let mut g = c.benchmark_group("nonces/4");
    g.bench_function(BenchmarkId::new("seal", "pool"), |b| {
        b.iter(|| sealer.seal(black_box(&pt), AAD))
    });
    // For good: this group runs after every pool measurement.
    use_os_nonces();
    g.bench_function(BenchmarkId::new("seal", "os"), |b| {
        b.iter(|| sealer.seal(black_box(&pt), AAD))
    });
    g.bench_function(BenchmarkId::new("seal", "aes-gcm"), |b| {
        b.iter(|| raw.seal(black_box(&pt)))
    });
    g.finish();
}

/// What a forged PIN-sized envelope costs a keyring: one tag check per
/// key, at one key and at the cap (`Keyring::MAX_KEYS`).
fn keyring(c: &mut Criterion) {
    use pinseal::Keyring;
    let keys: Vec<Key> = (1..=Keyring::<Pinseal>::MAX_KEYS as u8)
        .map(|i| Key::from_bytes([i; 32]))
        .collect();
    let one = Keyring::<Pinseal>::with_engine(&keys[0]);
    let full = keys[1..]
        .iter()
        .fold(Keyring::<Pinseal>::with_engine(&keys[0]), |r, k| {
            r.with_previous(k).unwrap()
        });
    let mut forged = Sealer::<Pinseal>::with_engine(&keys[0])
        .seal(b"1234", AAD)
        .into_bytes();
    forged[12] ^= 1;
    let mut g = c.benchmark_group("keyring/forged");
    g.bench_function(BenchmarkId::new("open", "1 key"), |b| {
        b.iter(|| one.open(black_box(&forged), AAD).unwrap_err())
    });
    g.bench_function(
        BenchmarkId::new("open", format!("{} keys", Keyring::<Pinseal>::MAX_KEYS)),
        |b| b.iter(|| full.open(black_box(&forged), AAD).unwrap_err()),
    );
    g.finish();
}

criterion_group!(benches, envelope, keyring, nonces);
criterion_main!(benches);
