//! Redis challenge stores (features `redis` and `redis-tokio`).

use core::fmt;
use std::sync::Mutex;
use std::time::Duration;

use redis::{Client, Connection, Script};

use super::Store;
use crate::Error;

/// Compare-and-swap as one server-side step. KEYS[1] = key; ARGV = has
/// expected ("0"/"1"), expected, has new ("0"/"1"), new, time to live (ms).
const CAS_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if ARGV[3] == '1' and tonumber(ARGV[5]) > 0 then
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
else
  redis.call('DEL', KEYS[1])
end
return 1
";

/// The default key prefix.
const DEFAULT_PREFIX: &str = "pinseal:otp:";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Builds one invocation of the compare-and-swap script.
fn cas_invocation<'a>(
    script: &'a Script,
    key: String,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
    expires_ms: u64,
    now_ms: u64,
) -> redis::ScriptInvocation<'a> {
    let mut invocation = script.prepare_invoke();
    invocation
        .key(key)
        .arg(if expected.is_some() { "1" } else { "0" })
        .arg(expected.unwrap_or_default())
        .arg(if new.is_some() { "1" } else { "0" })
        .arg(new.unwrap_or_default())
        .arg(expires_ms.saturating_sub(now_ms));
    invocation
}

/// A blocking challenge store on a Redis server, shared by every instance
/// of a service.
///
/// # About
///
/// Each [`Store::compare_and_swap`] is one Lua script run atomically by
/// Redis, so verify-and-consume is a single server-side step and two
/// instances verifying the same code approve it exactly once. Each key gets
/// a Redis time to live equal to its remaining life, so Redis drops
/// expired challenges on its own. Keys are `prefix` + `s:`/`c:` + the hex of
/// an HMAC; values hold HMACs, counters and timestamps only.
///
/// Connections are pooled (one per thread in use at once) and opened
/// lazily; a broken connection is dropped and replaced on the next call, so
/// the store recovers by itself when Redis comes back. Every operation is
/// bounded by a timeout (2 s by default).
///
/// # Errors
///
/// Every Redis failure (unreachable, timeout, error reply) is
/// [`Error::Store`]; the server's message is not kept, since it may name a
/// key. A Redis that is down makes `issue` and `verify` fail; it never makes
/// a code verify.
///
/// # Example
///
/// ```no_run
/// use pinseal::Key;
/// use pinseal::otp::{Otp, Policy, RedisStore, SystemClock};
///
/// let store = RedisStore::open("redis://127.0.0.1:6379/")?.with_prefix("myapp:otp:");
/// let otp = Otp::with_parts(&Key::from_env("OTP_PEPPER")?, Policy::default(), store, SystemClock);
/// let (challenge, code) = otp.issue("+15551234567")?;
/// # Ok::<(), pinseal::Error>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub struct RedisStore {
    client: Client,
    prefix: String,
    timeout: Duration,
    script: Script,
    idle: Mutex<Vec<Connection>>,
}

impl RedisStore {
    /// The key prefix used unless [`RedisStore::with_prefix`] sets another.
    pub const DEFAULT_PREFIX: &'static str = DEFAULT_PREFIX;

    /// A store on the Redis server at `url` (`redis://[:password@]host:port/[db]`).
    /// Connects once to check the server answers.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the URL is invalid or the server does not answer.
    /// The error does not contain the URL (which may hold a password).
    pub fn open(url: &str) -> Result<RedisStore, Error> {
        let store = RedisStore {
            client: Client::open(url).map_err(|_| Error::Store)?,
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: DEFAULT_TIMEOUT,
            script: Script::new(CAS_SCRIPT),
            idle: Mutex::new(Vec::new()),
        };
        let mut conn = store.connect()?;
        redis::cmd("PING")
            .query::<String>(&mut conn)
            .map_err(|_| Error::Store)?;
        store.put_back(conn);
        Ok(store)
    }

    /// Uses `prefix` before every key (default `pinseal:otp:`), so several
    /// services or environments can share one Redis.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> RedisStore {
        self.prefix = prefix.into();
        self
    }

    /// Bounds connecting, and each read and write, by `timeout`.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> RedisStore {
        self.timeout = timeout;
        self
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn connect(&self) -> Result<Connection, Error> {
        let conn = self
            .client
            .get_connection_with_timeout(self.timeout)
            .map_err(|_| Error::Store)?;
        conn.set_read_timeout(Some(self.timeout))
            .and_then(|()| conn.set_write_timeout(Some(self.timeout)))
            .map_err(|_| Error::Store)?;
        Ok(conn)
    }

    fn put_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.push(conn);
    }

    /// Runs `f` on a pooled connection; a connection that failed is dropped.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => self.connect()?,
        };
        match f(&mut conn) {
            Ok(value) => {
                self.put_back(conn);
                Ok(value)
            }
            Err(_) => Err(Error::Store),
        }
    }
}

impl Store for RedisStore {
    /// Reads the key; expiry is Redis's own (`now_ms` is not used).
    fn get(&self, key: &str, _now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        let key = format!("{}{key}", self.prefix);
        self.with_conn(|conn| redis::cmd("GET").arg(&key).query(conn))
    }

    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let key = format!("{}{key}", self.prefix);
        let invocation = cas_invocation(&self.script, key, expected, new, expires_ms, now_ms);
        self.with_conn(|conn| invocation.invoke::<i64>(conn))
            .map(|swapped| swapped == 1)
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL is left out: it may carry a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "redis-tokio")]
pub use self::tokio::AsyncRedisStore;

