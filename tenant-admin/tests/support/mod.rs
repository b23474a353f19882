//! Test support for tenant-admin: the real `tenant-admin serve` binary on a
//! throwaway PostgreSQL catalog, a small HTTP/1.1 client for its API, and
//! helpers that seed regions, plans and shards backed by real databases.
//!
//! ```ignore
//! let admin = Admin::start();                      // catalog cluster + binary, /readyz is 200
//! let shards = PgCluster::start_many(2).unwrap();  // one cluster per shard
//! let seeded = admin.seed("eu-west", "starter", &shards).await;
//! let created = admin
//!     .post("/v1/tenants", admin.token(), &json!({"slug": "acme", "plan": "starter", "region": "eu-west"}))
//!     .await
//!     .expect_status(201);
//! ```
//!
//! Everything is real: the binary is the `tenant-admin` Cargo built, the
//! catalog and shard databases are `testkit::PgCluster`s, and requests go
//! over TCP. The process is killed when its [`Admin`] drops; its stderr (the
//! JSON log) is kept in a file and its tail is printed when a test panics.
#![allow(dead_code, unreachable_pub)]

pub mod gateway;

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use testkit::PgCluster;

/// `SECRETS_KEY`: 32 bytes as 64 hex digits.
pub const SECRETS_KEY: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// How long `serve` may take to answer `/readyz` with 200 (it migrates the catalog first).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one API request may take by default. Creating a tenant on an
/// unreachable database takes a few seconds before it answers 202.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(45);

/// Lines of the server log quoted when something fails.
const LOG_TAIL_LINES: usize = 60;

/// A port on 127.0.0.1 that nothing listened on a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

// ---------------------------------------------------------------- the process

