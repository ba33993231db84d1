//! OTP verification with arbitrary input strings and clock jumps: never a
//! panic, never an approval of a wrong code, never two approvals of one
//! challenge, never more than `max_attempts` wrong answers counted.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use pinseal::otp::{ManualClock, MemoryStore, Otp, Policy, Verdict};
use pinseal::{ExposeSecret, Key};

fuzz_target!(|data: &[u8]| {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    let otp = Otp::with_parts(
        &Key::from_bytes([0x33; 32]),
        Policy::default(),
        MemoryStore::new(),
        clock.clone(),
    );
    let Ok((id, code)) = otp.issue("fuzz") else {
        return;
    };
    let mut approvals = 0;
    let mut rejected = 0;
    // Each step: one byte of clock jump (in 10-second units), then a
    // length byte and that many bytes of input.
    let mut rest = data;
    while let [jump, len, tail @ ..] = rest {
        clock.advance(Duration::from_secs(u64::from(*jump) * 10));
        let n = usize::from(*len).min(tail.len());
        let (input, next) = tail.split_at(n);
        rest = next;
        let input = String::from_utf8_lossy(input);
        let verdict = otp.verify(&id, &input).unwrap();
        match verdict {
            Verdict::Approved => {
                assert_eq!(
                    input,
                    code.expose_secret().as_str(),
                    "a wrong code was approved"
                );
                approvals += 1;
            }
            Verdict::Rejected { .. } => rejected += 1,
            _ => {}
        }
        assert!(approvals <= 1, "a challenge was approved twice");
        assert!(
            rejected <= 5,
            "more wrong attempts than the budget were counted"
        );
    }
});