#[cfg(feature = "redis-tokio")]
mod tokio {
    use core::fmt;
    use std::time::Duration;

    use redis::aio::{ConnectionManager, ConnectionManagerConfig};
    use redis::{Client, Script};

    use super::{CAS_SCRIPT, DEFAULT_PREFIX, DEFAULT_TIMEOUT, cas_invocation};
    use crate::Error;
    use crate::otp::AsyncStore;

    /// The asynchronous (tokio) twin of [`RedisStore`](super::RedisStore),
    /// for [`Otp::issue_async`](crate::otp::Otp::issue_async) and
    /// [`Otp::verify_async`](crate::otp::Otp::verify_async). Same keys, same
    /// script, same guarantees; the two can serve one Redis side by side.
    ///
    /// It multiplexes one connection that reconnects on its own after a
    /// failure; the call that saw the failure returns [`Error::Store`]. Every
    /// operation is bounded by the timeout (2 s by default), so a Redis that
    /// stops answering turns into errors, never a hang.
    ///
    /// # Errors
    ///
    /// As [`RedisStore`](super::RedisStore): every Redis failure is
    /// [`Error::Store`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), pinseal::Error> {
    /// use pinseal::Key;
    /// use pinseal::otp::{AsyncRedisStore, Otp, Policy, SystemClock, Verdict};
    ///
    /// let store = AsyncRedisStore::open("redis://127.0.0.1:6379/").await?;
    /// let otp = Otp::with_parts(&Key::from_env("OTP_PEPPER")?, Policy::default(), store, SystemClock);
    /// let (challenge, code) = otp.issue_async("+15551234567").await?;
    /// let verdict = otp.verify_async(&challenge, code.expose_secret()).await?;
    /// assert_eq!(verdict, Verdict::Approved);
    /// # Ok(()) }
    /// ```
    #[derive(Clone)]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis-tokio")))]
    pub struct AsyncRedisStore {
        conn: ConnectionManager,
        prefix: String,
        script: Script,
        timeout: Duration,
    }

    impl AsyncRedisStore {
        /// Connects to the Redis server at `url`, with 2-second connection
        /// and response timeouts.
        ///
        /// # Errors
        ///
        /// [`Error::Store`] if the URL is invalid or the server does not
        /// answer. The error does not contain the URL.
        pub async fn open(url: &str) -> Result<AsyncRedisStore, Error> {
            Self::open_with_timeout(url, DEFAULT_TIMEOUT).await
        }

        /// As [`AsyncRedisStore::open`], with `timeout` for connecting and
        /// for each response.
        ///
        /// # Errors
        ///
        /// As [`AsyncRedisStore::open`].
        pub async fn open_with_timeout(
            url: &str,
            timeout: Duration,
        ) -> Result<AsyncRedisStore, Error> {
            let client = Client::open(url).map_err(|_| Error::Store)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(timeout)
                .set_response_timeout(timeout)
                .set_number_of_retries(2);
            let conn = client
                .get_connection_manager_with_config(config)
                .await
                .map_err(|_| Error::Store)?;
            Ok(AsyncRedisStore {
                conn,
                prefix: DEFAULT_PREFIX.to_string(),
                script: Script::new(CAS_SCRIPT),
                timeout,
            })
        }

        /// Uses `prefix` before every key (default `pinseal:otp:`).
        #[must_use]
        pub fn with_prefix(mut self, prefix: impl Into<String>) -> AsyncRedisStore {
            self.prefix = prefix.into();
            self
        }

        /// The key prefix in use.
        pub fn prefix(&self) -> &str {
            &self.prefix
        }
    }

    /// Bounds `op` by `timeout`, whatever the connection manager is doing.
    async fn bounded<T>(
        timeout: Duration,
        op: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        match ::tokio::time::timeout(timeout, op).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) | Err(_) => Err(Error::Store),
        }
    }

    impl AsyncStore for AsyncRedisStore {
        async fn get(&self, key: &str, _now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
            let mut conn = self.conn.clone();
            let key = format!("{}{key}", self.prefix);
            bounded(
                self.timeout,
                redis::cmd("GET").arg(key).query_async(&mut conn),
            )
            .await
        }

        async fn compare_and_swap(
            &self,
            key: &str,
            expected: Option<&[u8]>,
            new: Option<&[u8]>,
            expires_ms: u64,
            now_ms: u64,
        ) -> Result<bool, Error> {
            let mut conn = self.conn.clone();
            let key = format!("{}{key}", self.prefix);
            let invocation = cas_invocation(&self.script, key, expected, new, expires_ms, now_ms);
            bounded(self.timeout, invocation.invoke_async::<i64>(&mut conn))
                .await
                .map(|swapped| swapped == 1)
        }
    }

    impl fmt::Debug for AsyncRedisStore {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("AsyncRedisStore")
                .field("prefix", &self.prefix)
                .finish_non_exhaustive()
        }
    }
}
