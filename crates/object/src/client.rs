//! Where objects live: [`ObjectLocation`], [`S3Settings`] and the [`ObjectClient`] that
//! holds the store and the runtime that drives its requests.

use crate::error::{Cause, ObjectError};
use crate::raw::RawS3;
use object_store::aws::AwsCredential;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientConfigKey, ClientOptions, ObjectStore, RetryConfig};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// An object's address, `s3://BUCKET/KEY`.
///
/// # Examples
/// ```
/// use ckpt_object::ObjectLocation;
/// let loc = ObjectLocation::parse("s3://backups/node-1/state.ckpt").unwrap();
/// assert_eq!(loc.bucket(), "backups");
/// assert_eq!(loc.key(), "node-1/state.ckpt");
/// assert!(ObjectLocation::parse("s3://backups").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectLocation {
    bucket: String,
    key: String,
}

impl ObjectLocation {
    /// Whether `text` names object storage at all (starts with `s3://`), so that a caller
    /// can route it here and everything else to local files.
    pub fn is_object_url(text: &str) -> bool {
        text.starts_with("s3://")
    }

    /// Parses `s3://BUCKET/KEY`.
    ///
    /// # Errors
    /// [`ObjectError::InvalidLocation`] when the scheme is not `s3`, the bucket or the key
    /// is empty, or the key is not a valid object path (empty segments, `.` or `..`).
    pub fn parse(url: &str) -> Result<Self, ObjectError> {
        let invalid = |reason| ObjectError::InvalidLocation { url: url.to_owned(), reason };
        let rest = url.strip_prefix("s3://").ok_or_else(|| invalid("the scheme is not s3://"))?;
        let (bucket, key) =
            rest.split_once('/').ok_or_else(|| invalid("no key after the bucket"))?;
        if bucket.is_empty() {
            return Err(invalid("the bucket is empty"));
        }
        if key.is_empty() {
            return Err(invalid("the key is empty"));
        }
        if Path::parse(key).map_or(true, |p| p.as_ref() != key) {
            return Err(invalid("the key has empty, '.' or '..' segments or a trailing '/'"));
        }
        Ok(Self { bucket: bucket.to_owned(), key: key.to_owned() })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key inside the bucket.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl fmt::Display for ObjectLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// How to reach an S3-compatible server.
///
/// [`S3Settings::from_env`] reads the standard variables; the `with_*` methods override
/// them (tests use these instead of the process environment, which is shared by all
/// threads). Timeouts and retries are bounded so that a wrong endpoint, wrong credentials
/// or a missing bucket fail within seconds rather than hang.
#[derive(Clone)]
pub struct S3Settings {
    builder: AmazonS3Builder,
    connect_timeout: Duration,
    request_timeout: Duration,
    max_retries: usize,
    retry_timeout: Duration,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret key.
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint())
            .field("region", &self.builder.get_config_value(&AmazonS3ConfigKey::Region))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("retry_timeout", &self.retry_timeout)
            .finish_non_exhaustive()
    }
}

impl S3Settings {
    /// Settings from `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_REGION`, `AWS_ALLOW_HTTP` (and the other `AWS_*` variables `object_store`
    /// understands), with a 5 s connect timeout, a 120 s request timeout and 3 retries with
    /// backoff within 30 s.
    pub fn from_env() -> Self {
        Self {
            builder: AmazonS3Builder::from_env(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_mins(2),
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        }
    }

    /// Uses `endpoint` (for example `http://127.0.0.1:8333`) instead of AWS.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: &str) -> Self {
        self.builder = self.builder.with_endpoint(endpoint);
        self
    }

    /// Uses these credentials.
    #[must_use]
    pub fn with_credentials(mut self, access_key_id: &str, secret_access_key: &str) -> Self {
        self.builder = self
            .builder
            .with_access_key_id(access_key_id)
            .with_secret_access_key(secret_access_key);
        self
    }

    /// Uses this region (S3 signs requests with it).
    #[must_use]
    pub fn with_region(mut self, region: &str) -> Self {
        self.builder = self.builder.with_region(region);
        self
    }

    /// Allows plain `http://` endpoints (a local test server).
    #[must_use]
    pub fn with_allow_http(mut self, allow: bool) -> Self {
        self.builder = self.builder.with_allow_http(allow);
        self
    }

