//! Requests counted by the Redis servers themselves, for
//! `tests/redis_round_trips.rs` and the OTP bench.
//!
//! A `MONITOR` connection to each node reports every request a client sends
//! as one line, and marks a command a script runs `[... lua]`, so requests
//! are counted as the servers received them (`INFO commandstats` would
//! count a script's own commands as well).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The commands a store sends for its data (not a cluster client's own
/// bookkeeping).
const DATA_COMMANDS: [&str; 6] = ["get", "set", "del", "eval", "evalsha", "mget"];

/// One reader per node, and the part of a line a timeout cut short.
pub struct Monitor(Vec<(BufReader<TcpStream>, String)>);

impl Monitor {
    /// Monitors every node in `urls` (`redis://host:port/`, no password).
    pub fn start(urls: &[String]) -> std::io::Result<Monitor> {
        let mut out = Vec::new();
        for url in urls {
            let addr = url.trim_start_matches("redis://").trim_end_matches('/');
            let mut stream = TcpStream::connect(addr)?;
            stream.write_all(b"MONITOR\r\n")?;
            let mut reader = BufReader::new(stream);
            let mut ok = String::new();
            reader.read_line(&mut ok)?;
            if ok.trim_end() != "+OK" {
                return Err(std::io::Error::other("MONITOR refused"));
            }
            reader
                .get_ref()
                .set_read_timeout(Some(Duration::from_millis(40)))?;
            out.push((reader, String::new()));
        }
        Ok(Monitor(out))
    }

    /// Data requests reported since the last call (waits until every node
    /// has been quiet for 40 ms).
    pub fn take(&mut self) -> u64 {
        let mut n = 0;
        for (reader, line) in &mut self.0 {
            // A read that times out keeps what it read in `line`; only
            // whole lines are counted, the rest waits for the next call.
            while reader.read_line(line).is_ok_and(|read| read > 0) && line.ends_with('\n') {
                // +1700000000.123456 [0 127.0.0.1:5555] "EVAL" "..." ...
                let from_client = !line.contains(" lua]");
                let command = line
                    .split_once("] \"")
                    .map(|(_, rest)| rest.split('"').next().unwrap_or("").to_ascii_lowercase());
                if from_client && command.is_some_and(|c| DATA_COMMANDS.contains(&c.as_str())) {
                    n += 1;
                }
                line.clear();
            }
        }
        n
    }
}
