//! A DynamoDB challenge store (feature `dynamodb`).

use core::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
};

use super::{AsyncStore, Decision, Lookup, OneStepCheck, OneStepOutcome};
use crate::Error;
use crate::deadline::bounded;
use crate::otp::Verdict;
use crate::otp::record::{self, Approvable};

const DEFAULT_PREFIX: &str = "pinseal:otp:";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The attribute names of an item.
const PK: &str = "pk";
const VALUE: &str = "v";
const EXPIRES: &str = "exp";
const TTL: &str = "ttl";
/// Beside a record whose challenge is pending (see [`Approvable`]): the
/// record approved, the challenge's MACs, id tag and expiry, the
/// subject's window start, its attempts; and, once approved in one write,
/// when.
const APPROVED: &str = "va";
const BY_SUBJECT: &str = "ms";
const BY_ID: &str = "mi";
const ID_TAG: &str = "it";
const CHALLENGE_EXPIRES: &str = "ce";
const WINDOW_START: &str = "ws";
const ATTEMPTS: &str = "at";
const APPROVED_AT: &str = "ua";

/// A challenge store on one Amazon DynamoDB table, for services without a
/// Redis to run (a Lambda, a container on Fargate): the asynchronous
/// [`AsyncStore`] for [`aio::Otp`](crate::otp::aio::Otp) and
/// [`aio::TotpGuard`](crate::otp::aio::TotpGuard).
///
/// # About
///
/// One item per key, in one table whose partition key is the string `pk`
/// (no sort key):
///
/// | attribute | type | holds |
/// |---|---|---|
/// | `pk` | S | `prefix` + `s:`/`c:`/`k:` + hex of an HMAC |
/// | `v` | B | the value: HMACs, counters, timestamps (the same bytes as every other store) |
/// | `exp` | N | when the entry expires, in milliseconds since the Unix epoch |
/// | `ttl` | N | the same, in seconds: the table's TTL attribute |
///
/// A subject's record whose code is pending also carries what a check
/// needs to approve it in one conditional `UpdateItem`, without reading it
/// first: the record as that approval leaves it (`va`), the code's two
/// MACs (`ms`, `mi`), the challenge's id tag (`it`) and expiry (`ce`), the
/// start of the subject's send window (`ws`) and its attempts (`at`); the
/// approval swaps `va` in for `v`, removes the rest and writes its time
/// (`ua`). Nothing in clear: MACs, tags, counters and times only.
///
/// Reads are strongly consistent. [`AsyncStore::compare_and_swap`] is one
/// conditional `PutItem` (or `DeleteItem`) whose condition is the value
/// read (`v = :expected AND exp > :now`, or for a record approved in one
/// write, its `v` and `ua` as read) or its absence
/// (`attribute_not_exists(pk) OR exp <= :now`), so two instances verifying
/// the same code approve it exactly once. DynamoDB deletes expired items
/// only eventually (often within days), so the store enforces `exp`
/// itself: an item past it is absent to every read and condition.
///
/// Create the table with [`DynamoBuilder::create_table`] and turn on TTL
/// with [`DynamoBuilder::enable_ttl`], or with the AWS CLI:
///
/// ```text
/// aws dynamodb create-table --table-name otp \
///   --attribute-definitions AttributeName=pk,AttributeType=S \
///   --key-schema AttributeName=pk,KeyType=HASH --billing-mode PAY_PER_REQUEST
/// aws dynamodb update-time-to-live --table-name otp \
///   --time-to-live-specification Enabled=true,AttributeName=ttl
/// ```
///
/// The service's role needs `dynamodb:GetItem`, `dynamodb:PutItem`,
/// `dynamodb:UpdateItem`, `dynamodb:DeleteItem` and `dynamodb:DescribeTable` (for
/// [`DynamoBuilder::connect`]) on the table, and `CreateTable` and
/// `UpdateTimeToLive` only for the set-up helpers.
///
/// # Requests
///
/// | check by subject | requests |
/// |---|---:|
/// | right code, within the subject's send window | 1 (`UpdateItem`) |
/// | wrong code, or right code past the window | 2 (`UpdateItem`, `PutItem`) |
/// | spent, canceled, locked or expired code; no record | 1 (`UpdateItem`) |
/// | malformed input | 2 (`GetItem`, `PutItem`) |
///
/// A check by id reads the index entry first (`GetItem`, one more); a
/// check on behalf of a client spends its budget before (a `GetItem` and a
/// `PutItem`) and, on approval, gives it back (two more); an issue is 3
/// (`GetItem`, `PutItem` twice).
///
/// A check first tries the approval as one conditional `UpdateItem` that
/// asks for the item back if its condition fails
/// (`ReturnValuesOnConditionCheckFailure`); the store then decides on that
/// item and writes the outcome with one conditional `PutItem` (none for a
/// code that is no longer pending). A server that does not send the item
/// back (dynalite, a local emulator) costs a `GetItem` more for those,
/// as does every check until the store has seen the server send one (a
/// failed condition with no item then means no record). A record written
/// before version 4 (one MAC per code) costs the failed `UpdateItem` and
/// the general `GetItem` and `PutItem`. A role without
/// `dynamodb:UpdateItem` is not an outage: the first refusal turns the
/// store to reads and conditional `PutItem`s (2 per check) until it is
/// connected again.
///
/// **Capacity.** A failed conditional write consumes write capacity as a
/// successful one does: a wrong code is two writes (it was a read and a
/// write), and a check on a subject with no record one write (it was a
/// read). The approved record kept beside a pending one about doubles the
/// item: past 1 KB (a subject longer than about 90 bytes, such as a long
/// e-mail address), each write of it costs two write units.
///
/// # Timeouts and errors
///
/// Each call is bounded by a timeout (2 s by default,
/// [`DynamoBuilder::timeout`]), whatever the SDK's own retries are doing.
/// A failed condition is a swap that did not happen (`Ok(false)`); every
/// other failure (throttling, a timeout, a network error, an unknown table,
/// missing permissions) is [`Error::Store`], without the SDK's message
/// (which names the table and the key). The store never reports a write it
/// did not make, and an unavailable table never makes a code verify.
///
/// There is no blocking `Store` implementation: the SDK is asynchronous,
/// and hiding a runtime inside a blocking call would surprise a service
/// that already runs one.
///
/// # Example
///
/// ```no_run
/// # async fn run() -> Result<(), pinseal::Error> {
/// use pinseal::Key;
/// use pinseal::otp::store::DynamoStore;
/// use pinseal::otp::{Policy, aio};
///
/// // let config = aws_config::load_from_env().await;  // region, credentials
/// # let config = aws_sdk_dynamodb::Config::builder().build();
/// let client = aws_sdk_dynamodb::Client::from_conf(config);
/// let store = DynamoStore::builder(client, "otp").connect().await?;
/// let otp = aio::Otp::with_store(&Key::from_env("OTP_PEPPER")?, Policy::default(), store);
/// let (challenge, code) = otp.issue("+15551234567").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub struct DynamoStore {
    client: Client,
    table: String,
    prefix: String,
    timeout: Duration,
    /// What the store has learned of the server, shared by its clones.
    seen: Arc<Seen>,
}

