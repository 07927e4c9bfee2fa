//! A real moto server for integration tests: DynamoDB, SQS and SSM over the AWS wire protocol on 127.0.0.1.
//!
//! One server per test binary ([`shared`]), started on first use; every test creates its own uniquely named
//! tables and queues ([`unique`]), so tests run in parallel against it. The server binary is
//! `$HUBRELAY_MOTO_SERVER`, else `<workspace>/scripts/moto-server` (moto from `.tools/venv`, installed by
//! `scripts/install-test-tools`). When neither exists the tests fail: they never skip silently.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(15);
pub const REGION: &str = "us-east-1";

/// A running moto server. Dropping it stops the server.
pub struct MotoServer {
    child: Child,
    /// The watchdog shell kills moto when this pipe closes: on drop, and also when the test process exits
    /// without dropping (the shared server lives in a static).
    stdin: Option<ChildStdin>,
    port: u16,
    log: PathBuf,
}

impl MotoServer {
    /// Start a server on a free port of 127.0.0.1 and wait until it accepts connections.
    pub fn start() -> Result<MotoServer, String> {
        let binary = moto_binary()?;
        let mut last_error = String::new();
        // A port picked free can be taken before moto binds it: try a few.
        for _ in 0..3 {
            match Self::start_on(&binary, free_port()?) {
                Ok(server) => return Ok(server),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    fn start_on(binary: &PathBuf, port: u16) -> Result<MotoServer, String> {
        let log = std::env::temp_dir().join(format!("hubrelay-moto-{}-{port}.log", std::process::id()));
        let log_file = std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        // `sh` runs moto in the background and, as soon as its stdin (our pipe) reaches EOF, kills it and
        // removes the log.
        let script = r#"
            "$0" -H 127.0.0.1 -p "$1" </dev/null &
            pid=$!
            trap 'kill $pid 2>/dev/null; rm -f "$2"' EXIT
            while read -r _; do :; done
        "#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(binary)
            .arg(port.to_string())
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let stdin = child.stdin.take();
        let mut server = MotoServer { child, stdin, port, log };

        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() && server.answers_http() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("moto server exited early ({status}):\n{}", server.log_tail()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "moto server did not answer on {addr} within {READY_TIMEOUT:?}:\n{}",
                    server.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether moto answers an HTTP request (its own API), i.e. it is moto and it is ready.
    fn answers_http(&self) -> bool {
        use std::io::Write;
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!("GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n", self.port);
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        drop(self.stdin.take()); // EOF: the watchdog kills moto and exits
        let deadline = Instant::now() + Duration::from_secs(5);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while Instant::now() < deadline {
            // The watchdog has sent the kill; wait until the server has really let go of its port.
            if let Ok(Some(_)) = self.child.try_wait() {
                if TcpStream::connect_timeout(&addr, Duration::from_millis(50)).is_err() {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `$HUBRELAY_MOTO_SERVER`, else the workspace's `scripts/moto-server` (moto from `.tools/venv`, DynamoDB
/// requests serialised so conditional writes are atomic as in DynamoDB).
fn moto_binary() -> Result<PathBuf, String> {
    let hint = "moto server not found: run scripts/install-test-tools (or scripts/test)";
    if let Some(path) = std::env::var_os("HUBRELAY_MOTO_SERVER").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{hint}; HUBRELAY_MOTO_SERVER={} does not exist", path.display()))
        };
    }
    // The workspace root: the first ancestor of this crate holding scripts/moto-server.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .ancestors()
        .find(|dir| dir.join("scripts/moto-server").is_file())
        .unwrap_or(manifest.parent().expect("the crate sits inside the workspace"))
        .to_path_buf();
    let path = workspace.join("scripts/moto-server");
    if path.is_file() && workspace.join(".tools/venv/bin/python").is_file() {
        Ok(path)
    } else {
        Err(format!("{hint} (looked for $HUBRELAY_MOTO_SERVER and {})", path.display()))
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// The test binary's shared server, started on first use. Panics (failing the test) when it cannot start.
pub fn shared() -> &'static MotoServer {
    static SERVER: OnceLock<Result<MotoServer, String>> = OnceLock::new();
    match SERVER.get_or_init(MotoServer::start) {
        Ok(server) => server,
        Err(e) => panic!("{e}"),
    }
}

/// A name no other test (or test run) uses: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn credentials() -> aws_sdk_dynamodb::config::Credentials {
    aws_sdk_dynamodb::config::Credentials::new("testing", "testing", None, None, "moto")
}

pub fn dynamodb(server: &MotoServer) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(server.endpoint())
        .http_client(hubrelay_aws::sdk::http_client())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

pub fn sqs(server: &MotoServer) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(server.endpoint())
        .http_client(hubrelay_aws::sdk::http_client())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

pub fn ssm(server: &MotoServer) -> aws_sdk_ssm::Client {
    let config = aws_sdk_ssm::Config::builder()
        .behavior_version(aws_sdk_ssm::config::BehaviorVersion::latest())
        .region(aws_sdk_ssm::config::Region::new(REGION))
        .credentials_provider(credentials())
        .endpoint_url(server.endpoint())
        .http_client(hubrelay_aws::sdk::http_client())
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

/// A fresh idempotency table shaped like template.yaml's: `id` HASH key, on demand, TTL on `expiration`.
pub async fn idempotency_table(client: &aws_sdk_dynamodb::Client) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
        ScalarAttributeType, TimeToLiveSpecification,
    };
    let attribute =
        |name: &str, kind| AttributeDefinition::builder().attribute_name(name).attribute_type(kind).build().unwrap();
    let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap();
    let table = unique("idempotency");
    client
        .create_table()
        .table_name(&table)
        // As template.yaml's IdempotencyTable.
        .attribute_definitions(attribute("id", ScalarAttributeType::S))
        .attribute_definitions(attribute("contact", ScalarAttributeType::S))
        .attribute_definitions(attribute("applied_at", ScalarAttributeType::N))
        .key_schema(key("id", KeyType::Hash))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("by_contact")
                .key_schema(key("contact", KeyType::Hash))
                .key_schema(key("applied_at", KeyType::Range))
                .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
    client
        .update_time_to_live()
        .table_name(&table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().attribute_name("expiration").enabled(true).build().unwrap(),
        )
        .send()
        .await
        .expect("enable TTL");
    table
}

/// A fresh retry queue and dead-letter queue: `(queue_url, dlq_url)`.
pub async fn retry_queues(sqs: &aws_sdk_sqs::Client) -> (String, String) {
    let mut urls = Vec::new();
    for name in ["retry", "dlq"] {
        let out = sqs.create_queue().queue_name(unique(name)).send().await.expect("create queue");
        urls.push(out.queue_url.expect("queue url"));
    }
    let dlq = urls.pop().unwrap();
    (urls.pop().unwrap(), dlq)
}

/// A fresh SSM SecureString parameter holding `value`, as the stack's secrets are; returns its name.
pub async fn secure_parameter(ssm: &aws_sdk_ssm::Client, value: &str) -> String {
    let name = format!("/hubrelay/{}/secret", unique("p"));
    ssm.put_parameter()
        .name(&name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("put parameter");
    name
}
