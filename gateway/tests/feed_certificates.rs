//! `[source] kind = "admin"` with an HTTPS listener and no `[tls]`: a
//! gateway restarted while tenant-admin is down (its port closed) serves
//! the custom domains' certificates kept next to the last-known-good
//! snapshot, refuses a kept pair that does not match without logging key
//! material, and keeps retrying the ones it lacks.
//!
//! Fetching from a live tenant-admin is tested in tenant-admin's own tests,
//! against the real endpoint.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConnection, StreamOwned};
use support::{Gateway, free_port, send_on};
use testkit::{TestCa, Upstream};

const NOT_AFTER: i64 = 4_000_000_000;

/// Three tenants with a custom domain each, and a certificate reference
/// for each domain: ids 7, 8 and 9.
fn snapshot(upstream: &Upstream) -> serde_json::Value {
    let tenant = |id: &str, slug: &str, domain: &str| {
        serde_json::json!({"id": id, "slug": slug, "plan": "p", "region": "eu-west",
                           "target": "shard-a", "domains": [domain]})
    };
    let cert = |domain: &str, id: u64| serde_json::json!({"hostname": domain, "id": id, "not_after": NOT_AFTER});
    serde_json::json!({
        "version": 5,
        "regions": [{"name": "eu-west"}],
        "plans": [{"name": "p", "rate_per_sec": 1000, "burst": 1000, "max_body_bytes": 1024}],
        "targets": [{"id": "shard-a", "kind": "shard", "region": "eu-west",
                     "pools": {"eu-west": [upstream.addr().to_string()]}}],
        "tenants": [
            tenant("t-globex", "globex", "erp.globex.example"),
            tenant("t-acme", "acme", "shop.acme.example"),
            tenant("t-initech", "initech", "crm.initech.example"),
        ],
        "certificates": [
            cert("erp.globex.example", 7),
            cert("shop.acme.example", 8),
            cert("crm.initech.example", 9),
        ],
    })
}

/// The entry tenant-admin would have served for `host` as `id`, issued by
/// `ca` (the PEM files are written to `scratch`).
fn entry(
    ca: &TestCa,
    scratch: &Path,
    id: u64,
    host: &str,
) -> (serde_json::Value, CertificateDer<'static>) {
    let der = ca.issue(scratch, host, &[host]);
    let read = |ext: &str| std::fs::read_to_string(scratch.join(format!("{host}.{ext}"))).unwrap();
    let entry = serde_json::json!({
        "id": id, "hostname": host, "not_after": NOT_AFTER,
        "chain_pem": read("crt"), "key_pem": read("key"),
    });
    (entry, der)
}

fn handshake(
    https: SocketAddr,
    ca: &TestCa,
    sni: &str,
) -> std::io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let tcp = TcpStream::connect(https)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let mut stream = StreamOwned::new(ClientConnection::new(ca.client(&[]), name).unwrap(), tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

#[test]
fn kept_certificates_are_served_at_start_while_tenant_admin_is_down() {
    let upstream = Upstream::echo("shard-a").unwrap();
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "gw-token\n").unwrap();
    let certs = dir.path().join("cache/snapshot.json.certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(
        dir.path().join("cache/snapshot.json"),
        snapshot(&upstream).to_string(),
    )
    .unwrap();
    let (globex, globex_der) = entry(&ca, scratch.path(), 7, "erp.globex.example");
    std::fs::write(certs.join("7.json"), globex.to_string()).unwrap();
    // Id 9's kept key belongs to another certificate; id 8 is not kept.
    let (mut initech, _) = entry(&ca, scratch.path(), 9, "crm.initech.example");
    initech["key_pem"] = globex["key_pem"].clone();
    std::fs::write(certs.join("9.json"), initech.to_string()).unwrap();

    let https = free_port();
    let source = format!(
        "kind = \"admin\"\nurl = \"http://127.0.0.1:{}\"\ntoken_file = \"token\"\ncache_path = \"cache/snapshot.json\"",
        free_port()
    );
    let gateway = Gateway::start_with_source(
        dir,
        &source,
        &format!("https_listen = \"127.0.0.1:{https}\""),
        "",
    );
    let https: SocketAddr = format!("127.0.0.1:{https}").parse().unwrap();
    support::wait_listening(https);
    let line = gateway.wait_for_log(
        "certificate(s) of snapshot version 5 loaded",
        Duration::from_secs(5),
    );
    assert!(line.contains("1 of 3"), "{line}");
    assert!(line.contains("cache/snapshot.json.certs"), "{line}");

    let stream = handshake(https, &ca, "erp.globex.example").expect("handshake");
    assert_eq!(stream.conn.peer_certificates().unwrap()[0], globex_der);
    let r = send_on(stream, "GET /orders HTTP/1.1\r\nHost: erp.globex.example");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["headers"]["x-tenant-id"], "t-globex");
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");

    // No certificate and no default: the handshake fails, and no other
    // tenant's certificate is ever offered.
    for sni in ["shop.acme.example", "crm.initech.example"] {
        assert!(
            handshake(https, &ca, sni).is_err(),
            "{sni} got a certificate"
        );
    }

    let refused = gateway.wait_for_log("deleting a kept certificate", Duration::from_secs(5));
    assert!(
        refused.contains("9.json: the private key does not belong to the certificate"),
        "{refused}"
    );
    // The ones it lacks are fetched from the feed, which is down: counted
    // and retried, logged once.
    gateway.wait_for_log(
        "cannot fetch certificates from http://127.0.0.1:",
        Duration::from_secs(5),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway
        .metric("switchyard_gateway_certificate_fetch_failures_total{reason=\"connect\"}")
        .unwrap_or(0.0)
        < 2.0
    {
        assert!(Instant::now() < deadline, "the fetch was not retried");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(gateway.log_lines("cannot fetch certificates").len(), 1);
    assert_eq!(gateway.log_lines("deleting a kept certificate").len(), 1);
    assert_eq!(
        gateway.metric("switchyard_gateway_certificates{source=\"feed\"}"),
        Some(1.0)
    );
    assert_eq!(
        gateway.metric("switchyard_gateway_certificates{source=\"dir\"}"),
        Some(0.0)
    );
    let expiry = gateway
        .metric("switchyard_gateway_certificate_expiry_seconds_min")
        .expect("the expiry gauge");
    assert!(expiry > 1e9, "{expiry}");

    let stderr = gateway.stderr.lock().unwrap().join("\n");
    for secret in ["BEGIN", "PRIVATE", "gw-token"] {
        assert!(!stderr.contains(secret), "{secret:?} was logged:\n{stderr}");
    }
    // The good kept file stays; the refused one is gone (to be fetched).
    assert!(certs.join("7.json").is_file());
    assert!(!certs.join("9.json").exists());
}
