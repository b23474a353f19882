//! `loadtest upstream` over real sockets: the server in-process through
//! `upstream::serve` (exactly what the binary runs), spoken to with hyper's client over
//! HTTP/1.1 and h2c, and the built binary itself for flags, startup and signals.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::HeaderMap;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use loadtest::upstream::{self, Config, Served};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The binary under test.
const BINARY: &str = env!("CARGO_BIN_EXE_loadtest");

/// How long a spawned binary gets to start or to stop before the test gives up on it.
const PROCESS_DEADLINE: Duration = Duration::from_secs(10);

/// An upstream served in-process on 127.0.0.1:0; shuts down when stopped or dropped.
struct Running {
    /// Where it listens.
    addr: SocketAddr,
    /// Completes the server's shutdown future when sent or dropped.
    stop: oneshot::Sender<()>,
    /// The server task, which reports once it has drained.
    served: JoinHandle<Served>,
}

impl Running {
    /// Starts an upstream called `name` with the default grace.
    async fn start(name: &str) -> Self {
        Self::start_with(Config::new(name.parse().unwrap())).await
    }

    /// Starts an upstream with `config`.
    async fn start_with(config: Config) -> Self {
        let listener = upstream::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(upstream::serve(listener, config, async move {
            // Sent or dropped: either way, time to stop.
            let _ = stopped.await;
        }));
        Self { addr, stop, served }
    }

    /// `http://127.0.0.1:PORT{path_and_query}`.
    fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// Asks for shutdown and waits for the server's report.
    async fn stop(self) -> Served {
        let _ = self.stop.send(());
        self.served.await.unwrap()
    }
}

/// A response, read to its end.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    /// The body as JSON.
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "body is not JSON ({err}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).unwrap()
    }

    /// Every value of response header `name`.
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap())
            .collect()
    }

    /// The single value of response header `name`, if present.
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }
}

/// An HTTP/1.1 client.
fn http1() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A cleartext HTTP/2 client with prior knowledge (h2c, no upgrade dance).
fn h2c() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

/// Sends `request` and reads the whole response.
async fn send(client: &Client<HttpConnector, Full<Bytes>>, request: Request<Full<Bytes>>) -> Reply {
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// A bodiless GET of `url` over HTTP/1.1.
async fn get(url: &str) -> Reply {
    send(&http1(), Request::get(url).body(Full::default()).unwrap()).await
}

/// A GET carrying everything the gateway adds to an upstream request.
fn gateway_request(url: &str) -> hyper::http::request::Builder {
    Request::get(url)
        .header("x-tenant-id", "t-42")
        .header("x-tenant-slug", "acme")
        .header("x-tenant-target", "shard-a")
        .header("x-tenant-region", "eu-west")
        .header("x-request-id", "req-1")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "acme.app.example.test")
}

#[tokio::test]
async fn echo_describes_method_path_tenant_request_id_and_forwarding() {
    let up = Running::start("shard-a").await;
    let request = gateway_request(&up.url("/orders/7?page=2"))
        .method(Method::POST)
        .body(Full::new(Bytes::from_static(b"hello")))
        .unwrap();
    let reply = send(&http1(), request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.json(),
        json!({
            "upstream": "shard-a",
            "method": "POST",
            "path": "/orders/7",
            "query": "page=2",
            "version": "HTTP/1.1",
            "host": up.addr.to_string(),
            "tenant": { "id": "t-42", "slug": "acme", "target": "shard-a", "region": "eu-west" },
            "request_id": "req-1",
            "forwarded": { "for": "203.0.113.7", "proto": "https", "host": "acme.app.example.test" },
            "body_bytes": 5,
        })
    );
}