/// How to start `tenant-admin serve`.
#[derive(Debug, Default)]
pub struct AdminBuilder {
    catalog: Option<PgCluster>,
    catalog_url: Option<String>,
    redis_url: Option<String>,
    secrets_key: Option<Option<String>>,
    bootstrap_token: Option<String>,
    binary: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl AdminBuilder {
    /// Runs this `tenant-admin` executable (default: the one Cargo built
    /// for this package's tests, else `tenant-admin` next to the test's
    /// `deps/` directory, for tests of other packages).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// The operator token registered at start (default: a fresh random one,
    /// so a test never talks to another test's server by mistake).
    pub fn bootstrap_token(mut self, token: impl Into<String>) -> Self {
        self.bootstrap_token = Some(token.into());
        self
    }

    /// Keeps the catalog in this cluster (database `catalog`, created here)
    /// instead of a cluster of its own.
    pub fn catalog_cluster(mut self, cluster: PgCluster) -> Self {
        self.catalog = Some(cluster);
        self
    }

    /// Uses an existing catalog database (whose cluster the caller keeps alive).
    pub fn catalog_url(mut self, url: impl Into<String>) -> Self {
        self.catalog_url = Some(url.into());
        self
    }

    /// Sets `REDIS_URL`.
    pub fn redis_url(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// Starts without `SECRETS_KEY` (then DSNs with passwords are refused).
    pub fn without_secrets_key(mut self) -> Self {
        self.secrets_key = Some(None);
        self
    }

    /// Sets another environment variable of the process (e.g. `RUST_LOG`).
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Starts the process and returns once `/readyz` answers 200.
    ///
    /// Blocking (it starts PostgreSQL and polls); fine inside a tokio test.
    ///
    /// # Panics
    ///
    /// When the catalog or the process cannot start, quoting the process's log.
    pub fn start(self) -> Admin {
        let (cluster, catalog_url) = match (self.catalog, self.catalog_url) {
            (_, Some(url)) => (None, url),
            (Some(cluster), None) => {
                let url = cluster
                    .create_database("catalog")
                    .expect("catalog database");
                (Some(cluster), url)
            }
            (None, None) => {
                let cluster = PgCluster::start().expect("a PostgreSQL cluster for the catalog");
                let url = cluster
                    .create_database("catalog")
                    .expect("catalog database");
                (Some(cluster), url)
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("tenant-admin-test-")
            .tempdir()
            .expect("a temporary directory");
        let token = self.bootstrap_token.unwrap_or_else(fresh_token);
        let mut env = vec![
            ("DATABASE_URL".to_owned(), catalog_url.clone()),
            ("ADMIN_BOOTSTRAP_TOKEN".to_owned(), token.clone()),
        ];
        match self.secrets_key {
            None => env.push(("SECRETS_KEY".to_owned(), SECRETS_KEY.to_owned())),
            Some(Some(key)) => env.push(("SECRETS_KEY".to_owned(), key)),
            Some(None) => {}
        }
        if let Some(url) = self.redis_url {
            env.push(("REDIS_URL".to_owned(), url));
        }
        env.extend(self.env);
        let mut admin = Admin {
            child: None,
            binary: self.binary.unwrap_or_else(default_binary),
            token,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            catalog_url,
            env,
            log: dir.path().join("tenant-admin.log"),
            dir,
            catalog_cluster: cluster,
        };
        admin.spawn_on_free_port();
        admin
    }
}

/// A running `tenant-admin serve` on 127.0.0.1, with its catalog.
pub struct Admin {
    /// The process; `None` while stopped.
    child: Option<Child>,
    /// The executable.
    binary: PathBuf,
    /// The bootstrap operator token.
    token: String,
    /// Where it listens; kept across [`Admin::start_again`].
    pub addr: SocketAddr,
    /// The catalog database, to check what was (not) written.
    pub catalog_url: String,
    /// The process's environment, kept to start it again.
    env: Vec<(String, String)>,
    /// stderr (the JSON log) of every run, appended.
    log: PathBuf,
    /// Holds the log; deleted on drop.
    dir: tempfile::TempDir,
    /// The catalog's cluster when this handle owns it; dropped after the process.
    catalog_cluster: Option<PgCluster>,
}

impl fmt::Debug for Admin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admin")
            .field("addr", &self.addr)
            .field("catalog_url", &self.catalog_url)
            .field("log", &self.log)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// A tenant-admin on a catalog cluster of its own, with `SECRETS_KEY`
    /// and the bootstrap token set.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// Options.
    pub fn builder() -> AdminBuilder {
        AdminBuilder::default()
    }

    /// The bootstrap operator token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A client for this server.
    pub fn client(&self) -> Client {
        Client::new(self.addr)
    }

    /// The catalog's cluster, when this handle owns it.
    pub fn catalog_cluster(&self) -> Option<&PgCluster> {
        self.catalog_cluster.as_ref()
    }

    /// A connection pool on the catalog.
    pub async fn catalog(&self) -> PgPool {
        connect(&self.catalog_url).await
    }

    /// Everything the process wrote to stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        let logs = self.logs();
        let lines: Vec<&str> = logs.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Whether the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process (as a crash or an outage would). Does nothing if stopped.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port and catalog; returns once
    /// `/readyz` answers 200. Does nothing if it runs.
    pub fn start_again(&mut self) {
        if self.is_running() {
            return;
        }
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn(self.addr.port()) {
                Ok(()) => return,
                Err(Spawn::PortTaken) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!(
                    "tenant-admin did not start again: {e:?}\n{}",
                    self.log_tail()
                ),
            }
        }
    }

    fn spawn_on_free_port(&mut self) {
        for _ in 0..5 {
            match self.spawn(free_port()) {
                Ok(()) => return,
                Err(Spawn::PortTaken) => {}
                Err(e) => panic!("tenant-admin did not start: {e:?}\n{}", self.log_tail()),
            }
        }
        panic!("tenant-admin lost the race for a free port five times");
    }

    fn spawn(&mut self, port: u16) -> Result<(), Spawn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the log file");
        let before = log.metadata().map(|m| m.len()).unwrap_or(0);
        let mut command = Command::new(&self.binary);
        command
            .args(["serve", "--migrate", "--listen", &addr.to_string()])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = command.spawn().expect("spawning tenant-admin");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let run = std::fs::read(&self.log)
                    .map(|b| String::from_utf8_lossy(&b[before as usize..]).into_owned())
                    .unwrap_or_default();
                if run.contains("cannot listen on") {
                    return Err(Spawn::PortTaken);
                }
                return Err(Spawn::Exited(status.code()));
            }
            if ready(addr, &self.token) {
                self.addr = addr;
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Spawn::NotReady);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // ------------------------------------------------------------ requests

    /// A request to build and send.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client().request(method, path)
    }

