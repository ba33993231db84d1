//! The OTP behavioural suite on a real Redis Cluster (three primaries), the
//! async store on it, the wrong constructor for each kind of node, and a
//! live challenge whose slot moves to another primary mid-verification.
//!
//! Needs the cluster `.ci/redis_cluster.sh` starts (`PINSEAL_REDIS_CLUSTER`,
//! default 127.0.0.1:7001-7003). Under CI a missing cluster fails the tests;
//! elsewhere they say "SKIPPED" and return.
#![cfg(feature = "redis")]

mod common;

otp_suite!(common::redis_cluster_store());

mod cluster_only {
    use std::collections::HashSet;
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, UNIX_EPOCH};

    use pinseal::otp::store::RedisStore;
    use pinseal::otp::{ManualClock, Otp, Policy, Verdict};
    use pinseal::{Error, ExposeSecret, Key};
    use redis::{Connection, FromRedisValue};

    use crate::common::{redis_cluster_store, redis_cluster_urls, redis_url};

    fn urls() -> Vec<String> {
        redis_cluster_urls()
    }

    fn node(url: &str) -> Connection {
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    fn cmd<T: FromRedisValue>(conn: &mut Connection, args: &[&str]) -> T {
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query(conn).unwrap()
    }

    #[test]
    fn the_wrong_constructor_is_a_configuration_error() {
        if redis_cluster_store().is_none() {
            return;
        }
        let seed = urls()[0].clone();
        assert_eq!(
            RedisStore::builder().url(seed).connect().err(),
            Some(Error::StoreConfig)
        );
        assert_eq!(
            RedisStore::builder()
                .cluster([redis_url().as_str()])
                .connect()
                .err(),
            Some(Error::StoreConfig)
        );
        assert_eq!(
            RedisStore::builder()
                .cluster(Vec::<String>::new())
                .connect()
                .err(),
            Some(Error::StoreConfig)
        );
    }

    /// The blocking cluster store drives a small runtime of its own per
    /// call; called (and dropped) from inside an async runtime, where that
    /// is not allowed on the runtime's own threads, it still works.
    #[tokio::test(flavor = "current_thread")]
    async fn the_blocking_store_works_inside_an_async_runtime() {
        let Some(store) = redis_cluster_store() else {
            return;
        };
        let otp = Otp::with_parts(
            &Key::from_bytes([11; 32]),
            Policy::default(),
            store,
            pinseal::otp::SystemClock,
        );
        let (id, code) = otp.issue("+15550042").unwrap();
        assert_eq!(
            otp.verify(&id, code.expose_secret()).unwrap(),
            Verdict::Approved
        );
        drop(otp);
    }

    #[cfg(feature = "redis-tokio")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn async_store_on_the_cluster() {
        use pinseal::otp::store::AsyncRedisStore;
        if redis_cluster_store().is_none() {
            return;
        }
        let urls = urls();
        let seeds: Vec<&str> = urls.iter().map(String::as_str).collect();
        assert_eq!(
            AsyncRedisStore::builder()
                .url(seeds[0])
                .connect()
                .await
                .err(),
            Some(Error::StoreConfig)
        );
        assert_eq!(
            AsyncRedisStore::builder()
                .cluster([redis_url().as_str()])
                .connect()
                .await
                .err(),
            Some(Error::StoreConfig)
        );
        let store = AsyncRedisStore::builder()
            .cluster(seeds)
            .prefix(crate::common::unique_prefix())
            .connect()
            .await
            .unwrap();
        let otp = Arc::new(pinseal::otp::aio::Otp::with_parts(
            &Key::from_bytes([7; 32]),
            Policy::new(6, Duration::from_secs(60), 5).unwrap(),
            store,
            pinseal::otp::SystemClock,
        ));
        for round in 0..50 {
            let subject = format!("+1557{round:06}");
            let (id, code) = otp.issue(&subject).await.unwrap();
            let code = Arc::new(code);
            let tasks: Vec<_> = (0..8)
                .map(|i| {
                    let (otp, code, subject) = (otp.clone(), code.clone(), subject.clone());
                    tokio::spawn(async move {
                        if i % 2 == 0 {
                            otp.verify(&id, code.expose_secret()).await
                        } else {
                            otp.check(&subject, code.expose_secret()).await
                        }
                    })
                })
                .collect();
            let mut approved = 0;
            for t in tasks {
                match t.await.unwrap().unwrap() {
                    Verdict::Approved => approved += 1,
                    Verdict::Unknown => {}
                    other => panic!("round {round}: {other:?}"),
                }
            }
            assert_eq!(approved, 1, "round {round}");
        }
    }

    /// The node (URL and id) that owns `slot`, from `CLUSTER SHARDS`-free
    /// `CLUSTER NODES` output.
    fn owner(conn: &mut Connection, slot: u16) -> (String, String) {
        let nodes: String = cmd(conn, &["CLUSTER", "NODES"]);
        for line in nodes.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            let addr = f[1].split('@').next().unwrap();
            for range in &f[8..] {
                let (lo, hi) = match range.split_once('-') {
                    Some((lo, hi)) => (lo.parse::<u16>(), hi.parse::<u16>()),
                    None => (range.parse::<u16>(), range.parse::<u16>()),
                };
                if let (Ok(lo), Ok(hi)) = (lo, hi) {
                    if (lo..=hi).contains(&slot) {
                        return (format!("redis://{addr}/"), f[0].to_string());
                    }
                }
            }
        }
        panic!("no owner for slot {slot}");
    }

    /// Moves `slot` from its owner to another primary the way
    /// `redis-cli --cluster reshard` does: IMPORTING/MIGRATING, MIGRATE of
    /// its keys, then SETSLOT NODE on every primary. `during` runs while
    /// the slot is half moved (its keys already on the target, clients
    /// redirected with ASK).
    fn move_slot(slot: u16, during: impl FnOnce()) -> String {
        let urls = urls();
        let mut seed = node(&urls[0]);
        let (src_url, src_id) = owner(&mut seed, slot);
        let (dst_url, dst_id) = urls
            .iter()
            .map(|u| {
                let mut c = node(u);
                let id: String = cmd(&mut c, &["CLUSTER", "MYID"]);
                (u.clone(), id)
            })
            .find(|(_, id)| *id != src_id)
            .unwrap();
        let (mut src, mut dst) = (node(&src_url), node(&dst_url));
        let slot_s = slot.to_string();
        let _: () = cmd(
            &mut dst,
            &["CLUSTER", "SETSLOT", &slot_s, "IMPORTING", &src_id],
        );
        let _: () = cmd(
            &mut src,
            &["CLUSTER", "SETSLOT", &slot_s, "MIGRATING", &dst_id],
        );
        let keys: Vec<String> = cmd(&mut src, &["CLUSTER", "GETKEYSINSLOT", &slot_s, "1000"]);
        assert!(!keys.is_empty(), "the slot holds the challenge's keys");
        let dst_port = dst_url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        let mut migrate = vec!["MIGRATE", "127.0.0.1", &dst_port, "", "0", "5000", "KEYS"];
        migrate.extend(keys.iter().map(String::as_str));
        let _: () = cmd(&mut src, &migrate);
        // Assign the slot to the target on every primary when done, even
        // if `during` panics: the other tests in this binary share the
        // cluster.
        let finish = Finish {
            urls: urls.clone(),
            slot: slot_s.clone(),
            dst_id: dst_id.clone(),
        };
        during();
        drop(finish);
        dst_url
    }

    struct Finish {
        urls: Vec<String>,
        slot: String,
        dst_id: String,
    }

    impl Drop for Finish {
        fn drop(&mut self) {
            for u in &self.urls {
                let _ = redis::cmd("CLUSTER")
                    .arg("SETSLOT")
                    .arg(&self.slot)
                    .arg("NODE")
                    .arg(&self.dst_id)
                    .query::<()>(&mut node(u));
            }
        }
    }

    /// The slot of the subject's record, and the primary that owns it.
    fn record_slot(prefix: &str) -> (u16, String) {
        let record = urls()
            .iter()
            .flat_map(|u| {
                let keys: Vec<String> = cmd(&mut node(u), &["KEYS", &format!("{prefix}{{??}}s:*")]);
                keys
            })
            .collect::<HashSet<_>>();
        assert_eq!(record.len(), 1);
        let record = record.into_iter().next().unwrap();
        let mut seed = node(&urls()[0]);
        let slot: u16 = cmd(&mut seed, &["CLUSTER", "KEYSLOT", &record]);
        let (owner, _) = owner(&mut seed, slot);
        (slot, owner)
    }

    /// As the blocking test below, with eight async tasks sharing one
    /// multiplexed connection: each needs `ASKING` right before its
    /// command while the slot is half moved.
    #[cfg(feature = "redis-tokio")]
    #[test]
    fn an_async_challenge_whose_slot_moves_is_approved_exactly_once() {
        use pinseal::otp::store::AsyncRedisStore;
        if redis_cluster_store().is_none() {
            return;
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let seeds = urls();
        let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
        let prefix = crate::common::unique_prefix();
        let store = rt
            .block_on(
                AsyncRedisStore::builder()
                    .cluster(seeds)
                    .prefix(prefix.clone())
                    .connect(),
            )
            .unwrap();
        let otp = Arc::new(pinseal::otp::aio::Otp::with_parts(
            &Key::from_bytes([10; 32]),
            Policy::new(6, Duration::from_secs(60), 5).unwrap(),
            store,
            pinseal::otp::SystemClock,
        ));
        let subject = "+15550041";
        let (id, code) = rt.block_on(otp.issue(subject)).unwrap();
        let code = Arc::new(code);
        let (slot, before) = record_slot(&prefix);
        let after = move_slot(slot, || {
            let verdicts: Vec<Verdict> = rt.block_on(async {
                let tasks: Vec<_> = (0..8)
                    .map(|i| {
                        let (otp, code) = (otp.clone(), code.clone());
                        tokio::spawn(async move {
                            if i % 2 == 0 {
                                otp.verify(&id, code.expose_secret()).await
                            } else {
                                otp.check(subject, code.expose_secret()).await
                            }
                        })
                    })
                    .collect();
                let mut verdicts = Vec::new();
                for t in tasks {
                    verdicts.push(t.await.unwrap().unwrap());
                }
                verdicts
            });
            let approved = verdicts.iter().filter(|v| **v == Verdict::Approved).count();
            assert_eq!(approved, 1, "{verdicts:?}");
        });
        assert_ne!(before, after, "the slot moved to another primary");
        rt.block_on(async {
            assert_eq!(
                otp.verify(&id, code.expose_secret()).await.unwrap(),
                Verdict::Unknown
            );
            let (id, code) = otp.issue(subject).await.unwrap();
            assert_eq!(
                otp.verify(&id, code.expose_secret()).await.unwrap(),
                Verdict::Approved
            );
        });
    }

    #[test]
    fn a_challenge_whose_slot_moves_is_approved_exactly_once() {
        let Some(store) = redis_cluster_store() else {
            return;
        };
        let prefix = store.prefix().to_string();
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let otp = Otp::with_parts(
            &Key::from_bytes([8; 32]),
            Policy::new(6, Duration::from_secs(60), 5).unwrap(),
            store,
            clock,
        );
        let subject = "+15550040";
        let (id, code) = otp.issue(subject).unwrap();
        let wrong: String = code
            .expose_secret()
            .bytes()
            .map(|b| char::from(b'0' + (b - b'0' + 1) % 10))
            .collect();

        // The subject's record: the key the verification's swap writes.
        let (slot, before) = record_slot(&prefix);

        let after = move_slot(slot, || {
            // Half moved: a wrong guess, then eight racers with the code.
            assert_eq!(
                otp.verify(&id, &wrong).unwrap(),
                Verdict::Rejected { attempts_left: 4 }
            );
            let barrier = Barrier::new(8);
            let verdicts: Vec<Verdict> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|i| {
                        let (otp, barrier, id, code) = (&otp, &barrier, &id, &code);
                        s.spawn(move || {
                            barrier.wait();
                            if i % 2 == 0 {
                                otp.verify(id, code.expose_secret()).unwrap()
                            } else {
                                otp.check(subject, code.expose_secret()).unwrap()
                            }
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let approved = verdicts.iter().filter(|v| **v == Verdict::Approved).count();
            assert_eq!(approved, 1, "{verdicts:?}");
            assert!(
                verdicts
                    .iter()
                    .all(|v| matches!(v, Verdict::Approved | Verdict::Unknown)),
                "{verdicts:?}"
            );
        });
        assert_ne!(before, after, "the slot moved to another primary");
        let (now_owner, _) = owner(&mut node(&urls()[0]), slot);
        assert_eq!(now_owner, after);

        // After the move (MOVED from the old owner): the spent code stays
        // spent and a new one works.
        assert_eq!(
            otp.verify(&id, code.expose_secret()).unwrap(),
            Verdict::Unknown
        );
        let (id, code) = otp.issue(subject).unwrap();
        assert_eq!(
            otp.verify(&id, code.expose_secret()).unwrap(),
            Verdict::Approved
        );
    }
}