/// What a [`DynamoStore`] has learned of its server since it connected.
#[derive(Default)]
struct Seen {
    /// A failed condition sent the item back
    /// (`ReturnValuesOnConditionCheckFailure`): one that sends none back
    /// found no item.
    sends_items: AtomicBool,
    /// `UpdateItem` was refused (`AccessDeniedException`, a role without
    /// the permission): checks are read and written the general way.
    update_denied: AtomicBool,
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// What [`DynamoBuilder::create_table`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub enum TableSetup {
    /// The call created the table.
    Created,
    /// The table existed already (created by an earlier run, another
    /// instance or infrastructure code).
    Existed,
}

/// Configures a [`DynamoStore`], sets its table up if asked, and connects
/// it: [`DynamoStore::builder`].
///
/// | setter | default |
/// |---|---|
/// | [`DynamoBuilder::prefix`] | `pinseal:otp:` |
/// | [`DynamoBuilder::timeout`] | 2 s |
///
/// # Example
///
/// ```no_run
/// # async fn run(client: aws_sdk_dynamodb::Client) -> Result<(), pinseal::Error> {
/// use pinseal::otp::store::DynamoStore;
/// use std::time::Duration;
///
/// let builder = DynamoStore::builder(client, "otp").prefix("myapp:otp:").timeout(Duration::from_secs(1));
/// builder.create_table().await?; // set-up scripts and tests: Created or Existed
/// let store = builder.connect().await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until `connect` is called"]
pub struct DynamoBuilder {
    client: Client,
    table: String,
    prefix: String,
    timeout: Duration,
}

