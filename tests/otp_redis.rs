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
    use std::time::{Duration, Instant, UNIX_EPOCH};

    use pinseal::otp::store::RedisStore;
    use pinseal::otp::{ManualClock, Otp, Policy, Verdict};
    use pinseal::{Error, ExposeSecret, Key};

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
            Server::start_with(port, &[], None)
        }
        /// With extra arguments; `password` is what the readiness check
        /// logs in with.
        fn start_with(port: u16, args: &[&str], password: Option<&str>) -> Option<Server> {
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .args(args)
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
            let url = match password {
                Some(p) => format!("redis://:{p}@127.0.0.1:{port}/"),
                None => server.url(),
            };
            while RedisStore::builder().url(&url).connect().is_err() {
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
        let store = RedisStore::builder()
            .url(server.url())
            .timeout(Duration::from_millis(500))
            .connect()
            .unwrap();
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
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

    /// Redis restarted between two calls: the pooled connection is dead,
    /// and the very next call works on a fresh one instead of failing.
    #[test]
    fn the_first_call_after_a_restart_works() {
        let port = free_port();
        let Some(mut server) = Server::start(port) else {
            return;
        };
        let store = RedisStore::builder()
            .url(server.url())
            .timeout(TIMEOUT)
            .connect()
            .unwrap();
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let otp = Otp::with_parts(&Key::from_bytes([4; 32]), chat(), store, clock);
        let (id, code) = otp.issue("+15550304").unwrap();
        server.stop();
        let _server = Server::start(port).unwrap();
        // The restarted server is empty: unknown, never approved, no error.
        assert_eq!(otp.verify(&id, code.expose_secret()), Ok(Verdict::Unknown));
    }

    #[cfg(feature = "redis-tokio")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_store_down_gives_errors_and_recovers() {
        use pinseal::otp::store::AsyncRedisStore;
        let port = free_port();
        let Some(mut server) = Server::start(port) else {
            return;
        };
        let store = AsyncRedisStore::builder()
            .url(server.url())
            .timeout(Duration::from_millis(500))
            .connect()
            .await
            .unwrap();
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let otp =
            pinseal::otp::aio::Otp::with_parts(&Key::from_bytes([4; 32]), chat(), store, clock);
        let (id, code) = otp.issue("+15550301").await.unwrap();
        server.stop();
        for _ in 0..3 {
            assert_eq!(
                otp.verify(&id, code.expose_secret()).await,
                Err(Error::Store)
            );
        }
        let _server = Server::start(port).unwrap();
        // The connection manager reconnects in the background: within 2 s
        // of the server answering again the store works, and no try in
        // between approves the old code.
        let back = Instant::now();
        let deadline = back + Duration::from_secs(2);
        loop {
            match otp.verify(&id, code.expose_secret()).await {
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
        let (id, code) = otp.issue("+15550301").await.unwrap();
        assert_eq!(
            otp.verify(&id, code.expose_secret()).await,
            Ok(Verdict::Approved)
        );
    }

    const TIMEOUT: Duration = Duration::from_millis(500);

    /// Runs `f`, asserting it took at most twice `TIMEOUT`.
    fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = f();
        let took = start.elapsed();
        assert!(took <= 2 * TIMEOUT, "{what} took {took:?}");
        out
    }

    /// Opening fails fast and says why: nothing listening, a refused or
    /// missing password, a malformed URL; and no error shows the password.
    #[test]
    fn opening_is_bounded_and_says_why() {
        let closed = format!("redis://127.0.0.1:{}/", free_port());
        let err = bounded("open, nothing listening", || {
            RedisStore::builder()
                .url(closed)
                .timeout(TIMEOUT)
                .connect()
                .err()
        });
        assert_eq!(err, Some(Error::Store));
        assert_eq!(
            RedisStore::builder().url("not a redis url").connect().err(),
            Some(Error::StoreConfig)
        );

        let port = free_port();
        let Some(_server) = Server::start_with(
            port,
            &["--requirepass", "s3cret-right"],
            Some("s3cret-right"),
        ) else {
            return;
        };
        for (url, want) in [
            (
                format!("redis://:wrong-pass@127.0.0.1:{port}/"),
                Err(Error::StoreAuth),
            ),
            (format!("redis://127.0.0.1:{port}/"), Err(Error::StoreAuth)),
            (format!("redis://:s3cret-right@127.0.0.1:{port}/"), Ok(())),
        ] {
            let got = bounded("open with credentials", || {
                RedisStore::builder().url(url).timeout(TIMEOUT).connect()
            });
            if let Err(e) = &got {
                let shown = format!("{e} {e:?} {:?}", got.as_ref().err());
                assert!(
                    !shown.contains("wrong-pass") && !shown.contains("s3cret"),
                    "{shown}"
                );
            } else {
                let shown = format!("{:?}", got.as_ref().unwrap());
                assert!(!shown.contains("s3cret"), "{shown}");
            }
            assert_eq!(got.map(|_| ()), want, "{want:?}");
        }
    }

    /// A server that stops answering (`CLIENT PAUSE ... ALL`): opening and every
    /// operation on a pooled connection end within the timeout; when it
    /// answers again the same store works.
    #[test]
    fn a_paused_server_bounds_every_operation() {
        let port = free_port();
        let Some(server) = Server::start(port) else {
            return;
        };
        let store = RedisStore::builder()
            .url(server.url())
            .timeout(TIMEOUT)
            .connect()
            .unwrap();
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let otp = Otp::with_parts(&Key::from_bytes([4; 32]), chat(), store, clock);
        let (id, code) = otp.issue("+15550302").unwrap();

        // `CLIENT PAUSE` answers once every other client's commands wait.
        let paused_at = Instant::now();
        pause(&server.url(), PAUSE);
        let err = bounded("verify on a paused server", || {
            otp.verify(&id, code.expose_secret())
        });
        assert_eq!(err, Err(Error::Store));
        let err = bounded("issue on a paused server", || otp.issue("+15550302"));
        assert_eq!(err.err(), Some(Error::Store));
        let err = bounded("open on a paused server", || {
            RedisStore::builder()
                .url(server.url())
                .timeout(TIMEOUT)
                .connect()
                .err()
        });
        assert_eq!(err, Some(Error::Store));
        std::thread::sleep(PAUSE.saturating_sub(paused_at.elapsed()));
        // Awake again: the code, which nothing consumed, still verifies.
        assert_eq!(otp.verify(&id, code.expose_secret()), Ok(Verdict::Approved));
    }

    const PAUSE: Duration = Duration::from_secs(3);

    /// Makes the server at `url` hold every other client's commands for
    /// `how_long`; returns once the pause is in effect.
    fn pause(url: &str, how_long: Duration) {
        let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
        let _: () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(how_long.as_millis() as u64)
            .arg("ALL")
            .query(&mut conn)
            .unwrap();
    }

    #[cfg(feature = "redis-tokio")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_opening_and_pauses_are_bounded() {
        use pinseal::otp::store::AsyncRedisStore;
        async fn timed<T>(what: &str, f: impl Future<Output = T>) -> T {
            let start = Instant::now();
            let out = f.await;
            assert!(
                start.elapsed() <= 2 * TIMEOUT,
                "{what} took {:?}",
                start.elapsed()
            );
            out
        }
        let closed = format!("redis://127.0.0.1:{}/", free_port());
        let err = timed(
            "open, nothing listening",
            AsyncRedisStore::builder()
                .url(closed)
                .timeout(TIMEOUT)
                .connect(),
        )
        .await;
        assert_eq!(err.err(), Some(Error::Store));

        let port = free_port();
        let Some(server) = Server::start_with(
            port,
            &["--requirepass", "s3cret-right"],
            Some("s3cret-right"),
        ) else {
            return;
        };
        let wrong = format!("redis://:wrong-pass@127.0.0.1:{port}/");
        let err = timed(
            "open, wrong password",
            AsyncRedisStore::builder()
                .url(wrong)
                .timeout(TIMEOUT)
                .connect(),
        )
        .await;
        assert_eq!(err.err(), Some(Error::StoreAuth));
        let none = format!("redis://127.0.0.1:{port}/");
        let err = timed(
            "open, no password",
            AsyncRedisStore::builder()
                .url(none)
                .timeout(TIMEOUT)
                .connect(),
        )
        .await;
        assert_eq!(err.err(), Some(Error::StoreAuth));

        let url = format!("redis://:s3cret-right@127.0.0.1:{port}/");
        let store = AsyncRedisStore::builder()
            .url(&url)
            .timeout(TIMEOUT)
            .connect()
            .await
            .unwrap();
        assert!(!format!("{store:?}").contains("s3cret"));
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let otp =
            pinseal::otp::aio::Otp::with_parts(&Key::from_bytes([4; 32]), chat(), store, clock);
        let (id, code) = otp.issue("+15550303").await.unwrap();
        let paused_at = Instant::now();
        pause(&url, PAUSE);
        let err = timed(
            "verify on a paused server",
            otp.verify(&id, code.expose_secret()),
        )
        .await;
        assert_eq!(err, Err(Error::Store));
        let err = timed("issue on a paused server", otp.issue("+15550303")).await;
        assert_eq!(err.err(), Some(Error::Store));
        tokio::time::sleep(PAUSE.saturating_sub(paused_at.elapsed())).await;
        // Awake again: within 2 s the store answers, and the code, which
        // nothing consumed, still verifies.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match otp.verify(&id, code.expose_secret()).await {
                Ok(verdict) => {
                    assert_eq!(verdict, Verdict::Approved);
                    break;
                }
                Err(e) => {
                    assert_eq!(e, Error::Store);
                    assert!(Instant::now() < deadline, "no recovery within 2 s");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        drop(server);
    }

    /// The async store, racing tasks: one approval per challenge.
    #[cfg(feature = "redis-tokio")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_concurrent_verifications_approve_exactly_once() {
        use pinseal::otp::store::AsyncRedisStore;
        let store = AsyncRedisStore::builder()
            .url(redis_url())
            .prefix(unique_prefix())
            .connect()
            .await;
        let Ok(store) = store else {
            unavailable("a Redis server");
            return;
        };
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let otp = Arc::new(pinseal::otp::aio::Otp::with_parts(
            &Key::from_bytes([5; 32]),
            chat(),
            store,
            clock,
        ));
        for round in 0..50 {
            let (id, code) = otp.issue(&format!("+1557{round:06}")).await.unwrap();
            let code = Arc::new(code);
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (otp, code) = (otp.clone(), code.clone());
                    tokio::spawn(
                        async move { otp.verify(&id, code.expose_secret()).await.unwrap() },
                    )
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

    /// The async accept-once set, racing tasks: one admission per key.
    #[cfg(feature = "redis-tokio")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_accept_once_admits_each_key_once() {
        use pinseal::otp::store::AsyncRedisStore;
        let store = AsyncRedisStore::builder()
            .url(redis_url())
            .prefix(unique_prefix())
            .connect()
            .await;
        let Ok(store) = store else {
            unavailable("a Redis server");
            return;
        };
        let once = Arc::new(pinseal::otp::aio::AcceptOnce::with_store(
            &Key::from_bytes([6; 32]),
            store,
        ));
        for round in 0..50 {
            let key = format!("CA{round}");
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (once, key) = (once.clone(), key.clone());
                    tokio::spawn(async move {
                        once.admit(&[key.as_str()], Duration::from_secs(60))
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let mut admitted = 0;
            for t in tasks {
                admitted += usize::from(t.await.unwrap());
            }
            assert_eq!(admitted, 1, "round {round}");
        }
    }
}
