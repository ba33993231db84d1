//! The OTP behavioural suite on the embedded `MemoryStore`, plus the
//! memory-store-specific bound and property tests.

mod common;

otp_suite!(Some(pinseal::otp::MemoryStore::new()));

mod bounds {
    use std::time::{Duration, UNIX_EPOCH};

    use pinseal::otp::{ManualClock, MemoryStore, Otp, Policy, Verdict};
    use pinseal::{Error, ExposeSecret, Key};
    use proptest::prelude::*;

    /// A store that expires entries by the clock it is given forgets an
    /// expired challenge one TTL after it expired (until then it answers
    /// `Expired`), and the subject's record once the window has ended too.
    #[test]
    fn expired_challenges_are_forgotten_one_ttl_later() {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let otp = Otp::with_parts(
            &Key::generate(),
            Policy::default(),
            MemoryStore::new(),
            clock.clone(),
        );
        let (id, code) = otp.issue("+15550600").unwrap();
        clock.advance(Duration::from_secs(20 * 60 - 1));
        assert_eq!(
            otp.verify(&id, code.expose_secret()).unwrap(),
            Verdict::Expired
        );
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            otp.verify(&id, code.expose_secret()).unwrap(),
            Verdict::Unknown
        );
        assert!(otp.store().is_empty(clock_now(&clock)));
    }

    /// A flood of issues that are never verified: the store never holds more
    /// than its capacity, refuses with a typed error when full, and frees
    /// itself once the flood's entries expire.
    #[test]
    fn memory_stays_bounded_under_a_flood() {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let policy = Policy::new(6, Duration::from_secs(60), 5)
            .unwrap()
            .with_send_budget(5, Duration::from_secs(120))
            .unwrap();
        let otp = Otp::with_parts(
            &Key::generate(),
            policy,
            MemoryStore::with_capacity(1_000),
            clock.clone(),
        );
        let now = || clock_now(&clock);
        let mut full = 0;
        for i in 0..5_000 {
            match otp.issue(&format!("flood-{i}")) {
                Ok(_) => {}
                Err(Error::StoreFull) => full += 1,
                Err(e) => panic!("unexpected {e}"),
            }
            assert!(otp.store().len(now()) <= 1_000);
            if i % 1_000 == 999 {
                clock.advance(Duration::from_secs(30));
            }
        }
        assert!(full > 0, "the cap was reached");
        // Every entry expires within max(ttl, window) = 120 s of its write.
        clock.advance(Duration::from_secs(120));
        assert_eq!(otp.store().len(now()), 0);
        let (id, code) = otp.issue("after-flood").unwrap();
        assert_eq!(
            otp.verify(&id, code.expose_secret()).unwrap(),
            Verdict::Approved
        );
    }

    /// Counters from a flood of distinct clients (checks, issues, rate
    /// limits) never take the room of challenges: live codes still verify
    /// and new ones are still issued, and the counters stay within their
    /// own pool.
    #[test]
    fn a_counter_flood_never_drops_or_refuses_challenges() {
        use pinseal::otp::RateLimit;
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let otp = Otp::with_parts(
            &Key::generate(),
            Policy::default(),
            MemoryStore::with_capacities(100, 50),
            clock.clone(),
        );
        let live: Vec<_> = (0..10)
            .map(|i| otp.issue(&format!("+1555010{i:04}")).unwrap())
            .collect();
        let per_ip = RateLimit::new("ip")
            .unwrap()
            .bucket(5, Duration::from_secs(3_600))
            .unwrap();
        for i in 0..20_000 {
            let client = format!("flood-{i}");
            // A check and an issue from a new client each time: each
            // leaves a counter behind.
            let _ = otp.check_from("+15550990000", &client, "000000").unwrap();
            if i % 1_000 == 0 {
                otp.issue_limited(&format!("+1555020{:04}", i / 1_000), &[per_ip.key(&client)])
                    .unwrap();
            }
            assert!(otp.store().len(clock_now(&clock)) <= 100 + 50);
        }
        for (id, code) in &live {
            assert_eq!(
                otp.verify(id, code.expose_secret()).unwrap(),
                Verdict::Approved
            );
        }
        assert!(otp.issue_from("+15550100099", "after-the-flood").is_ok());
    }

    fn clock_now(clock: &ManualClock) -> std::time::SystemTime {
        use pinseal::otp::Clock;
        clock.now()
    }

    proptest! {
        #[test]
        fn any_input_gives_a_verdict(inputs in prop::collection::vec(".{0,16}", 1..8)) {
            let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
            let otp = Otp::with_parts(&Key::from_bytes([1; 32]), Policy::default(), MemoryStore::new(), clock);
            let (id, code) = otp.issue("prop").unwrap();
            for input in &inputs {
                let verdict = otp.verify(&id, input).unwrap();
                if input == code.expose_secret() {
                    prop_assert!(matches!(verdict, Verdict::Approved | Verdict::Locked | Verdict::Unknown));
                } else {
                    prop_assert_ne!(verdict, Verdict::Approved);
                }
            }
        }

        #[test]
        fn challenge_ids_parse_only_when_well_formed(s in "(0x)?[0-9a-fA-F]{0,34}|.{0,40}") {
            match s.parse::<pinseal::otp::ChallengeId>() {
                Ok(id) => {
                    // 32 hex characters, or 34 with a slot byte.
                    prop_assert!(s.len() == 32 || s.len() == 34);
                    prop_assert_eq!(id.to_string(), s.to_lowercase());
                    prop_assert_eq!(id.as_bytes().len(), s.len() / 2);
                }
                Err(e) => prop_assert_eq!(e, Error::InvalidChallengeId),
            }
        }
    }

    #[test]
    fn challenge_ids_have_one_spelling() {
        let id = "00112233445566778899aabbccddeeff";
        assert!(id.parse::<pinseal::otp::ChallengeId>().is_ok());
        // Found by the `parse` fuzz target: a `0x` prefix was accepted.
        // (It makes 34 characters, the length of an id with a slot byte.)
        assert_eq!(
            format!("0x{id}").parse::<pinseal::otp::ChallengeId>(),
            Err(Error::InvalidChallengeId)
        );
        let slotted: pinseal::otp::ChallengeId = format!("{id}07").parse().unwrap();
        assert_eq!(slotted.as_bytes().last(), Some(&7));
        assert_ne!(slotted, id.parse().unwrap());
        assert_eq!(
            format!("{id}0").parse::<pinseal::otp::ChallengeId>(),
            Err(Error::InvalidChallengeId)
        );
    }
}