    /// `GET path` with a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request(Method::GET, path).bearer(token).send().await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.request(Method::POST, path)
            .bearer(token)
            .json(body)
            .send()
            .await
    }

    /// `POST path` with a JSON body and an `Idempotency-Key`.
    pub async fn post_idempotent(&self, path: &str, token: &str, key: &str, body: &Value) -> Reply {
        self.request(Method::POST, path)
            .bearer(token)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.request(Method::PATCH, path)
            .bearer(token)
            .json(body)
            .send()
            .await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.request(Method::DELETE, path)
            .bearer(token)
            .send()
            .await
    }

    // ------------------------------------------------------------ seeding

    /// Creates a token through the API; its id and secret.
    pub async fn create_token(&self, name: &str, role: &str) -> (i64, String) {
        let reply = self
            .post(
                "/v1/tokens",
                self.token(),
                &json!({"name": name, "role": role}),
            )
            .await
            .expect_status(201);
        let id = reply.json["id"].as_i64().expect("token id");
        let secret = reply.json["secret"].as_str().expect("token secret");
        (id, secret.to_owned())
    }

    /// Adds a region.
    pub async fn add_region(&self, name: &str) -> Value {
        self.post("/v1/regions", self.token(), &json!({ "name": name }))
            .await
            .expect_status(201)
            .json
    }

    /// Adds a plan with modest limits.
    pub async fn add_plan(&self, name: &str) -> Value {
        self.post(
            "/v1/plans",
            self.token(),
            &json!({
                "name": name, "rate_per_sec": 100, "burst": 50,
                "ip_rate_per_sec": 20, "cache": true, "cache_ttl_secs": 30,
                "max_body_bytes": 1_048_576
            }),
        )
        .await
        .expect_status(201)
        .json
    }

    /// Registers a shard whose database is created on its cluster first.
    pub async fn add_shard(&self, spec: &ShardSpec<'_>) -> ShardDb {
        let database = spec.database();
        let url = spec
            .cluster
            .create_database(&database)
            .expect("the shard's database");
        let dsn = match &spec.password {
            // Trust authentication ignores the password; tenant-admin still
            // has to store it sealed and send it.
            Some(password) => format!(
                "postgres://{}:{password}@127.0.0.1:{}/{database}",
                testkit::SUPERUSER,
                spec.cluster.port()
            ),
            None => url.clone(),
        };
        let pools = if spec.pools.is_empty() {
            json!({ spec.region.as_str(): ["127.0.0.1:9"] })
        } else {
            let mut map = serde_json::Map::new();
            for (region, addr) in &spec.pools {
                map.entry(region.clone())
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                    .expect("an array")
                    .push(json!(addr));
            }
            Value::Object(map)
        };
        let mut body = json!({ "id": spec.id, "region": spec.region, "dsn": dsn, "pools": pools });
        if let Some(weight) = spec.weight {
            body["weight"] = json!(weight);
        }
        let reply = self
            .post("/v1/shards", self.token(), &body)
            .await
            .expect_status(201);
        ShardDb {
            id: spec.id.to_owned(),
            region: spec.region.to_owned(),
            url,
            target: reply.json,
        }
    }

    /// A region, a plan, and one shard per cluster (`shard-1`, `shard-2`, …)
    /// in that region.
    pub async fn seed(&self, region: &str, plan: &str, clusters: &[PgCluster]) -> Seeded {
        self.add_region(region).await;
        self.add_plan(plan).await;
        let mut shards = Vec::new();
        for (i, cluster) in clusters.iter().enumerate() {
            let id = format!("shard-{}", i + 1);
            shards.push(self.add_shard(&ShardSpec::new(&id, region, cluster)).await);
        }
        Seeded {
            region: region.to_owned(),
            plan: plan.to_owned(),
            shards,
        }
    }

    /// Region `eu-west`, plan `starter`, `shard-1` in a database on the
    /// catalog's own cluster, and one active tenant `id` with `slug` on it.
    pub async fn seed_one_tenant(&self, id: &str, slug: &str) {
        let host = self.catalog_cluster().expect("the catalog's own cluster");
        self.add_region("eu-west").await;
        self.add_plan("starter").await;
        self.add_shard(&ShardSpec::new("shard-1", "eu-west", host))
            .await;
        self.create_tenant(
            &json!({"id": id, "slug": slug, "plan": "starter", "region": "eu-west"}),
        )
        .await;
    }

    /// Creates a tenant and expects it active (201).
    pub async fn create_tenant(&self, body: &Value) -> Value {
        self.post("/v1/tenants", self.token(), body)
            .await
            .expect_status(201)
            .json
    }

    /// The routing snapshot as JSON.
    pub async fn snapshot(&self) -> Value {
        self.get("/v1/routing/snapshot", self.token())
            .await
            .expect_status(200)
            .json
    }

    /// The routing snapshot's version.
    pub async fn snapshot_version(&self) -> u64 {
        self.snapshot().await["version"]
            .as_u64()
            .expect("a version")
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- tenant-admin log ({}), last lines ----\n{}\n---- end of tenant-admin log ----",
                self.log.display(),
                self.log_tail()
            );
        }
        self.stop();
    }
}

