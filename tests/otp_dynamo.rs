//! `DynamoStore` (feature `dynamodb`): the OTP behavioural suite against a
//! DynamoDB-compatible local server (dynalite, from npm, at
//! `PINSEAL_DYNAMODB_URL`), the async store racing tasks, a private server
//! (`PINSEAL_DYNALITE`, the executable) stopped mid-run, and the same suite
//! against real DynamoDB when `PINSEAL_DYNAMODB_TABLE` and AWS credentials
//! are in the environment.
//!
//! The suite drives the async store from blocking threads through
//! `BlockOn`, a test adapter that runs each call on a tokio runtime.
#![cfg(all(feature = "dynamodb", feature = "aws-https"))]

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use pinseal::Error;
use pinseal::otp::store::{AsyncStore, DynamoStore, Store, TableSetup};

/// An `AsyncStore` used as a blocking `Store`: each call runs to
/// completion on the runtime.
pub struct BlockOn {
    rt: Arc<tokio::runtime::Runtime>,
    inner: DynamoStore,
    /// Held around each call, for a server whose conditional writes are
    /// not atomic against concurrent ones (moto's; see `moto_store`).
    serial: Option<&'static std::sync::Mutex<()>>,
}

impl BlockOn {
    fn new(inner: DynamoStore) -> BlockOn {
        BlockOn {
            rt: runtime(),
            inner,
            serial: None,
        }
    }

    /// Runs `call` on the runtime, one at a time if the server needs it.
    fn run<T>(&self, call: impl std::future::Future<Output = T>) -> T {
        let _one_at_a_time = self
            .serial
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()));
        self.rt.block_on(call)
    }
}

impl Store for BlockOn {
    fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        self.run(AsyncStore::get(&self.inner, key, now_ms))
    }
    fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        self.run(AsyncStore::compare_and_swap(
            &self.inner,
            key,
            expected,
            new,
            expires_ms,
            now_ms,
        ))
    }
    fn check_in_one_step(
        &self,
        check: &pinseal::otp::store::OneStepCheck<'_>,
    ) -> Result<Option<pinseal::otp::store::OneStepOutcome>, Error> {
        self.run(AsyncStore::check_in_one_step(&self.inner, check))
    }
}

fn runtime() -> Arc<tokio::runtime::Runtime> {
    static RT: OnceLock<Arc<tokio::runtime::Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        Arc::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        )
    })
    .clone()
}

/// A dynalite server on a free port, stopped on drop.
pub struct Dynalite {
    pub port: u16,
    child: Child,
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dynalite {
    /// Starts `PINSEAL_DYNALITE`, or says why not (failing under CI).
    pub fn start() -> Option<Dynalite> {
        let Ok(bin) = std::env::var("PINSEAL_DYNALITE") else {
            common::unavailable("dynalite (PINSEAL_DYNALITE: the dynalite executable)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--createTableMs", "0"])
            .args(["--deleteTableMs", "0", "--updateTableMs", "0"])
            .stdout(Stdio::null())
            .spawn()
            .expect("PINSEAL_DYNALITE runs");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "dynalite did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Dynalite { port, child })
    }

    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        local_client(&format!("http://127.0.0.1:{}", self.port))
    }
}

/// A client for a local server at `url`, with made-up credentials.
fn local_client(url: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("local", "local", None, None, "test"))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// The shared local server (`PINSEAL_DYNAMODB_URL`, which `.ci/run`
/// starts) and a table made once per test binary.
fn local() -> Option<&'static (aws_sdk_dynamodb::Client, String)> {
    static LOCAL: OnceLock<Option<(aws_sdk_dynamodb::Client, String)>> = OnceLock::new();
    LOCAL
        .get_or_init(|| {
            let Ok(url) = std::env::var("PINSEAL_DYNAMODB_URL") else {
                common::unavailable("a local DynamoDB server at PINSEAL_DYNAMODB_URL");
                return None;
            };
            let client = local_client(&url);
            let table = format!("pinseal-test-{}", &common::unique_prefix()[13..29]);
            let builder = DynamoStore::builder(client.clone(), table.clone());
            assert_eq!(
                runtime().block_on(builder.create_table()).unwrap(),
                TableSetup::Created
            );
            // Set-up is idempotent: a second call finds the table.
            assert_eq!(
                runtime().block_on(builder.create_table()).unwrap(),
                TableSetup::Existed
            );
            Some((client, table))
        })
        .as_ref()
}

