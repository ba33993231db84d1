//! A DynamoDB challenge store (feature `dynamodb`).

use core::fmt;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TimeToLiveSpecification,
};

use super::AsyncStore;
use crate::Error;
use crate::deadline::bounded;

const DEFAULT_PREFIX: &str = "pinseal:otp:";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// The attribute names of an item.
const PK: &str = "pk";
const VALUE: &str = "v";
const EXPIRES: &str = "exp";
const TTL: &str = "ttl";

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
/// Reads are strongly consistent. [`AsyncStore::compare_and_swap`] is one
/// conditional `PutItem` (or `DeleteItem`) whose condition is the value
/// read (`v = :expected AND exp > :now`) or its absence
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
/// `dynamodb:DeleteItem` and `dynamodb:DescribeTable` (for
/// [`DynamoBuilder::connect`]) on the table, and `CreateTable` and
/// `UpdateTimeToLive` only for the set-up helpers.
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
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let expires = match item.get(EXPIRES) {
            Some(AttributeValue::N(n)) => n.parse::<u64>().map_err(|_| Error::StoreCorrupt)?,
            _ => return Err(Error::StoreCorrupt),
        };
        if expires <= now_ms {
            return Ok(None);
        }
        match item.get(VALUE) {
            Some(AttributeValue::B(b)) => Ok(Some(b.as_ref().to_vec())),
            _ => Err(Error::StoreCorrupt),
        }
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<bool, Error> {
        let (condition, mut values) = match expected {
            None => (
                "attribute_not_exists(#pk) OR #exp <= :now",
                vec![(":now", number(now_ms))],
            ),
            Some(v) => (
                "#v = :expected AND #exp > :now",
                vec![
                    (":now", number(now_ms)),
                    (":expected", AttributeValue::B(Blob::new(v))),
                ],
            ),
        };
        let mut names = vec![("#exp", EXPIRES)];
        if expected.is_some() {
            names.push(("#v", VALUE));
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
