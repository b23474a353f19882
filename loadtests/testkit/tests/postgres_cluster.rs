//! `PgCluster` starts a real PostgreSQL server that answers, isolates clusters from each
//! other, and leaves nothing behind.

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::sync::mpsc;
use std::thread;

use sqlx::{Connection, PgConnection};
use switchyard_testkit::{PgCluster, TestkitError};

/// Connects to `url` with sqlx, as the services do.
async fn connect(url: &str) -> PgConnection {
    PgConnection::connect(url)
        .await
        .unwrap_or_else(|err| panic!("connecting to {url}: {err}"))
}

#[tokio::test]
async fn cluster_answers_select_1_over_tcp() {
    let pg = PgCluster::start().unwrap();
    assert_eq!(
        pg.url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port())
    );

    let mut conn = connect(&pg.url()).await;
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(one, 1);
    conn.close().await.unwrap();
}

#[tokio::test]
async fn created_database_accepts_connections_at_its_url() {
    let pg = PgCluster::start().unwrap();
    let url = pg.create_database("tenant_acme").unwrap();
    assert_eq!(url, pg.database_url("tenant_acme"));

    let mut conn = connect(&url).await;
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(name, "tenant_acme");
    sqlx::query("CREATE TABLE orders (id int PRIMARY KEY)")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    // The synchronous psql path sees the same database.
    pg.execute("tenant_acme", "INSERT INTO orders VALUES (1), (2)")
        .unwrap();
    let count = pg
        .execute("tenant_acme", "SELECT count(*) FROM orders")
        .unwrap();
    assert_eq!(count.trim(), "2");
}

#[test]
fn creating_an_existing_database_fails_with_the_server_message() {
    let pg = PgCluster::start().unwrap();
    pg.create_database("twice").unwrap();

    let err = pg.create_database("twice").unwrap_err();
    assert!(
        matches!(err, TestkitError::CommandFailed { .. }),
        "unexpected error: {err:?}"
    );
    assert!(err.to_string().contains("already exists"), "{err}");
}

#[tokio::test]
async fn three_clusters_answer_independently_on_different_ports() {
    let shards = PgCluster::start_many(3).unwrap();
    let mut ports: Vec<u16> = shards.iter().map(PgCluster::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "clusters share a port: {ports:?}");
    assert!(
        !ports.contains(&5432),
        "a cluster took the system PostgreSQL's port"
    );

    for (index, shard) in shards.iter().enumerate() {
        let mut conn = connect(&shard.url()).await;
        let port: String = sqlx::query_scalar("SELECT current_setting('port')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(port, shard.port().to_string());
        // The index is ours, not user input.
        let create = format!("CREATE TABLE shard_{index} (id int)");
        sqlx::query(sqlx::AssertSqlSafe(create))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }

    // Each table exists only in the cluster that created it.
    for (index, shard) in shards.iter().enumerate() {
        let tables = shard
            .execute(
                "postgres",
                "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
                 WHERE tablename LIKE 'shard_%'",
            )
            .unwrap();
        assert_eq!(tables.trim(), format!("shard_{index}"));
    }
}

#[test]
fn server_never_runs_as_root() {
    let pg = PgCluster::start().unwrap();
    let status = fs::read_to_string(format!("/proc/{}/status", pg.pid())).unwrap();
    let uid_line = status
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .unwrap();
    let effective_uid = uid_line.split_whitespace().nth(2).unwrap();
    assert_ne!(effective_uid, "0", "postgres runs as root: {uid_line}");
}

#[test]
fn cluster_is_stopped_and_deleted_when_the_test_panics() {
    let (report, reported) = mpsc::channel();
    let test = thread::spawn(move || {
        let pg = PgCluster::start().unwrap();
        report
            .send((
                pg.pid(),
                pg.port(),
                pg.data_dir().to_owned(),
                pg.root_dir().to_owned(),
            ))
            .unwrap();
        panic!("the test body fails while the cluster runs");
    });
    assert!(test.join().is_err(), "the test body was meant to panic");

    let (pid, port, data_dir, root_dir) = reported.recv().unwrap();
    assert!(!data_dir.exists(), "{} survived", data_dir.display());
    assert!(!root_dir.exists(), "{} survived", root_dir.display());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "postmaster {pid} survived"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections"
    );
}

#[test]
fn stopped_cluster_refuses_connections_and_starts_again_with_its_data() {
    let mut pg = PgCluster::start().unwrap();
    pg.create_database("kept").unwrap();
    pg.execute("kept", "CREATE TABLE t (id int); INSERT INTO t VALUES (7)")
        .unwrap();
    let first_pid = pg.pid();

    pg.stop();
    assert!(
        TcpStream::connect(("127.0.0.1", pg.port())).is_err(),
        "a stopped cluster still accepts connections"
    );
    assert!(!Path::new(&format!("/proc/{first_pid}")).exists());
    pg.stop(); // stopping twice is harmless

    pg.start_again().unwrap();
    assert_ne!(pg.pid(), first_pid);
    assert_eq!(pg.execute("kept", "SELECT id FROM t").unwrap().trim(), "7");
    pg.start_again().unwrap(); // starting a running cluster is harmless
}