impl DynamoStore {
    /// A builder for a store on `table` through `client` (region,
    /// credentials and endpoint are the client's; pass a client with an
    /// HTTP client of your choice to avoid the SDK's default one).
    pub fn builder(client: Client, table: impl Into<String>) -> DynamoBuilder {
        DynamoBuilder {
            client,
            table: table.into(),
            prefix: DEFAULT_PREFIX.to_string(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The timeout in force.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn key(&self, key: &str) -> AttributeValue {
        AttributeValue::S(format!("{}{key}", self.prefix))
    }
}

/// What a failed set-up or connect call means, without the SDK's message:
/// a missing table is a configuration error, refused credentials or
/// permissions [`Error::StoreAuth`], anything else [`Error::Store`].
fn classify<E, R>(e: Option<&SdkError<E, R>>) -> Error
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    match e.and_then(service_code) {
        Some("ResourceNotFoundException") => Error::StoreConfig,
        Some(
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "MissingAuthenticationTokenException",
        ) => Error::StoreAuth,
        _ => Error::Store,
    }
}

/// The service's error code, if DynamoDB answered with one.
fn service_code<E, R>(e: &SdkError<E, R>) -> Option<&str>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    match e {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

impl DynamoBuilder {
    /// The prefix before every key (default `pinseal:otp:`), so several
    /// services can share one table.
    pub fn prefix(mut self, prefix: impl Into<String>) -> DynamoBuilder {
        self.prefix = prefix.into();
        self
    }

    /// The timeout for each call (default 2 s). Values below 1 ms or above
    /// one hour are taken as 1 ms or one hour.
    pub fn timeout(mut self, timeout: Duration) -> DynamoBuilder {
        self.timeout = crate::deadline::clamp(timeout);
        self
    }

    /// Creates the table (on-demand billing, partition key `pk`) unless it
    /// exists, and waits until it is active. For set-up scripts and tests;
    /// production tables usually come from infrastructure code.
    ///
    /// Returns whether this call created the table or found it: set-up is
    /// idempotent, and a failure is never mistaken for an existing table.
    ///
    /// # Errors
    ///
    /// [`Error::StoreAuth`] without the permission; [`Error::Store`] if
    /// DynamoDB cannot be reached or the table does not become active
    /// within a minute.
    pub async fn create_table(&self) -> Result<TableSetup, Error> {
        let attribute = AttributeDefinition::builder()
            .attribute_name(PK)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|_| Error::StoreConfig)?;
        let key = KeySchemaElement::builder()
            .attribute_name(PK)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|_| Error::StoreConfig)?;
        let created = bounded(
            self.timeout,
            self.client
                .create_table()
                .table_name(&self.table)
                .attribute_definitions(attribute)
                .key_schema(key)
                .billing_mode(BillingMode::PayPerRequest)
                .send(),
        )
        .await;
        let setup = match created {
            Ok(_) => TableSetup::Created,
            // It exists: wait for it as for a new one.
            Err(Some(e)) if service_code(&e) == Some("ResourceInUseException") => {
                TableSetup::Existed
            }
            Err(e) => return Err(classify(e.as_ref())),
        };
        self.wait_active(Duration::from_secs(60)).await?;
        Ok(setup)
    }

    /// Turns on DynamoDB's time to live on the `ttl` attribute, so expired
    /// items are deleted by DynamoDB (eventually; the store ignores them
    /// from the moment they expire either way).
    ///
    /// # Errors
    ///
    /// As [`DynamoBuilder::connect`] (local emulators often do not
    /// implement this call: [`Error::Store`]).
    pub async fn enable_ttl(&self) -> Result<(), Error> {
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL)
            .build()
            .map_err(|_| Error::StoreConfig)?;
        bounded(
            self.timeout,
            self.client
                .update_time_to_live()
                .table_name(&self.table)
                .time_to_live_specification(spec)
                .send(),
        )
        .await
        .map(|_| ())
        .map_err(|e| classify(e.as_ref()))
    }