#[derive(Debug)]
enum Spawn {
    PortTaken,
    Exited(Option<i32>),
    NotReady,
}

/// Whether the server on `addr` answers `GET /readyz` with 200 and is the
/// one that knows `token` (not another test's that took the port).
fn ready(addr: SocketAddr, token: &str) -> bool {
    let answers_200 = |path: &str| -> std::io::Result<bool> {
        let timeout = Duration::from_millis(500);
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.set_write_timeout(Some(timeout))?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes())?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.1 200"))
    };
    answers_200("/readyz").unwrap_or(false) && answers_200("/v1/regions?limit=1").unwrap_or(false)
}

/// A bootstrap token no other test uses (std only, so other packages'
/// tests can include this module).
fn fresh_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut token = String::from("test-bootstrap-");
    for part in 0..2u64 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(part);
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        token.push_str(&format!("{:016x}", hasher.finish()));
    }
    token
}

/// The `tenant-admin` executable Cargo built: this package's own in its
/// tests, else the one in the target directory above the test's `deps/`.
fn default_binary() -> PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_tenant-admin") {
        return PathBuf::from(path);
    }
    let path = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("tenant-admin")))
        .expect("the test executable's directory");
    assert!(
        path.exists(),
        "{} is missing: build it first (cargo build -p tenant-admin)",
        path.display()
    );
    path
}

/// A small connection pool on a database.
pub async fn connect(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// `SELECT count(*) FROM table`.
pub async fn count(db: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(db)
        .await
        .unwrap_or_else(|e| panic!("counting {table}: {e}"))
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
///
/// # Panics
///
/// When `limit` passes first, with `what` in the message.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- shards

/// A shard to register: its id, region, the cluster its database lives on,
/// and its app-server pools.
#[derive(Debug)]
pub struct ShardSpec<'a> {
    id: String,
    region: String,
    cluster: &'a PgCluster,
    database: Option<String>,
    password: Option<String>,
    weight: Option<u32>,
    pools: Vec<(String, String)>,
}

impl<'a> ShardSpec<'a> {
    /// Shard `id` in `region`, its database on `cluster` (named after the id).
    pub fn new(id: &str, region: &str, cluster: &'a PgCluster) -> Self {
        Self {
            id: id.to_owned(),
            region: region.to_owned(),
            cluster,
            database: None,
            password: None,
            weight: None,
            pools: Vec::new(),
        }
    }

    /// The database's name (default: the id with `-` as `_`).
    pub fn database(&self) -> String {
        self.database
            .clone()
            .unwrap_or_else(|| self.id.replace(['-', '.'], "_"))
    }

    /// Names the database.
    pub fn in_database(mut self, name: &str) -> Self {
        self.database = Some(name.to_owned());
        self
    }

    /// Puts a password in the registered DSN.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// The placement weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Adds an app server `addr` to the pool of `region` (default: one
    /// placeholder server in the shard's region).
    pub fn pool(mut self, region: &str, addr: impl Into<String>) -> Self {
        self.pools.push((region.to_owned(), addr.into()));
        self
    }
}

/// A registered shard and its database.
#[derive(Debug, Clone)]
pub struct ShardDb {
    /// The shard's id.
    pub id: String,
    /// Its region.
    pub region: String,
    /// Its database, as the superuser (no password).
    pub url: String,
    /// The API's answer when it was registered.
    pub target: Value,
}

impl ShardDb {
    /// A pool on the shard's database.
    pub async fn pool(&self) -> PgPool {
        connect(&self.url).await
    }

    /// The tenant ids in the shard's own `tenants` table (read as the
    /// superuser, which row-level security does not confine).
    pub async fn tenant_ids(&self) -> Vec<String> {
        let db = self.pool().await;
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass('tenants')::text")
            .fetch_one(&db)
            .await
            .expect("to_regclass");
        let ids = match exists {
            Some(_) => sqlx::query_scalar("SELECT tenant_id FROM tenants ORDER BY tenant_id")
                .fetch_all(&db)
                .await
                .expect("the shard's tenants"),
            None => Vec::new(),
        };
        db.close().await;
        ids
    }
}

/// What [`Admin::seed`] created.
#[derive(Debug)]
pub struct Seeded {
    /// The region.
    pub region: String,
    /// The plan.
    pub plan: String,
    /// The shards, one per cluster.
    pub shards: Vec<ShardDb>,
}

impl Seeded {
    /// The shard with this id.
    pub fn shard(&self, id: &str) -> &ShardDb {
        self.shards
            .iter()
            .find(|s| s.id == id)
            .unwrap_or_else(|| panic!("no shard {id}"))
    }
}

// ---------------------------------------------------------------- HTTP client

/// An HTTP/1.1 client for one server: one connection per request, every
/// request bounded by a timeout.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    addr: SocketAddr,
}

