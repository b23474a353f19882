//! `RedisServer` starts a real Redis that answers, survives a stop/restart cycle on the same
//! port, and leaves nothing behind.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use redis::AsyncCommands;
use switchyard_testkit::{RedisServer, TestkitError};

/// Opens an async connection to `url`, as the gateway does.
async fn connect(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|err| panic!("connecting to {url}: {err}"))
}

#[tokio::test]
async fn server_stores_and_returns_values() {
    let server = RedisServer::start().unwrap();
    assert_ne!(server.port(), 6379, "took the system Redis's port");
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));

    let mut conn = connect(&server.url()).await;
    let () = conn.set("tenant:acme", "shard-a").await.unwrap();
    let value: String = conn.get("tenant:acme").await.unwrap();
    assert_eq!(value, "shard-a");
}

#[tokio::test]
async fn stopped_server_refuses_connections_and_restart_serves_the_same_url() {
    let mut server = RedisServer::start().unwrap();
    let url = server.url();
    let first_pid = server.pid().unwrap();

    server.stop();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    assert!(!Path::new(&format!("/proc/{first_pid}")).exists());
    assert!(TcpStream::connect(server.addr()).is_err());
    assert!(
        redis::Client::open(url.as_str())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .is_err()
    );

    server.restart().unwrap();
    assert_eq!(server.url(), url);
    let mut conn = connect(&url).await;
    let () = conn.set("after", "restart").await.unwrap();
    let value: String = conn.get("after").await.unwrap();
    assert_eq!(value, "restart");
}

#[tokio::test]
async fn killed_server_loses_its_data_and_restarts_empty() {
    let mut server = RedisServer::start().unwrap();
    let mut conn = connect(&server.url()).await;
    let () = conn.set("ephemeral", "1").await.unwrap();

    server.kill();
    assert!(TcpStream::connect(server.addr()).is_err());
    server.restart().unwrap();

    let mut conn = connect(&server.url()).await;
    let value: Option<String> = conn.get("ephemeral").await.unwrap();
    assert_eq!(value, None, "nothing is persisted across restarts");
}

#[test]
fn restart_fails_clearly_when_another_process_took_the_port() {
    let mut server = RedisServer::start().unwrap();
    server.stop();
    let squatter = TcpListener::bind(server.addr()).unwrap();

    let err = server.restart().unwrap_err();
    assert!(
        matches!(err, TestkitError::PortTaken { port, .. } if port == server.port()),
        "unexpected error: {err:?}"
    );
    assert!(!server.is_running());

    drop(squatter);
    server.restart().unwrap();
    assert!(server.is_running());
}

#[test]
fn server_is_stopped_and_deleted_when_the_test_panics() {
    let (report, reported) = mpsc::channel();
    let test = thread::spawn(move || {
        let server = RedisServer::start().unwrap();
        report
            .send((
                server.pid().unwrap(),
                server.port(),
                server.data_dir().to_owned(),
            ))
            .unwrap();
        panic!("the test body fails while Redis runs");
    });
    assert!(test.join().is_err(), "the test body was meant to panic");

    let (pid, port, data_dir) = reported.recv().unwrap();
    assert!(!data_dir.exists(), "{} survived", data_dir.display());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "redis-server {pid} survived"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections"
    );
}