/// A store on the shared local table with a fresh prefix.
fn fresh_store() -> Option<DynamoStore> {
    let (client, table) = local()?;
    let builder = DynamoStore::builder(client.clone(), table).prefix(common::unique_prefix());
    Some(runtime().block_on(builder.connect()).unwrap())
}

/// moto's server (`PINSEAL_MOTO_URL`, which `.ci/run` starts) and a table
/// made once per test binary: a second DynamoDB nobody here wrote, which,
/// as DynamoDB does and dynalite does not, sends back the item a failed
/// condition was evaluated on (`ReturnValuesOnConditionCheckFailure`).
fn moto() -> Option<&'static (aws_sdk_dynamodb::Client, String)> {
    static MOTO: OnceLock<Option<(aws_sdk_dynamodb::Client, String)>> = OnceLock::new();
    MOTO.get_or_init(|| {
        let Ok(url) = std::env::var("PINSEAL_MOTO_URL") else {
            common::unavailable("moto's server at PINSEAL_MOTO_URL");
            return None;
        };
        let client = local_client(&url);
        let table = format!("pinseal-test-{}", &common::unique_prefix()[13..29]);
        let builder = DynamoStore::builder(client.clone(), table.clone());
        runtime().block_on(builder.create_table()).unwrap();
        Some((client, table))
    })
    .as_ref()
}

/// A store on moto's server with a fresh prefix, whose calls are made one
/// at a time: moto does not apply a conditional write atomically against a
/// concurrent one (two conditional `UpdateItem`s of one item, each
/// requiring an attribute the other removes, both succeed), which DynamoDB
/// and dynalite do. The suite's races run on dynalite (`local_store`);
/// here they run one call after another.
fn moto_store() -> Option<BlockOn> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let (client, table) = moto()?;
    let builder = DynamoStore::builder(client.clone(), table).prefix(common::unique_prefix());
    Some(BlockOn {
        serial: Some(&SERIAL),
        ..BlockOn::new(runtime().block_on(builder.connect()).unwrap())
    })
}

/// A store on the local server with a fresh prefix.
fn local_store() -> Option<BlockOn> {
    Some(BlockOn::new(fresh_store()?))
}

/// A store on real DynamoDB, when `PINSEAL_DYNAMODB_TABLE`, `AWS_REGION`
/// and AWS keys are set; otherwise `None` after a notice (also under CI:
/// the CI machine has no AWS account).
fn aws_store() -> Option<BlockOn> {
    let (Ok(table), Ok(region), Ok(key), Ok(secret)) = (
        std::env::var("PINSEAL_DYNAMODB_TABLE"),
        std::env::var("AWS_REGION"),
        std::env::var("AWS_ACCESS_KEY_ID"),
        std::env::var("AWS_SECRET_ACCESS_KEY"),
    ) else {
        eprintln!(
            "SKIPPED: real DynamoDB (set PINSEAL_DYNAMODB_TABLE, AWS_REGION, AWS_ACCESS_KEY_ID, \
             AWS_SECRET_ACCESS_KEY)"
        );
        return None;
    };
    let token = std::env::var("AWS_SESSION_TOKEN").ok();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .credentials_provider(Credentials::new(key, secret, token, None, "env"))
        .build();
    let store = DynamoStore::builder(aws_sdk_dynamodb::Client::from_conf(config), table)
        .prefix(common::unique_prefix())
        .timeout(Duration::from_secs(5));
    let store = runtime().block_on(store.connect()).unwrap();
    Some(BlockOn::new(store))
}