impl Client {
    /// A client for `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }

    /// A request to build and send.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        RequestBuilder {
            addr: self.addr,
            method,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            body: Vec::new(),
            timeout: REQUEST_TIMEOUT,
        }
    }
}

/// A request being built.
#[derive(Debug)]
pub struct RequestBuilder {
    addr: SocketAddr,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
    timeout: Duration,
}

impl RequestBuilder {
    /// `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_str(value).expect("a header value"),
        );
        self
    }

    /// A JSON body.
    pub fn json(self, body: &Value) -> Self {
        self.body(
            "application/json",
            serde_json::to_vec(body).expect("JSON serialises"),
        )
    }

    /// A body of any type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        self.headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("a content type"),
        );
        self.body = body.into();
        self
    }

    /// A raw body without a content type.
    pub fn raw_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Another timeout than the default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends it.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached or does not answer within the timeout.
    pub async fn send(self) -> Reply {
        let what = format!("{} {}", self.method, self.path);
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange()).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what}: no answer within {timeout:?}"),
        }
    }

    /// Sends it; the error when the exchange fails (the server closed the
    /// connection, say), for tests of what a server does with bad requests.
    pub async fn try_send(self) -> Result<Reply, String> {
        let timeout = self.timeout;
        tokio::time::timeout(timeout, self.exchange())
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
    }

    async fn exchange(self) -> Result<Reply, String> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connecting to {}: {e}", self.addr))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(connection);
        let mut request = http::Request::builder()
            .method(self.method)
            .uri(&self.path)
            .header(header::HOST, self.addr.to_string())
            .body(Full::new(Bytes::from(self.body)))
            .map_err(|e| format!("building the request: {e}"))?;
        request.headers_mut().extend(self.headers);
        let started = Instant::now();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("sending: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.to_vec(),
            json,
            elapsed: started.elapsed(),
        })
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
    /// The body as JSON, or `Null` when it is not JSON.
    pub json: Value,
    /// From sending the request to the end of the response head.
    pub elapsed: Duration,
}

impl Reply {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `x-request-id` header.
    pub fn request_id(&self) -> &str {
        self.header("x-request-id").expect("an x-request-id header")
    }

    /// Panics unless the status is `status`; the reply, for chaining.
    #[track_caller]
    pub fn expect_status(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status}, got {}: {}",
            self.status,
            self.text()
        );
        self
    }

    /// Panics unless this is a problem document (`application/problem+json`)
    /// with `status`, naming `field` (or no field for `None`); the reply.
    #[track_caller]
    pub fn expect_problem(self, status: u16, field: Option<&str>) -> Self {
        let reply = self.expect_status(status);
        assert_eq!(
            reply.header("content-type"),
            Some("application/problem+json"),
            "{}",
            reply.text()
        );
        assert_eq!(reply.json["status"], json!(status), "{}", reply.text());
        assert!(
            reply.json["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("urn:switchyard:problem:")),
            "{}",
            reply.text()
        );
        assert!(reply.json["title"].is_string(), "{}", reply.text());
        assert!(reply.json["detail"].is_string(), "{}", reply.text());
        assert_eq!(
            reply.json["request_id"].as_str(),
            Some(reply.request_id()),
            "the problem names the request"
        );
        assert_eq!(
            reply.json.get("field").and_then(Value::as_str),
            field,
            "{}",
            reply.text()
        );
        reply
    }
}
