//! TLS to Redis (feature `redis-tls`): a `redis-server --tls-port` with a CA
//! and a server certificate this test generates. Trusted through the CA, the
//! store works, blocking and async; a server whose certificate the client
//! does not trust is refused with `Error::StoreTls`, and a plain-text client
//! on the TLS port gets no approval.
//!
//! Needs `redis-server` built with TLS (Debian's is). Under CI its absence
//! fails the test; elsewhere it says "SKIPPED" and returns.
#![cfg(feature = "redis-tls")]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use pinseal::otp::store::RedisStore;
use pinseal::otp::{ManualClock, Otp, Policy, Verdict};
use pinseal::{Error, ExposeSecret, Key};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};

/// A CA and a certificate for 127.0.0.1 and localhost signed by it, written
/// as PEM files into `dir`; returns the CA's PEM.
fn make_pki(dir: &Path) -> String {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    ca.pem()
}

struct TlsServer {
    port: u16,
    child: Child,
    _dir: PathBuf,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TLS-only redis-server with fresh certificates, and the CA's PEM.
fn start() -> Option<(TlsServer, String)> {
    let dir = std::env::temp_dir()
        .join(format!("pinseal-tls-{}", common::unique_prefix()))
        .to_string_lossy()
        .replace(':', "-");
    let dir = PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = make_pki(&dir);
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", "0", "--bind", "127.0.0.1"])
        .args(["--tls-port", &port.to_string()])
        .arg("--tls-cert-file")
        .arg(dir.join("server.pem"))
        .arg("--tls-key-file")
        .arg(dir.join("server.key"))
        .arg("--tls-ca-cert-file")
        .arg(dir.join("ca.pem"))
        .args([
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn();
    let Ok(child) = child else {
        common::unavailable("the redis-server binary");
        return None;
    };
    let server = TlsServer {
        port,
        child,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            common::unavailable("redis-server with TLS support");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((server, ca))
}

fn trusted_client(port: u16, ca: &str) -> redis::Client {
    redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}/"),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(ca.as_bytes().to_vec()),
        },
    )
    .unwrap()
}

fn clock() -> ManualClock {
    ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

fn policy() -> Policy {
    Policy::new(6, Duration::from_secs(60), 5).unwrap()
}

fn otp<S: pinseal::otp::store::Store>(store: S) -> Otp<S, ManualClock> {
    Otp::with_parts(&Key::from_bytes([11; 32]), policy(), store, clock())
}

#[test]
fn trusted_tls_works_and_untrusted_is_refused() {
    let Some((server, ca)) = start() else { return };
    let port = server.port;
    let timeout = Duration::from_secs(2);

    let store = RedisStore::builder()
        .client(trusted_client(port, &ca))
        .timeout(timeout)
        .prefix(common::unique_prefix())
        .connect()
        .unwrap();
    let otp = otp(store);
    let (id, code) = otp.issue("+15550500").unwrap();
    assert_eq!(
        otp.verify(&id, code.expose_secret()).unwrap(),
        Verdict::Approved
    );

    // The system's roots do not include this test CA.
    let url = format!("rediss://127.0.0.1:{port}/");
    assert_eq!(
        RedisStore::builder().url(url).connect().err(),
        Some(Error::StoreTls)
    );
    // Another CA's trust is no trust either.
    let other_dir = std::env::temp_dir().join(format!("pinseal-tls-other-{port}"));
    std::fs::create_dir_all(&other_dir).unwrap();
    let other_ca = make_pki(&other_dir);
    let _ = std::fs::remove_dir_all(&other_dir);
    assert_eq!(
        RedisStore::builder()
            .client(trusted_client(port, &other_ca))
            .timeout(timeout)
            .connect()
            .err(),
        Some(Error::StoreTls)
    );
    // Plain text on the TLS port: an error, never a store.
    let plain = format!("redis://127.0.0.1:{port}/");
    assert_eq!(
        RedisStore::builder()
            .url(plain)
            .timeout(Duration::from_millis(500))
            .connect()
            .err(),
        Some(Error::Store)
    );
}

#[cfg(feature = "redis-tokio")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_tls_works_and_untrusted_is_refused() {
    use pinseal::otp::store::AsyncRedisStore;
    let Some((server, ca)) = start() else { return };
    let port = server.port;
    let store = AsyncRedisStore::builder()
        .client(trusted_client(port, &ca))
        .timeout(Duration::from_secs(2))
        .prefix(common::unique_prefix())
        .connect()
        .await
        .unwrap();
    let otp =
        pinseal::otp::aio::Otp::with_parts(&Key::from_bytes([11; 32]), policy(), store, clock());
    let (id, code) = otp.issue("+15550501").await.unwrap();
    assert_eq!(
        otp.verify(&id, code.expose_secret()).await.unwrap(),
        Verdict::Approved
    );
    let url = format!("rediss://127.0.0.1:{port}/");
    assert_eq!(
        AsyncRedisStore::builder().url(url).connect().await.err(),
        Some(Error::StoreTls)
    );
}