/// How many requests each operation sends, counted by the client, on
/// `url`'s `table`; `returns_item`: the server sends back the item a failed
/// condition was evaluated on, as DynamoDB does.
///
/// A right code is one conditional `UpdateItem` by subject, and by id one
/// `GetItem` of the index entry before it. A wrong code is that update,
/// failed, and one conditional `PutItem` (a `GetItem` more where the item
/// does not come back). An issue reads the record and writes the index
/// entry and the record.
fn requests_on(url: &str, table: &str, returns_item: bool) {
    use common::dynamo_requests::Requests;
    use pinseal::otp::{Otp, Policy, Verdict};
    use pinseal::{ExposeSecret, Key};
    let requests = Requests::default();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("local", "local", None, None, "test"))
        .interceptor(requests.clone())
        .build();
    let store = DynamoStore::builder(aws_sdk_dynamodb::Client::from_conf(config), table)
        .prefix(common::unique_prefix());
    let store = BlockOn::new(runtime().block_on(store.connect()).unwrap());
    requests.take();
    let otp = Otp::with_store(&Key::from_bytes([4; 32]), Policy::default(), store);
    let mut seen = Vec::new();
    let mut step = |name: &str, want: u64| {
        let (shown, total) = requests.take();
        println!("  {total}  {name}: {shown}");
        seen.push((name.to_string(), total, want));
    };
    let wrong_code = if returns_item { 2 } else { 3 };
    let (id, code) = otp.issue("+15550004444").unwrap();
    step("issue", 3);
    let wrong = if code.expose_secret() == "000000" {
        "000001"
    } else {
        "000000"
    };
    assert_eq!(
        otp.verify(&id, wrong).unwrap(),
        Verdict::Rejected { attempts_left: 4 }
    );
    step("verify by id, wrong code", wrong_code + 1);
    assert_eq!(
        otp.verify(&id, code.expose_secret()).unwrap(),
        Verdict::Approved
    );
    step("verify by id, right code", 2);
    assert_eq!(
        otp.verify(&id, code.expose_secret()).unwrap(),
        Verdict::Unknown
    );
    step("verify by id, spent", wrong_code);
    let (_, code) = otp.issue("+15550004444").unwrap();
    step("issue (a resend)", 3);
    assert_eq!(
        otp.check("+15550004444", "12345x").unwrap(),
        Verdict::Rejected { attempts_left: 4 }
    );
    step("check by subject, malformed", 2);
    assert_eq!(
        otp.check("+15550004444", code.expose_secret()).unwrap(),
        Verdict::Approved
    );
    step("check by subject, right code", 1);
    assert_eq!(
        otp.check("+15550005555", "123456").unwrap(),
        Verdict::Unknown
    );
    // No item sent back: no record, once the server has been seen to send
    // one back with a failed condition (above); dynalite never does.
    step("check, no record", if returns_item { 1 } else { 2 });
    let unknown: pinseal::otp::ChallengeId = "00000000000000000000000000000000".parse().unwrap();
    assert_eq!(otp.verify(&unknown, "123456").unwrap(), Verdict::Unknown);
    step("verify, unknown id", 1);
    // The approval in one write reads back as the general path writes it:
    // approved, with the time of the approval.
    let fetched = otp.fetch_subject("+15550004444").unwrap().unwrap();
    assert_eq!(fetched.status, pinseal::otp::ChallengeStatus::Approved);
    assert!(fetched.updated_at.unwrap() >= fetched.created_at.unwrap());
    for (name, total, want) in seen {
        assert_eq!(total, want, "{name}");
    }
}

#[test]
fn requests_per_operation() {
    let Ok(url) = std::env::var("PINSEAL_DYNAMODB_URL") else {
        return common::unavailable("a local DynamoDB server at PINSEAL_DYNAMODB_URL");
    };
    let Some((_, table)) = local() else { return };
    requests_on(&url, table, false);
}