    /// Bounds each connection attempt and each request.
    #[must_use]
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> Self {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// Retries throttled, 5xx and failed-connection requests at most `max_retries` times,
    /// and never after `retry_timeout` from the first attempt.
    #[must_use]
    pub fn with_retries(mut self, max_retries: usize, retry_timeout: Duration) -> Self {
        self.max_retries = max_retries;
        self.retry_timeout = retry_timeout;
        self
    }

    /// The signer for the requests `object_store` lacks; `None` without credentials
    /// (anonymous access cannot use them).
    fn raw(&self, endpoint: &str, bucket: &str) -> Result<Option<RawS3>, ObjectError> {
        let value = |key| self.builder.get_config_value(&key);
        let (Some(key_id), Some(secret_key)) =
            (value(AmazonS3ConfigKey::AccessKeyId), value(AmazonS3ConfigKey::SecretAccessKey))
        else {
            return Ok(None);
        };
        let credential =
            AwsCredential { key_id, secret_key, token: value(AmazonS3ConfigKey::Token) };
        let region = value(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".to_owned());
        RawS3::new(
            endpoint,
            bucket,
            credential,
            &region,
            self.connect_timeout,
            self.request_timeout,
        )
        .map(Some)
        .map_err(|e| ObjectError::InvalidSettings { reason: e.to_string() })
    }

    /// The endpoint requests go to, for messages: the configured one, or AWS's.
    pub fn endpoint(&self) -> String {
        self.builder.get_config_value(&AmazonS3ConfigKey::Endpoint).unwrap_or_else(|| {
            let region = self
                .builder
                .get_config_value(&AmazonS3ConfigKey::Region)
                .unwrap_or_else(|| "us-east-1".to_owned());
            format!("https://s3.{region}.amazonaws.com")
        })
    }
}

/// A connection to one bucket, with the runtime that drives its requests.
///
/// ckpt is synchronous; `object_store` is async. The client owns a small multi-threaded
/// tokio runtime (two worker threads) and exposes blocking calls that run futures on it, so
/// that [`ObjectSink`](crate::ObjectSink) and [`ObjectSource`](crate::ObjectSource) can
/// implement the synchronous [`Sink`](ckpt_frame_core::Sink) and
/// [`Source`](ckpt_frame_core::Source) while several parts and read-aheads travel at once.
/// Cloning is cheap and shares the runtime, the connection pool and the read counters
/// ([`ObjectClient::requests_sent`], [`ObjectClient::bytes_fetched`]).
#[derive(Clone)]
pub struct ObjectClient {
    runtime: Arc<tokio::runtime::Runtime>,
    store: Arc<dyn ObjectStore>,
    multipart: Arc<dyn MultipartStore>,
    /// Requests `object_store` lacks; `None` for stores that are not S3 endpoints.
    raw: Option<Arc<RawS3>>,
    endpoint: String,
    bucket: String,
    counters: Arc<Counters>,
}

/// What the readers of one client (and its clones) asked of the server. Shared by
/// clones so that a parallel restore, whose workers each hold a clone, adds up in one
/// place.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl fmt::Debug for ObjectClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectClient")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

impl ObjectClient {
    /// A client for `bucket` on the S3 server `settings` describe. Sends no request.
    ///
    /// # Errors
    /// [`ObjectError::InsideAsyncRuntime`] when called from async code,
    /// [`ObjectError::InvalidSettings`] when `object_store` refuses the settings, and
    /// [`ObjectError::Runtime`] when the runtime's threads cannot start.
    pub fn s3(settings: &S3Settings, bucket: &str) -> Result<Self, ObjectError> {
        let endpoint = settings.endpoint();
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: settings.max_retries,
            retry_timeout: settings.retry_timeout,
        };
        let options = ClientOptions::new()
            .with_connect_timeout(settings.connect_timeout)
            .with_timeout(settings.request_timeout);
        // `with_client_options` replaces every client option, `AWS_ALLOW_HTTP` included:
        // carry over the ones set before (from the environment or `with_allow_http`).
        let allow_http_key = AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp);
        let mut builder = settings
            .builder
            .clone()
            .with_bucket_name(bucket)
            .with_retry(retry)
            .with_client_options(options);
        if let Some(allow_http) = settings.builder.get_config_value(&allow_http_key) {
            builder = builder.with_config(allow_http_key, allow_http);
        }
        let store = Arc::new(
            builder.build().map_err(|e| ObjectError::InvalidSettings { reason: e.to_string() })?,
        );
        let mut client = Self::with_store(store, &endpoint, bucket)?;
        client.raw = settings.raw(&endpoint, bucket)?.map(Arc::new);
        Ok(client)
    }

