//! `Upstream` is a real HTTP/1.1 and h2c server that echoes what a proxy sent, records every
//! request, and stops listening when dropped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use switchyard_testkit::{TestkitError, UPSTREAM_HEADER, Upstream};

/// Sends one HTTP/1.1 request over a plain socket and returns the raw response text.
fn raw_http1(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Sends `request` with hyper's client over one fresh connection of the given protocol.
async fn send(
    addr: SocketAddr,
    version: Version,
    request: Request<Full<Bytes>>,
) -> (Response<()>, Bytes) {
    let stream = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let response = if version == Version::HTTP_2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), stream)
                .await
                .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(stream).await.unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (Response::from_parts(parts, ()), body)
}

#[test]
fn default_reply_echoes_the_request_and_names_the_upstream() {
    let up = Upstream::echo("shard-a").unwrap();
    let response = raw_http1(
        up.addr(),
        "GET /orders?page=2 HTTP/1.1\r\n\
         Host: acme.example.com\r\n\
         X-Tenant-Id: acme\r\n\
         X-Request-Id: req-1\r\n\
         X-Forwarded-For: 203.0.113.9\r\n\
         Cookie: not-echoed\r\n\
         Connection: close\r\n\r\n",
    );

    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("x-upstream: shard-a"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let echo: Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        echo,
        json!({
            "upstream": "shard-a",
            "method": "GET",
            "path": "/orders?page=2",
            "version": "HTTP/1.1",
            "host": "acme.example.com",
            "headers": {
                "x-tenant-id": "acme",
                "x-request-id": "req-1",
                "x-forwarded-for": "203.0.113.9",
            },
        })
    );

    assert_eq!(up.request_count(), 1);
    let seen = up.last_request().unwrap();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path(), "/orders");
    assert_eq!(seen.query(), Some("page=2"));
    assert_eq!(seen.header("x-tenant-id"), Some("acme"));
    assert_eq!(seen.header("cookie"), Some("not-echoed"));
}

#[tokio::test]
async fn fixed_reply_is_served_and_the_request_recorded() {
    let up = Upstream::builder()
        .name("shard-b")
        .respond(201, "ok")
        .header("cache-control", "no-store")
        .start()
        .unwrap();
    let request = Request::post("/orders")
        .header("host", "acme.example.com")
        .header("x-tenant-id", "acme")
        .body(Full::new(Bytes::from_static(b"{\"sku\":1}")))
        .unwrap();

    let (response, body) = send(up.addr(), Version::HTTP_11, request).await;
    assert_eq!(response.status(), 201);
    assert_eq!(body, "ok");
    assert_eq!(response.headers()[UPSTREAM_HEADER], "shard-b");
    assert_eq!(response.headers()["cache-control"], "no-store");

    let requests = up.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path_and_query, "/orders");
    assert_eq!(requests[0].host.as_deref(), Some("acme.example.com"));
    assert_eq!(requests[0].body, b"{\"sku\":1}");
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served() {
    let up = Upstream::echo("shard-h2").unwrap();
    let request = Request::get(format!("http://acme.example.com:{}/h2?x=1", up.port()))
        .header("x-request-id", "req-h2")
        .body(Full::default())
        .unwrap();

    let (response, body) = send(up.addr(), Version::HTTP_2, request).await;
    assert_eq!(response.version(), Version::HTTP_2);
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echo["path"], "/h2?x=1");
    assert_eq!(echo["host"], format!("acme.example.com:{}", up.port()));
    assert_eq!(echo["headers"]["x-request-id"], "req-h2");
    assert_eq!(up.last_request().unwrap().version, "HTTP/2.0");
}

#[tokio::test]
async fn status_override_keeps_the_echo_and_delay_holds_the_answer() {
    let up = Upstream::builder()
        .name("slow")
        .status(503)
        .delay(Duration::from_millis(200))
        .start()
        .unwrap();
    let request = Request::get("/").body(Full::default()).unwrap();

    let started = Instant::now();
    let (response, body) = send(up.addr(), Version::HTTP_11, request).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(response.status(), 503);
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["upstream"], "slow");
}

#[test]
fn invalid_status_is_reported_at_start() {
    let err = Upstream::builder()
        .name("bad")
        .respond(1000, "x")
        .start()
        .unwrap_err();
    assert!(
        matches!(err, TestkitError::InvalidUpstream { .. }),
        "unexpected error: {err:?}"
    );
    assert!(err.to_string().contains("1000"), "{err}");
}

#[test]
fn stopped_upstream_refuses_connections() {
    let mut up = Upstream::echo("outage").unwrap();
    let addr = up.addr();
    assert!(
        raw_http1(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .starts_with("HTTP/1.1 200")
    );

    up.stop();
    assert!(TcpStream::connect(addr).is_err());
    assert_eq!(up.request_count(), 1, "the record outlives the server");
}

#[test]
fn request_in_flight_is_answered_before_the_upstream_stops() {
    let up = Upstream::builder()
        .name("draining")
        .respond(200, "finished")
        .delay(Duration::from_millis(300))
        .start()
        .unwrap();
    let addr = up.addr();
    let client = thread::spawn(move || {
        raw_http1(
            addr,
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    });
    let arrived = Instant::now();
    while up.request_count() == 0 {
        assert!(
            arrived.elapsed() < Duration::from_secs(5),
            "request never arrived"
        );
        thread::sleep(Duration::from_millis(5));
    }

    drop(up);
    let response = client.join().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("finished"), "{response}");
}

#[test]
fn upstream_stops_listening_when_the_test_panics() {
    let (report, reported) = mpsc::channel();
    let test = thread::spawn(move || {
        let up = Upstream::echo("doomed").unwrap();
        report.send(up.addr()).unwrap();
        panic!("the test body fails while the upstream runs");
    });
    assert!(test.join().is_err(), "the test body was meant to panic");

    let addr = reported.recv().unwrap();
    assert!(
        TcpStream::connect(addr).is_err(),
        "{addr} still accepts connections"
    );
}

#[test]
fn an_upstream_comes_back_on_the_same_port() {
    let first = Upstream::echo("first").unwrap();
    let port = first.port();
    drop(first);
    let again = Upstream::builder()
        .name("again")
        .port(port)
        .start()
        .unwrap();
    assert_eq!(again.port(), port);
    let mut stream = std::net::TcpStream::connect(again.addr()).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
    assert!(response.contains("x-upstream: again"), "{response}");
}