    /// Checks that the table exists and is usable (`DescribeTable`), and
    /// returns the store. A table still being created is waited for, as
    /// long as the timeout.
    ///
    /// # Errors
    ///
    /// [`Error::StoreConfig`] if the table does not exist;
    /// [`Error::StoreAuth`] if the credentials or permissions are refused;
    /// [`Error::Store`] if DynamoDB cannot be reached or the table does not
    /// become usable in time. No error holds the SDK's message.
    pub async fn connect(self) -> Result<DynamoStore, Error> {
        self.wait_active(self.timeout).await?;
        Ok(DynamoStore {
            client: self.client,
            table: self.table,
            prefix: self.prefix,
            timeout: self.timeout,
            seen: Arc::default(),
        })
    }

    /// Waits until the table is active (or updating, which serves), for at
    /// most `limit`.
    async fn wait_active(&self, limit: Duration) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let described = bounded(
                self.timeout,
                self.client.describe_table().table_name(&self.table).send(),
            )
            .await
            .map_err(|e| classify(e.as_ref()))?;
            let usable = described
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| matches!(s.as_str(), "ACTIVE" | "UPDATING"));
            if usable {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Store);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl fmt::Debug for DynamoBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoBuilder")
            .field("table", &self.table)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Whether an SDK error is a failed condition (the swap did not happen)
/// rather than a failure.
fn condition_failed<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    match e {
        SdkError::ServiceError(service) => {
            service.err().code() == Some("ConditionalCheckFailedException")
        }
        _ => false,
    }
}