#[test]
fn requests_per_operation_on_a_server_that_sends_the_item_back() {
    let Ok(url) = std::env::var("PINSEAL_MOTO_URL") else {
        return common::unavailable("moto's server at PINSEAL_MOTO_URL");
    };
    let Some((_, table)) = moto() else { return };
    requests_on(&url, table, true);
}

/// A role without `dynamodb:UpdateItem`, as dynalite would answer it: each
/// `UpdateItem` is turned into a harmless `ListTables` on the way out, and
/// its answer into `AccessDeniedException`.
#[derive(Debug, Default)]
struct DenyUpdates(std::sync::Mutex<bool>);

impl aws_sdk_dynamodb::config::Intercept for DenyUpdates {
    fn name(&self) -> &'static str {
        "DenyUpdates"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextMut<
            '_,
        >,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let request = context.request_mut();
        let update = request
            .headers()
            .get("x-amz-target")
            .is_some_and(|t| t.ends_with(".UpdateItem"));
        if update {
            request
                .headers_mut()
                .insert("x-amz-target", "DynamoDB_20120810.ListTables");
            request.headers_mut().insert("content-length", "2");
            *request.body_mut() = "{}".to_string().into();
        }
        *self.0.lock().unwrap() = update;
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut aws_sdk_dynamodb::config::interceptors::BeforeDeserializationInterceptorContextMut<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if std::mem::take(&mut *self.0.lock().unwrap()) {
            let response = context.response_mut();
            *response.status_mut() = 400u16.try_into()?;
            response.headers_mut().remove("content-length");
            *response.body_mut() = r#"{"__type":"com.amazonaws.dynamodb.v20120810#AccessDeniedException","message":"denied"}"#
                .to_string()
                .into();
        }
        Ok(())
    }
}

/// A role that may not `UpdateItem` (one that predates the permission) is
/// not an outage: the first refusal turns the store to reads and
/// conditional `PutItem`s, and codes are approved once as before.
#[test]
fn a_role_without_update_item_checks_the_general_way() {
    use common::dynamo_requests::Requests;
    use pinseal::otp::{Otp, Policy, Verdict};
    use pinseal::{ExposeSecret, Key};
    let Ok(url) = std::env::var("PINSEAL_DYNAMODB_URL") else {
        return common::unavailable("a local DynamoDB server at PINSEAL_DYNAMODB_URL");
    };
    let Some((_, table)) = local() else { return };
    let requests = Requests::default();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(Credentials::new("local", "local", None, None, "test"))
        .interceptor(requests.clone())
        .interceptor(DenyUpdates::default())
        .build();
    let store = DynamoStore::builder(aws_sdk_dynamodb::Client::from_conf(config), table)
        .prefix(common::unique_prefix());
    let store = BlockOn::new(runtime().block_on(store.connect()).unwrap());
    let otp = Otp::with_store(&Key::from_bytes([4; 32]), Policy::default(), store);
    let (_, code) = otp.issue("+15550004445").unwrap();
    requests.take();
    assert_eq!(
        otp.check("+15550004445", code.expose_secret()).unwrap(),
        Verdict::Approved
    );
    assert_eq!(requests.take().1, 3, "refused, then a read and a write");
    assert_eq!(
        otp.check("+15550004445", code.expose_secret()).unwrap(),
        Verdict::Unknown
    );
    let (_, code) = otp.issue("+15550004445").unwrap();
    requests.take();
    assert_eq!(
        otp.check("+15550004445", code.expose_secret()).unwrap(),
        Verdict::Approved
    );
    let (shown, total) = requests.take();
    assert_eq!((shown.as_str(), total), ("GetItem 1, PutItem 1", 2));
}

mod local_server {
    crate::otp_suite!(crate::local_store());
}

mod moto_server {
    crate::otp_suite!(crate::moto_store());
}

mod real_dynamodb {
    crate::otp_suite!(crate::aws_store());
}