#[tokio::test]
async fn tenant_and_request_id_headers_are_mirrored_as_x_seen_headers() {
    let up = Running::start("shard-a").await;
    let reply = send(
        &http1(),
        gateway_request(&up.url("/")).body(Full::default()).unwrap(),
    )
    .await;
    for (header, value) in [
        ("x-upstream", "shard-a"),
        ("x-seen-tenant-id", "t-42"),
        ("x-seen-tenant-slug", "acme"),
        ("x-seen-tenant-target", "shard-a"),
        ("x-seen-tenant-region", "eu-west"),
        ("x-seen-request-id", "req-1"),
    ] {
        assert_eq!(reply.header(header), Some(value), "{header}");
    }
}

#[tokio::test]
async fn mirror_0_leaves_the_x_seen_headers_out_but_keeps_the_echo() {
    let up = Running::start("shard-a").await;
    let reply = send(
        &http1(),
        gateway_request(&up.url("/?mirror=0&bytes=2048"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.header("x-upstream"), Some("shard-a"));
    for header in ["x-seen-tenant-id", "x-seen-request-id"] {
        assert_eq!(reply.header(header), None, "{header}");
    }
    assert_eq!(reply.json()["tenant"]["id"], "t-42");
    assert_eq!(reply.body.len(), 2048);
}

#[tokio::test]
async fn missing_headers_are_null_in_the_echo_and_absent_from_the_mirrors() {
    let up = Running::start("shard-a").await;
    let reply = get(&up.url("/")).await;
    let echo = reply.json();
    assert_eq!(
        echo["tenant"],
        json!({ "id": null, "slug": null, "target": null, "region": null })
    );
    assert_eq!(echo["request_id"], Value::Null);
    assert_eq!(
        echo["forwarded"],
        json!({ "for": null, "proto": null, "host": null })
    );
    assert_eq!(echo["query"], Value::Null);
    assert_eq!(reply.header("x-upstream"), Some("shard-a"));
    for header in [
        "x-seen-tenant-id",
        "x-seen-tenant-slug",
        "x-seen-tenant-target",
        "x-seen-tenant-region",
        "x-seen-request-id",
    ] {
        assert_eq!(reply.header(header), None, "{header}");
    }
}

#[tokio::test]
async fn a_repeated_tenant_header_shows_every_value() {
    let up = Running::start("shard-a").await;
    let request = Request::get(up.url("/"))
        .header("x-tenant-id", "t-1")
        .header("x-tenant-id", "t-2")
        .body(Full::default())
        .unwrap();
    let reply = send(&http1(), request).await;
    assert_eq!(reply.json()["tenant"]["id"], "t-1, t-2");
    assert_eq!(reply.header_values("x-seen-tenant-id"), ["t-1", "t-2"]);
}

#[tokio::test]
async fn h2c_with_prior_knowledge_gets_the_same_echo() {
    let up = Running::start("cluster-9").await;
    let reply = send(
        &h2c(),
        gateway_request(&up.url("/h2?x=1"))
            .body(Full::default())
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let echo = reply.json();
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echo["upstream"], "cluster-9");
    assert_eq!(echo["path"], "/h2");
    assert_eq!(echo["host"], up.addr.to_string());
    assert_eq!(echo["tenant"]["slug"], "acme");
    assert_eq!(echo["request_id"], "req-1");
    assert_eq!(reply.header("x-upstream"), Some("cluster-9"));
    assert_eq!(reply.header("x-seen-tenant-id"), Some("t-42"));
}

#[tokio::test]
async fn delay_ms_holds_the_answer_at_least_that_long() {
    let up = Running::start("slow").await;
    let started = Instant::now();
    let reply = get(&up.url("/?delay_ms=250")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn status_parameter_sets_the_status_and_keeps_the_echo() {
    let up = Running::start("shard-a").await;
    for code in [201, 404, 429, 503, 599] {
        let reply = get(&up.url(&format!("/fail?status={code}"))).await;
        assert_eq!(reply.status.as_u16(), code);
        assert_eq!(reply.json()["upstream"], "shard-a");
    }
}

#[tokio::test]
async fn status_outside_200_to_599_is_refused_with_400_naming_the_parameter() {
    let up = Running::start("shard-a").await;
    for value in ["600", "99", "0", "abc", "", "+200"] {
        let reply = get(&up.url(&format!("/?status={value}"))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "status={value}");
        assert_eq!(
            reply.text(),
            format!(
                "bad query parameter: status must be an HTTP status code from 200 to 599, got {value:?}\n"
            )
        );
        assert_eq!(
            reply.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        // A refusal still says who refused, so it cannot pass for the gateway's own 400.
        assert_eq!(reply.header("x-upstream"), Some("shard-a"));
    }
}

#[tokio::test]
async fn informational_status_is_refused_with_400_saying_why() {
    let up = Running::start("shard-a").await;
    let reply = get(&up.url("/?status=101")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.text().contains("informational (1xx)"),
        "{}",
        reply.text()
    );
}

#[tokio::test]
async fn out_of_range_delay_bytes_and_cache_are_refused_not_clamped() {
    let up = Running::start("shard-a").await;
    for (query, name) in [
        (
            format!("delay_ms={}", upstream::MAX_DELAY_MS + 1),
            "delay_ms",
        ),
        (format!("bytes={}", upstream::MAX_PAD_BYTES + 1), "bytes"),
        (
            format!("cache={}", u64::from(upstream::MAX_CACHE_SECS) + 1),
            "cache",
        ),
    ] {
        let reply = get(&up.url(&format!("/?{query}"))).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            reply
                .text()
                .starts_with(&format!("bad query parameter: {name} must be ")),
            "{}",
            reply.text()
        );
    }
}

#[tokio::test]
async fn bytes_pads_the_body_to_exactly_that_length_and_keeps_it_json() {
    let up = Running::start("shard-a").await;
    for client in [http1(), h2c()] {
        let reply = send(
            &client,
            Request::get(up.url("/big?bytes=100000"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(reply.body.len(), 100_000);
        assert_eq!(reply.header("content-length"), Some("100000"));
        assert_eq!(reply.json()["upstream"], "shard-a");
    }
}

#[tokio::test]
async fn bytes_below_the_echo_size_leaves_the_echo_whole() {
    let up = Running::start("shard-a").await;
    let reply = get(&up.url("/?bytes=10")).await;
    assert!(reply.body.len() > 10);
    assert_eq!(reply.json()["query"], "bytes=10");
}

#[tokio::test]
async fn cache_parameter_adds_public_max_age_and_nothing_else_does() {
    let up = Running::start("shard-a").await;
    let cached = get(&up.url("/?cache=300")).await;
    assert_eq!(cached.header("cache-control"), Some("public, max-age=300"));
    let uncached = get(&up.url("/")).await;
    assert_eq!(uncached.header("cache-control"), None);
}

#[tokio::test]
async fn no_content_and_not_modified_answers_carry_no_body() {
    let up = Running::start("shard-a").await;
    for code in [204, 304] {
        let reply = send(
            &http1(),
            gateway_request(&up.url(&format!("/?status={code}")))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(reply.status.as_u16(), code);
        assert!(reply.body.is_empty(), "{code}: {:?}", reply.body);
        assert_eq!(reply.header("x-seen-tenant-id"), Some("t-42"));
    }
}

#[tokio::test]
async fn request_bodies_are_read_counted_and_the_connection_reused() {
    let up = Running::start("shard-a").await;
    let client = http1();
    for _ in 0..3 {
        let request = Request::put(up.url("/upload"))
            .body(Full::new(Bytes::from(vec![b'x'; 1024 * 1024])))
            .unwrap();
        let reply = send(&client, request).await;
        assert_eq!(reply.json()["body_bytes"], 1024 * 1024);
    }
    assert_eq!(up.stop().await.connections, 1);
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gets_413_before_it_is_sent() {
    let up = Running::start("shard-a").await;
    let addr = up.addr;
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = StdTcpStream::connect(addr).unwrap();
        write!(
            stream,
            "POST / HTTP/1.1\r\nhost: up\r\nx-tenant-id: t-1\r\ncontent-length: {}\r\n\r\n",
            upstream::MAX_REQUEST_BODY + 1
        )
        .unwrap();
        let mut response = Vec::new();
        // The upstream answers and closes, having read nothing of the body.
        stream.read_to_end(&mut response).unwrap();
        String::from_utf8(response).unwrap()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 413 "), "{response}");
    assert!(response.contains("x-seen-tenant-id: t-1"), "{response}");
    assert!(
        response.contains(&format!("limit of {} bytes", upstream::MAX_REQUEST_BODY)),
        "{response}"
    );
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let up = Running::start("shard-a").await;
    let url = up.url("/?delay_ms=3000");
    let in_flight = tokio::spawn(async move { get(&url).await });
    // Let the request arrive before shutdown is asked for (a loopback request
    // needs well under a millisecond; the margin is for a loaded CI machine),
    // so it is in flight for 2.5 s more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let addr = up.addr;
    let served = up.stop().await;
    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["upstream"], "shard-a");
    assert_eq!(served.cut_off, 0);
    // And the listener is gone.
    assert!(StdTcpStream::connect(addr).is_err());
}

#[tokio::test]
async fn requests_outliving_the_grace_are_cut_off_and_counted() {
    let config = Config {
        grace: Duration::from_millis(100),
        ..Config::new("shard-a".parse().unwrap())
    };
    let up = Running::start_with(config).await;
    let url = up.url("/?delay_ms=60000");
    let in_flight = tokio::spawn(async move {
        http1()
            .request(Request::get(url).body(Full::default()).unwrap())
            .await
    });
    // Let the request arrive before shutdown is asked for.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let served = up.stop().await;
    assert_eq!(served.cut_off, 1);
    in_flight.abort();
}

/// A spawned `loadtest` that is killed if a test fails before it exits.
struct Spawned(Child);

impl Spawned {
    /// Waits for the process to exit, for up to [`PROCESS_DEADLINE`].
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PROCESS_DEADLINE;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "loadtest did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs `loadtest` with `args` to completion.
fn loadtest(args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn bad_flag_exits_64_naming_the_flag() {
    for (args, named) in [
        (
            &["upstream", "--listen", "127.0.0.1:0", "--bogus"][..],
            "--bogus",
        ),
        (&["upstream", "--listen", "localhost"], "--listen"),
        (
            &["upstream", "--listen", "127.0.0.1:0", "--threads", "0"],
            "--threads",
        ),
        (
            &["upstream", "--listen", "127.0.0.1:0", "--name", "a b"],
            "--name",
        ),
        (&["upstream"], "--listen"),
        (&["run"], "run"),
        (&[], "Usage"),
    ] {
        let output = loadtest(args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
}

#[test]
fn help_documents_the_flags_and_every_query_parameter() {
    let output = loadtest(&["upstream", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8(output.stdout).unwrap();
    for word in [
        "--listen",
        "--name",
        "--threads",
        "--grace-secs",
        "delay_ms=",
        "status=",
        "bytes=",
        "cache=",
        "x-seen-tenant-id",
    ] {
        assert!(help.contains(word), "{word} missing from:\n{help}");
    }
    let output = loadtest(&["--help"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        String::from_utf8(output.stdout)
            .unwrap()
            .contains("upstream")
    );
}

#[test]
fn a_listen_address_in_use_fails_naming_the_address() {
    let taken = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = loadtest(&["upstream", "--listen", &addr]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert_ne!(
        output.status.code(),
        Some(64),
        "not a flag problem: {stderr}"
    );
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn sigterm_after_serving_a_request_exits_0() {
    let mut child = Spawned(
        Command::new(BINARY)
            .args(["upstream", "--listen", "127.0.0.1:0", "--name", "bin"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    assert!(addr.starts_with("127.0.0.1:"), "{line:?}");

    let mut stream = StdTcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /hi HTTP/1.1\r\nhost: up\r\nx-tenant-id: t-7\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("x-seen-tenant-id: t-7"), "{response}");
    assert!(response.contains(r#""upstream":"bin""#), "{response}");

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait();
    let mut stderr = String::new();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
}