impl AsyncStore for DynamoStore {
    async fn get(&self, key: &str, now_ms: u64) -> Result<Option<Vec<u8>>, Error> {
        let out = bounded(
            self.timeout,
            self.client
                .get_item()
                .table_name(&self.table)
                .key(PK, self.key(key))
                .consistent_read(true)
                .send(),
        )
        .await
        .map_err(|_| Error::Store)?;
        out.item().map_or(Ok(None), |item| value_of(item, now_ms))
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let record = key.starts_with("s:");
        // A record approved in one write reads as its `v` with the time of
        // the approval (`ua`) put in: the same value, as stored.
        let approval = expected.filter(|_| record).and_then(record::approval_of);
        let (condition, mut values) = match (expected, &approval) {
            (None, _) => (
                "attribute_not_exists(#pk) OR #exp <= :now",
                vec![(":now", number(now_ms))],
            ),
            (Some(v), None) => (
                "#v = :expected AND attribute_not_exists(#ua) AND #exp > :now",
                vec![
                    (":now", number(now_ms)),
                    (":expected", AttributeValue::B(Blob::new(v))),
                ],
            ),
            (Some(v), Some((stored, at))) => (
                "((#v = :expected AND attribute_not_exists(#ua)) \
                 OR (#v = :stored AND #ua = :at)) AND #exp > :now",
                vec![
                    (":now", number(now_ms)),
                    (":expected", AttributeValue::B(Blob::new(v))),
                    (":stored", AttributeValue::B(Blob::new(stored.as_slice()))),
                    (":at", number(*at)),
                ],
            ),
        };
        let mut names = vec![("#exp", EXPIRES)];
        if expected.is_some() {
            names.push(("#v", VALUE));
            names.push(("#ua", APPROVED_AT));
        } else {
            names.push(("#pk", PK));
        }
        let result = match new.filter(|_| expires_ms > now_ms) {
            Some(value) => {
                let mut put = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .item(PK, self.key(key))
                    .item(VALUE, AttributeValue::B(Blob::new(value)))
                    .item(EXPIRES, number(expires_ms))
                    .item(TTL, number(expires_ms.div_ceil(1000)))
                    .condition_expression(condition);
                // What a check needs to approve the pending code in one
                // write (`check_in_one_step`).
                if let Some(a) = Some(value).filter(|_| record).and_then(Approvable::of) {
                    put = put
                        .item(APPROVED, AttributeValue::B(Blob::new(a.approved)))
                        .item(BY_SUBJECT, AttributeValue::B(Blob::new(a.by_subject)))
                        .item(BY_ID, AttributeValue::B(Blob::new(a.by_id)))
                        .item(ID_TAG, AttributeValue::B(Blob::new(a.id_tag)))
                        .item(CHALLENGE_EXPIRES, number(a.expires_ms))
                        .item(WINDOW_START, number(a.window_start_ms))
                        .item(ATTEMPTS, number(u64::from(a.attempts)));
                }
                for (name, attribute) in &names {
                    put = put.expression_attribute_names(*name, *attribute);
                }
                for (name, value) in values.drain(..) {
                    put = put.expression_attribute_values(name, value);
                }
                bounded(self.timeout, put.send())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.is_some_and(|e| condition_failed(&e)))
            }
            None => {
                let mut delete = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .key(PK, self.key(key))
                    .condition_expression(condition);
                for (name, attribute) in &names {
                    delete = delete.expression_attribute_names(*name, *attribute);
                }
                for (name, value) in values.drain(..) {
                    delete = delete.expression_attribute_values(name, value);
                }
                bounded(self.timeout, delete.send())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.is_some_and(|e| condition_failed(&e)))
            }
        };
        match result {
            Ok(()) => Ok(true),
            // The condition did not hold: not swapped.
            Err(true) => Ok(false),
            Err(false) => Err(Error::Store),
        }
    }

    /// A check by subject (or, after its index entry is read, by id) as
    /// one conditional `UpdateItem` that approves the code if it is right
    /// and may be approved; otherwise decided on the item that the failed
    /// condition sends back (or, from a server that does not, read), as
    /// `record::one_step` decides, and written with one conditional
    /// `PutItem` (see "Requests" on [`DynamoStore`]). Malformed input is
    /// decided on the item read. `None`, for the general path, on a check
    /// on behalf of a client, on a record written before version 4, and
    /// when the write loses a race.
    async fn check_in_one_step(
        &self,
        check: &OneStepCheck<'_>,
    ) -> Result<Option<OneStepOutcome>, Error> {
        let key = match check.lookup {
            Lookup::Index(_) => return Ok(Some(OneStepOutcome(Decision::IndexFirst))),
            Lookup::Record(key) => key,
        };
        if check.counter.is_some() {
            // The client's budget is another item: the general path.
            return Ok(None);
        }
        let now = check.now_ms;
        let seen = &self.seen;
        let mac = check
            .mac
            .filter(|_| !seen.update_denied.load(Ordering::Relaxed));
        let current = match mac {
            Some(mac) => match self.approve(key, check, &mac).await? {
                Approval::Made(outcome) => return Ok(Some(outcome)),
                Approval::Refused(Some(item)) => {
                    seen.sends_items.store(true, Ordering::Relaxed);
                    value_of(&item, now)?
                }
                // No item sent back, from a server seen to send one: there
                // is none (and so nothing to approve or to count).
                Approval::Refused(None) if seen.sends_items.load(Ordering::Relaxed) => None,
                Approval::Refused(None) => self.get(key, now).await?,
                Approval::Denied => {
                    seen.update_denied.store(true, Ordering::Relaxed);
                    self.get(key, now).await?
                }
            },
            // Malformed input, which never matches; or a role without
            // `UpdateItem`.
            None => self.get(key, now).await?,
        };
        let (decision, write) = record::one_step(check, current.as_deref())?;
        if matches!(decision, Decision::Fallback) {
            return Ok(None);
        }
        if let Some((next, expires_ms)) = write {
            if !self
                .compare_and_swap(key, current.as_deref(), Some(&next), expires_ms, now)
                .await?
            {
                // Changed since: the general path reads it again.
                return Ok(None);
            }
        }
        Ok(Some(OneStepOutcome(decision)))
    }
}

/// What [`DynamoStore::approve`] made of a check.
enum Approval {
    /// Approved.
    Made(OneStepOutcome),
    /// The condition failed, on this item if the server sent it back.
    Refused(Option<std::collections::HashMap<String, AttributeValue>>),
    /// The role may not `UpdateItem`: nothing was written.
    Denied,
}