mod dynamo_only {
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use pinseal::otp::aio::Otp;
    use pinseal::otp::store::DynamoStore;
    use pinseal::otp::{ManualClock, Policy, Verdict};
    use pinseal::{Error, ExposeSecret, Key};

    use super::{Dynalite, local, runtime};

    fn chat() -> Policy {
        Policy::new(6, Duration::from_secs(60), 5).unwrap()
    }

    /// Eight tasks race on each challenge through the async API: one
    /// approval each.
    #[test]
    fn async_tasks_approve_exactly_once() {
        let Some(store) = super::fresh_store() else {
            return;
        };
        let otp = Arc::new(Otp::with_parts(
            &Key::from_bytes([12; 32]),
            chat(),
            store,
            ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        ));
        runtime().block_on(async {
            for round in 0..20 {
                let subject = format!("+1558{round:06}");
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
        });
    }

    /// The local server stopped mid-run: errors, never an approval.
    #[test]
    fn a_stopped_server_never_approves() {
        let Some(server) = Dynalite::start() else {
            return;
        };
        let builder =
            DynamoStore::builder(server.client(), "stop-test").timeout(Duration::from_millis(1500));
        runtime().block_on(builder.create_table()).unwrap();
        let store = runtime().block_on(builder.connect()).unwrap();
        let otp = Otp::with_parts(
            &Key::from_bytes([13; 32]),
            chat(),
            store,
            ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        );
        runtime().block_on(async {
            let (id, code) = otp.issue("+15550700").await.unwrap();
            drop(server);
            for _ in 0..3 {
                assert_eq!(
                    otp.verify(&id, code.expose_secret()).await,
                    Err(Error::Store)
                );
                assert_eq!(
                    otp.check("+15550700", code.expose_secret()).await,
                    Err(Error::Store)
                );
            }
            assert_eq!(otp.issue("+15550700").await.err(), Some(Error::Store));
        });
    }

    /// Expiry is the store's own, whatever DynamoDB's TTL deletion has not
    /// done yet; and the TTL attribute is set from the policy.
    #[test]
    fn expired_items_are_absent_and_carry_a_ttl() {
        use pinseal::otp::store::AsyncStore;
        let (Some((client, _)), Some(store)) = (local(), super::fresh_store()) else {
            return;
        };
        runtime().block_on(async {
            assert!(
                store
                    .compare_and_swap("k", None, Some(b"v1"), 10_000, 1_000)
                    .await
                    .unwrap()
            );
            assert_eq!(store.get("k", 9_999).await.unwrap(), Some(b"v1".to_vec()));
            assert_eq!(store.get("k", 10_000).await.unwrap(), None);
            // Expired counts as absent for a swap too.
            assert!(
                !store
                    .compare_and_swap("k", Some(b"v1"), Some(b"v2"), 20_000, 10_000)
                    .await
                    .unwrap()
            );
            assert!(
                store
                    .compare_and_swap("k", None, Some(b"v2"), 20_000, 10_000)
                    .await
                    .unwrap()
            );
            let item = client
                .get_item()
                .table_name(store.table())
                .key(
                    "pk",
                    aws_sdk_dynamodb::types::AttributeValue::S(format!("{}k", store.prefix())),
                )
                .send()
                .await
                .unwrap();
            let item = item.item().unwrap();
            assert_eq!(item["ttl"].as_n().unwrap(), "20");
            assert_eq!(item["exp"].as_n().unwrap(), "20000");
        });
    }
}

/// Set-up that cannot reach DynamoDB fails: it is never taken for a table
/// that exists.
#[test]
fn create_table_tells_an_unreachable_server_from_an_existing_table() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let builder = DynamoStore::builder(local_client(&format!("http://127.0.0.1:{port}")), "t")
        .timeout(Duration::from_millis(500));
    assert_eq!(
        runtime().block_on(builder.create_table()),
        Err(Error::Store)
    );
}
