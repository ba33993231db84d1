//! Helpers shared by the integration tests.
#![allow(dead_code)]

#[cfg(all(feature = "dynamodb", feature = "aws-https"))]
pub mod dynamo_requests;
pub mod monitor;
pub mod otp_suite;

use std::collections::BTreeMap;
use std::path::PathBuf;

/// One block of a `NAME = value` vector file: the fields in order, and the
/// bare flag lines (such as NIST's `FAIL`).
#[derive(Debug, Default)]
pub struct Block {
    pub fields: BTreeMap<String, String>,
    pub flags: Vec<String>,
}

impl Block {
    pub fn get(&self, name: &str) -> &str {
        self.fields
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("vector block lacks field {name}: {self:?}"))
    }
    pub fn hex(&self, name: &str) -> Vec<u8> {
        const_hex::decode(self.get(name)).unwrap_or_else(|_| panic!("field {name} is not hex"))
    }
    pub fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

pub fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Splits a vector file into blocks. A block starts at a line whose field
/// name is `start`; `#` comments and `[section]` lines are skipped.
pub fn read_blocks(name: &str, start: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(data_path(name)).expect("vector file");
    let mut blocks = Vec::new();
    let mut cur: Option<Block> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) => {
                let (k, v) = (k.trim().to_string(), v.trim().to_string());
                if k == start {
                    blocks.extend(cur.take());
                    cur = Some(Block::default());
                }
                let block = cur.as_mut().expect("field before first block start");
                block.fields.insert(k, v);
            }
            None => cur
                .as_mut()
                .expect("flag before first block start")
                .flags
                .push(line.to_string()),
        }
    }
    blocks.extend(cur);
    blocks
}

/// Asserts that `haystack` contains neither `secret` itself (as text, when
/// it is UTF-8) nor its hex in either case.
pub fn assert_no_leak(haystack: &str, secret: &[u8], what: &str) {
    let lower = const_hex::encode(secret);
    let upper = lower.to_uppercase();
    assert!(!haystack.contains(&lower), "{what} leaks the secret as hex");
    assert!(!haystack.contains(&upper), "{what} leaks the secret as HEX");
    if let Ok(text) = std::str::from_utf8(secret) {
        assert!(!haystack.contains(text), "{what} leaks the secret as text");
    }
    let debug_bytes = format!("{secret:?}");
    let inner = debug_bytes.trim_start_matches('[').trim_end_matches(']');
    assert!(
        !haystack.contains(inner),
        "{what} leaks the secret as a byte list"
    );
}

/// Runs `command` (a peer speaking a line protocol), feeds it `lines` and
/// returns one output line per input line.
///
/// The input is written from another thread: a peer that answers while it
/// reads must not block on a full pipe while this thread is still writing.
pub fn run_lines(mut command: std::process::Command, lines: &[String]) -> Vec<String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} could not be started: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = lines.join("\n") + "\n";
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "{command:?} failed");
    let out: Vec<String> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(out.len(), lines.len(), "{command:?} answered every line");
    out
}

/// Whether tests run under CI, where a missing service is a failure.
pub fn under_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Says why a test cannot run here, or fails it under CI.
pub fn unavailable(what: &str) {
    assert!(!under_ci(), "{what} is required under CI");
    eprintln!("SKIPPED: {what} is not available on this machine");
}

/// The Redis the tests use: `PINSEAL_REDIS_URL`, else 127.0.0.1:6379.
pub fn redis_url() -> String {
    std::env::var("PINSEAL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// A fresh key prefix, so tests never see each other's keys.
pub fn unique_prefix() -> String {
    let mut r = [0u8; 8];
    getrandom::fill(&mut r).unwrap();
    format!("pinseal-test:{}:", const_hex::encode(r))
}

/// A `RedisStore` on the test Redis with a fresh prefix, or `None` (after
/// saying so) when there is no Redis outside CI.
#[cfg(feature = "redis")]
pub fn redis_store() -> Option<pinseal::otp::store::RedisStore> {
    let store = pinseal::otp::store::RedisStore::builder()
        .url(redis_url())
        .prefix(unique_prefix())
        .connect();
    match store {
        Ok(store) => Some(store),
        Err(_) => {
            unavailable("a Redis server at PINSEAL_REDIS_URL or 127.0.0.1:6379");
            None
        }
    }
}

/// The seed nodes of the test Redis Cluster: `PINSEAL_REDIS_CLUSTER`
/// (comma-separated URLs), else 127.0.0.1:7001-7003 as
/// `.ci/redis_cluster.sh` starts it.
pub fn redis_cluster_urls() -> Vec<String> {
    std::env::var("PINSEAL_REDIS_CLUSTER")
        .unwrap_or_else(|_| {
            "redis://127.0.0.1:7001/,redis://127.0.0.1:7002/,redis://127.0.0.1:7003/".into()
        })
        .split(',')
        .map(str::to_string)
        .collect()
}

/// A `RedisStore` on the test Redis Cluster with a fresh prefix, or `None`
/// (after saying so) when there is no cluster outside CI.
#[cfg(feature = "redis")]
pub fn redis_cluster_store() -> Option<pinseal::otp::store::RedisStore> {
    let store = pinseal::otp::store::RedisStore::builder()
        .cluster(redis_cluster_urls())
        .prefix(unique_prefix())
        .connect();
    match store {
        Ok(store) => Some(store),
        Err(_) => {
            unavailable("a Redis Cluster at PINSEAL_REDIS_CLUSTER or 127.0.0.1:7001-7003");
            None
        }
    }
}