impl DynamoStore {
    /// `check` (whose candidate's MAC is `mac`) as one conditional
    /// `UpdateItem` on the record under `key` that approves it if the code
    /// is right and the challenge may be approved.
    async fn approve(
        &self,
        key: &str,
        check: &OneStepCheck<'_>,
        mac: &[u8; 32],
    ) -> Result<Approval, Error> {
        let now = check.now_ms;
        // Within the subject's send window (past it, the window restarts
        // at the approval, which the stored approval does not know).
        let from = now.saturating_add(1).saturating_sub(check.send_window_ms);
        let condition = match check.id_tag {
            Some(_) => {
                "#mi = :mac AND #it = :id AND #ce > :now AND #at < :max AND #ws >= :from \
                 AND #exp > :now AND attribute_not_exists(#ua)"
            }
            None => {
                "#ms = :mac AND #ce > :now AND #at < :max AND #ws >= :from \
                 AND #exp > :now AND attribute_not_exists(#ua)"
            }
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, self.key(key))
            .condition_expression(condition)
            .update_expression("SET #v = #va, #ua = :now REMOVE #va, #ms, #mi, #it, #ce, #at, #ws")
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .expression_attribute_values(":mac", AttributeValue::B(Blob::new(&mac[..])))
            .expression_attribute_values(":now", number(now))
            .expression_attribute_values(":max", number(u64::from(check.max_attempts)))
            .expression_attribute_values(":from", number(from));
        if let Some(id_tag) = check.id_tag {
            update =
                update.expression_attribute_values(":id", AttributeValue::B(Blob::new(id_tag)));
        }
        for (name, attribute) in [
            ("#v", VALUE),
            ("#va", APPROVED),
            ("#ua", APPROVED_AT),
            ("#ms", BY_SUBJECT),
            ("#mi", BY_ID),
            ("#it", ID_TAG),
            ("#ce", CHALLENGE_EXPIRES),
            ("#at", ATTEMPTS),
            ("#ws", WINDOW_START),
            ("#exp", EXPIRES),
        ] {
            update = update.expression_attribute_names(name, attribute);
        }
        match bounded(self.timeout, update.send()).await {
            Ok(out) => {
                // Approved: the challenge and its prefix from the record as
                // it was. (A server that sent no old value back leaves the
                // approval's event without its challenge and the fraud
                // guard's prefix without its credit: the approval stands.)
                // The item keeps its expiry: the record's, as the issue's
                // policy set it; `one_step` would compute the same from an
                // unchanged policy.
                let (challenge, prefix) = match out.attributes().and_then(|a| a.get(VALUE)) {
                    Some(AttributeValue::B(b)) => record::challenge_of(b.as_ref())
                        .map(|(c, p)| (Some(c), p))
                        .unwrap_or((None, None)),
                    _ => (None, None),
                };
                Ok(Approval::Made(OneStepOutcome(Decision::Decided {
                    verdict: Verdict::Approved,
                    subject_tag: None,
                    challenge,
                    prefix,
                })))
            }
            Err(Some(e)) if service_code(&e) == Some("AccessDeniedException") => {
                Ok(Approval::Denied)
            }
            Err(Some(SdkError::ServiceError(e))) => match e.into_err() {
                UpdateItemError::ConditionalCheckFailedException(failed) => {
                    Ok(Approval::Refused(failed.item))
                }
                _ => Err(Error::Store),
            },
            Err(_) => Err(Error::Store),
        }
    }
}

/// The value an item holds as of `now_ms`: `None` past its expiry; a
/// record approved in one write with the approval's time put in.
fn value_of(
    item: &std::collections::HashMap<String, AttributeValue>,
    now_ms: u64,
) -> Result<Option<Vec<u8>>, Error> {
    let expires = match item.get(EXPIRES) {
        Some(AttributeValue::N(n)) => n.parse::<u64>().map_err(|_| Error::StoreCorrupt)?,
        _ => return Err(Error::StoreCorrupt),
    };
    if expires <= now_ms {
        return Ok(None);
    }
    let value = match item.get(VALUE) {
        Some(AttributeValue::B(b)) => b.as_ref(),
        _ => return Err(Error::StoreCorrupt),
    };
    match item.get(APPROVED_AT) {
        None => Ok(Some(value.to_vec())),
        Some(AttributeValue::N(n)) => {
            let at = n.parse::<u64>().map_err(|_| Error::StoreCorrupt)?;
            record::approved_at(value, at).map(Some)
        }
        Some(_) => Err(Error::StoreCorrupt),
    }
}

impl fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
