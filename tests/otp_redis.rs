//! The OTP behavioural suite on `RedisStore`, plus what only a shared store
//! can show: several processes racing on one challenge, a Redis that goes
//! away and comes back, nothing in clear in raw keys, and the async store.
//!
//! Needs a Redis server (`PINSEAL_REDIS_URL`, default 127.0.0.1:6379). Under
//! CI (`CI` set) a missing Redis fails the tests; elsewhere they say
//! "SKIPPED" and return.
#![cfg(feature = "redis")]

mod common;

otp_suite!(common::redis_store());

mod redis_only {
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use pinseal::otp::{ManualClock, Otp, Policy, RedisStore, Verdict};
    use pinseal::{Error, Key};

    use crate::common::{redis_store, redis_url, unavailable, unique_prefix};

    fn chat() -> Policy {
        Policy::new(6, Duration::from_secs(60), 5).unwrap()
    }

    /// Raw keys and values, read with a plain Redis client: only HMACs,
    /// counters and timestamps, each with a TTL no longer than the policy.
    #[test]
    fn raw_keys_hold_nothing_in_clear() {
        let Some(store) = redis_store() else { return };
        let prefix = store.prefix().to_string();
        let otp = Otp::with_parts(
            &Key::from_bytes([6; 32]),
            chat(),
            store,
            pinseal::otp::SystemClock,
        );
        let subject = "+15559876543";
        let mut codes = Vec::new();
        for _ in 0..3 {
            codes.push(otp.issue(subject).unwrap());
        }
        otp.issue_from("+15559876544", "203.0.113.9").unwrap();
        let client = redis::Client::open(redis_url()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query(&mut conn)
            .unwrap();
        // Subject 1: its record, its newest challenge's index entry and the
        // one it replaced (the first was deleted by the third issue).
        // Subject 2: its record and index entry. The client: its record.
        assert_eq!(keys.len(), 6, "{keys:?}");
        let kinds = |k: &str| {
            keys.iter()
                .filter(|key| key[prefix.len()..].starts_with(k))
                .count()
        };
        assert_eq!((kinds("s:"), kinds("c:"), kinds("k:")), (2, 3, 1));
        for key in &keys {
            let value: Vec<u8> = redis::cmd("GET").arg(key).query(&mut conn).unwrap();
            let pttl: i64 = redis::cmd("PTTL").arg(key).query(&mut conn).unwrap();
            assert!(
                pttl > 0 && pttl <= 10 * 60 * 1000,
                "TTL set from the policy: {pttl}"
            );
            let everything = [key.as_bytes(), &value].concat();
            assert!(!contains(&everything, subject.as_bytes()));
            assert!(!contains(&everything, b"987654"));
            assert!(!contains(&everything, b"203.0.113.9"));
            for (id, code) in &codes {
                assert!(!contains(&everything, id.as_bytes()));
                assert!(!contains(&everything, id.to_string().as_bytes()));
                assert!(!contains(&everything, code.expose_secret().as_bytes()));
            }
        }
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    /// A private redis-server on a free port, stopped on drop.
    struct Server {
        port: u16,
        child: Option<Child>,
    }

    impl Server {
        fn start(port: u16) -> Option<Server> {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn();
            let Ok(child) = child else {
                unavailable("the redis-server binary");
                return None;
            };
            let server = Server {
                port,
                child: Some(child),
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while RedisStore::open(&server.url()).is_err() {
                assert!(Instant::now() < deadline, "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            Some(server)
        }
        fn url(&self) -> String {
            format!("redis://127.0.0.1:{}/", self.port)
        }
        fn stop(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Redis stopped mid-run: errors, never approvals; back again: the same
    /// store object works without being rebuilt.
    #[test]
    fn redis_down_gives_errors_and_recovers() {
        let port = free_port();
        let Some(mut server) = Server::start(port) else {
            return;
        };
        let store = RedisStore::open(&server.url())
            .unwrap()
            .with_timeout(Duration::from_millis(500));
        let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
        let otp = Otp::with_parts(&Key::from_bytes([4; 32]), chat(), store, clock);
        let (id, code) = otp.issue("+15550300").unwrap();

        server.stop();
        for _ in 0..3 {
            assert_eq!(otp.verify(&id, code.expose_secret()), Err(Error::Store));
            assert_eq!(otp.issue("+15550300").unwrap_err(), Error::Store);
        }

        let _server = Server::start(port).unwrap();
        // The new server is empty: the old challenge is gone, never approved.
        assert_eq!(otp.verify(&id, code.expose_secret()), Ok(Verdict::Unknown));
        let (id, code) = otp.issue("+15550300").unwrap();
        assert_eq!(otp.verify(&id, code.expose_secret()), Ok(Verdict::Approved));
    }

    #[cfg(feature = "redis-tokio")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_store_down_gives_errors_and_recovers() {
        use pinseal::otp::AsyncRedisStore;
        let port = free_port();
        let Some(mut server) = Server::start(port) else {
            return;
        };
        let store = AsyncRedisStore::open_with_timeout(&server.url(), Duration::from_millis(500))
            .await
            .unwrap();
        let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
        let otp = Otp::with_parts(&Key::from_bytes([4; 32]), chat(), store, clock);
        let (id, code) = otp.issue_async("+15550301").await.unwrap();
        server.stop();
        for _ in 0..3 {
            assert_eq!(
                otp.verify_async(&id, code.expose_secret()).await,
                Err(Error::Store)
            );
        }
        let _server = Server::start(port).unwrap();
        // The connection manager reconnects in the background; allow it a
        // bounded number of tries, none of which may approve the old code.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match otp.verify_async(&id, code.expose_secret()).await {
                Ok(verdict) => {
                    assert_eq!(verdict, Verdict::Unknown);
                    break;
                }
                Err(e) => {
                    assert_eq!(e, Error::Store);
                    assert!(Instant::now() < deadline, "no recovery");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let (id, code) = otp.issue_async("+15550301").await.unwrap();
        assert_eq!(
            otp.verify_async(&id, code.expose_secret()).await,
            Ok(Verdict::Approved)
        );
    }

    /// The async store, racing tasks: one approval per challenge.
    #[cfg(feature = "redis-tokio")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_concurrent_verifications_approve_exactly_once() {
        use pinseal::otp::AsyncRedisStore;
        let Ok(store) = AsyncRedisStore::open(&redis_url()).await else {
            unavailable("a Redis server");
            return;
        };
        let clock = ManualClock::new(Duration::from_secs(1_700_000_000));
        let otp = Arc::new(Otp::with_parts(
            &Key::from_bytes([5; 32]),
            chat(),
            store.with_prefix(unique_prefix()),
            clock,
        ));
        for round in 0..50 {
            let (id, code) = otp.issue_async(&format!("+1557{round:06}")).await.unwrap();
            let code = Arc::new(code);
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (otp, code) = (otp.clone(), code.clone());
                    tokio::spawn(async move {
                        otp.verify_async(&id, code.expose_secret()).await.unwrap()
                    })
                })
                .collect();
            let mut approved = 0;
            for t in tasks {
                match t.await.unwrap() {
                    Verdict::Approved => approved += 1,
                    Verdict::Unknown => {}
                    other => panic!("round {round}: {other:?}"),
                }
            }
            assert_eq!(approved, 1, "round {round}");
        }
    }
}