    /// A client over any `object_store` store (for example `InMemory` in unit tests);
    /// `endpoint` and `bucket` only label messages.
    ///
    /// # Errors
    /// [`ObjectError::InsideAsyncRuntime`] when called from async code and
    /// [`ObjectError::Runtime`] when the runtime's threads cannot start.
    pub fn with_store<S: ObjectStore + MultipartStore>(
        store: Arc<S>,
        endpoint: &str,
        bucket: &str,
    ) -> Result<Self, ObjectError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(ObjectError::InsideAsyncRuntime);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ckpt-object-io")
            .enable_all()
            .build()
            .map_err(|cause| ObjectError::Runtime { cause })?;
        Ok(Self {
            runtime: Arc::new(runtime),
            store: Arc::clone(&store) as Arc<dyn ObjectStore>,
            multipart: store,
            raw: None,
            endpoint: endpoint.to_owned(),
            bucket: bucket.to_owned(),
            counters: Arc::default(),
        })
    }

    /// Read requests (`HEAD` and ranged `GET`) sent so far by the readers of this client
    /// and its clones ([`ObjectSource`](crate::ObjectSource),
    /// [`RemoteCheckpoint`](crate::RemoteCheckpoint)), prefetches included. A request
    /// `object_store` retries counts once; uploads are reported by
    /// [`UploadSummary`](crate::UploadSummary) instead.
    ///
    /// # Examples
    /// ```
    /// # use std::sync::Arc;
    /// use ckpt_object::ObjectClient;
    /// let store = Arc::new(object_store::memory::InMemory::new());
    /// let client = ObjectClient::with_store(store, "memory", "bucket")?;
    /// assert_eq!((client.requests_sent(), client.bytes_fetched()), (0, 0));
    /// # Ok::<(), ckpt_object::ObjectError>(())
    /// ```
    pub fn requests_sent(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// Object bytes received so far by the readers of this client and its clones (the
    /// bodies of completed ranged `GET`s, prefetches included).
    pub fn bytes_fetched(&self) -> u64 {
        self.counters.bytes.load(Ordering::Relaxed)
    }

    /// Counts one read request about to be sent.
    pub(crate) fn count_request(&self) {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A handle that counts received bytes, for futures running on the runtime.
    pub(crate) fn byte_counter(&self) -> ByteCounter {
        ByteCounter(Arc::clone(&self.counters))
    }

    /// The endpoint, as shown in messages.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The underlying store, for operations this crate does not wrap.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The low-level multipart API of the same store (numbered parts, for resume).
    pub(crate) fn multipart(&self) -> &Arc<dyn MultipartStore> {
        &self.multipart
    }

    /// Conditional completion and part listing, when the store is an S3 endpoint.
    pub(crate) fn raw(&self) -> Option<&Arc<RawS3>> {
        self.raw.as_ref()
    }

    /// Runs `future` to completion on the client's runtime.
    pub(crate) fn block_on<F: Future>(&self, future: F) -> Result<F::Output, ObjectError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(ObjectError::InsideAsyncRuntime);
        }
        Ok(self.runtime.block_on(future))
    }

    /// Starts `future` on the client's runtime without waiting for it.
    pub(crate) fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime.spawn(future)
    }

    /// The object path of `key`.
    pub(crate) fn path(&self, key: &str) -> Result<Path, ObjectError> {
        match Path::parse(key) {
            Ok(path) if path.as_ref() == key => Ok(path),
            _ => Err(ObjectError::InvalidLocation {
                url: format!("s3://{}/{key}", self.bucket),
                reason: "the key has empty, '.' or '..' segments or a trailing '/'",
            }),
        }
    }

    /// Turns an `object_store` failure of `operation` on `key` into an error naming the
    /// endpoint, bucket and key. A "not found" is told apart into a missing bucket or a
    /// missing key by one listing of the bucket.
    pub(crate) fn classify(
        &self,
        key: &str,
        operation: &'static str,
        offset: Option<u64>,
        error: object_store::Error,
    ) -> ObjectError {
        let endpoint = self.endpoint.clone();
        let bucket = self.bucket.clone();
        let key = key.to_owned();
        match error {
            object_store::Error::NotFound { .. } => {
                if let Some(bucket_error) = self.bucket_missing() {
                    return ObjectError::NoSuchBucket { endpoint, bucket, cause: bucket_error };
                }
                ObjectError::NoSuchKey { endpoint, bucket, key, cause: Box::new(error) }
            }
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => {
                ObjectError::AccessDenied { endpoint, bucket, key, cause: Box::new(error) }
            }
            other => {
                let text = other.to_string();
                if text.contains("NoSuchBucket") {
                    ObjectError::NoSuchBucket { endpoint, bucket, cause: Box::new(other) }
                } else if text.contains("AccessDenied")
                    || text.contains("InvalidAccessKeyId")
                    || text.contains("SignatureDoesNotMatch")
                {
                    ObjectError::AccessDenied { endpoint, bucket, key, cause: Box::new(other) }
                } else {
                    ObjectError::Request {
                        endpoint,
                        bucket,
                        key,
                        operation,
                        offset,
                        cause: Box::new(other),
                    }
                }
            }
        }
    }

    /// `Some(cause)` when a listing of the bucket says it does not exist.
    fn bucket_missing(&self) -> Option<Cause> {
        let store = Arc::clone(&self.store);
        let listing = self.block_on(async move { store.list_with_delimiter(None).await }).ok()?;
        match listing {
            Err(e @ object_store::Error::NotFound { .. }) => Some(Box::new(e)),
            Err(e) if e.to_string().contains("NoSuchBucket") => Some(Box::new(e)),
            _ => None,
        }
    }
}

/// Adds received bytes to a client's counter from inside a spawned request.
#[derive(Clone)]
pub(crate) struct ByteCounter(Arc<Counters>);

impl ByteCounter {
    pub(crate) fn add(&self, bytes: usize) {
        self.0.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}
