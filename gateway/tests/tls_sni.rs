//! HTTPS: certificates chosen by SNI, verified against a test CA by a real
//! rustls client; unknown SNI; 421; certificates hot-loaded; ALPN.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use support::{Gateway, Response, free_port, send_on};
use testkit::{TestCa as Ca, Upstream};

/// The shared fixture, every pool on `upstream`: acme on a shard, globex
/// with the custom domain erp.globex.example.
fn snapshot(version: u64, upstream: &str) -> String {
    let pool = format!("\"{upstream}\"");
    support::snapshot(version, &pool, &pool, &pool)
}

struct Tls {
    ca: Ca,
    gateway: Gateway,
    https: SocketAddr,
    default_der: Option<CertificateDer<'static>>,
    globex_der: CertificateDer<'static>,
    _upstream: Upstream,
}

fn start(with_default: bool) -> Tls {
    let upstream = Upstream::echo("shard-a").unwrap();
    let ca = Ca::new();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::create_dir(&hosts).unwrap();
    let globex_der = ca.issue(&hosts, "erp.globex.example", &["erp.globex.example"]);
    let default_der =
        with_default.then(|| ca.issue(dir.path(), "wildcard", &["*.app.example.test"]));
    let https = free_port();
    let default_keys = if with_default {
        "default_cert = \"wildcard.crt\"\ndefault_key = \"wildcard.key\"\n"
    } else {
        ""
    };
    let snapshot = snapshot(1, &upstream.addr().to_string());
    let gateway = Gateway::start_in(
        dir,
        &snapshot,
        &format!("https_listen = \"127.0.0.1:{https}\""),
        &format!("[tls]\n{default_keys}cert_dir = \"hosts\"\n"),
    );
    // The HTTPS listener may come up a moment after the HTTP one.
    let https: SocketAddr = format!("127.0.0.1:{https}").parse().unwrap();
    support::wait_listening(https);
    Tls {
        ca,
        gateway,
        https,
        default_der,
        globex_der,
        _upstream: upstream,
    }
}

/// Opens a TLS connection with `sni`; returns the stream after the
/// handshake, or the handshake error.
fn connect(
    tls: &Tls,
    sni: &str,
    alpn: &[&[u8]],
) -> Result<StreamOwned<ClientConnection, TcpStream>, std::io::Error> {
    let tcp = TcpStream::connect(tls.https)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let conn = ClientConnection::new(tls.ca.client(alpn), name).unwrap();
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

fn request(tls: &Tls, sni: &str, host: &str) -> (CertificateDer<'static>, Response) {
    let stream = connect(tls, sni, &[]).expect("handshake");
    let served = stream.conn.peer_certificates().unwrap()[0].clone();
    let response = send_on(stream, &format!("GET / HTTP/1.1\r\nHost: {host}"));
    (served, response)
}

#[test]
fn each_sni_name_gets_its_own_certificate_verified_by_the_ca() {
    let tls = start(true);
    let (served, r) = request(&tls, "erp.globex.example", "erp.globex.example");
    assert_eq!(served, tls.globex_der);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json()["headers"]["x-forwarded-proto"],
        "https",
        "{}",
        r.body
    );
    assert_eq!(r.json()["headers"]["x-tenant-id"], "t-globex");

    // A platform subdomain has no certificate of its own: the default.
    let (served, r) = request(&tls, "acme.app.example.test", "acme.app.example.test");
    assert_eq!(Some(served), tls.default_der);
    assert_eq!(r.json()["headers"]["x-tenant-id"], "t-acme");

    let metrics = support::get(tls.gateway.admin, "localhost", "/metrics").body;
    for expected in [
        "switchyard_gateway_tls_handshakes_total{sni=\"present\"} 2",
        "switchyard_gateway_certificates{source=\"dir\"} 1",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in:\n{metrics}"
        );
    }
}

#[test]
fn an_unknown_sni_without_a_default_certificate_fails_the_handshake() {
    let tls = start(false);
    for sni in ["unknown.example", "acme.app.example.test"] {
        let err = connect(&tls, sni, &[]).err();
        assert!(
            err.is_some(),
            "{sni}: handshake succeeded without a certificate for it"
        );
    }
    // The tenant that has one still gets it.
    let (served, _) = request(&tls, "erp.globex.example", "erp.globex.example");
    assert_eq!(served, tls.globex_der);
}

#[test]
fn a_request_for_another_tenant_than_the_sni_names_is_421() {
    let tls = start(true);
    let (_, r) = request(&tls, "erp.globex.example", "acme.app.example.test");
    assert_eq!(r.status, 421, "{r:?}");
    assert_eq!(
        r.json()["type"],
        "https://switchyard.dev/problems/misdirected-request"
    );
    // The same tenant under another of its names is fine.
    let (_, r) = request(&tls, "erp.globex.example", "globex.app.example.test");
    assert_eq!(r.status, 200, "{r:?}");
}

#[test]
fn a_new_certificate_is_served_without_restart_and_a_removed_one_is_dropped() {
    let tls = start(false);
    let hosts = tls.gateway.dir.path().join("hosts");
    assert!(connect(&tls, "acme.app.example.test", &[]).is_err());

    let issued = tls
        .ca
        .issue(&hosts, "acme.app.example.test", &["acme.app.example.test"]);
    wait_until_served(&tls, "acme.app.example.test", &issued);

    std::fs::remove_file(hosts.join("acme.app.example.test.crt")).unwrap();
    let removed = Instant::now();
    while connect(&tls, "acme.app.example.test", &[]).is_ok() {
        assert!(
            removed.elapsed() < Duration::from_secs(10),
            "removed certificate still served"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Polls until `sni` gets the certificate `expected`, for at most 10 s
/// (twice the gateway's full rescan of the directory).
fn wait_until_served(tls: &Tls, sni: &str, expected: &CertificateDer<'static>) {
    let published = Instant::now();
    loop {
        let served = connect(tls, sni, &[])
            .ok()
            .and_then(|s| s.conn.peer_certificates().map(|c| c[0].clone()));
        if served.as_ref() == Some(expected) {
            return;
        }
        assert!(
            published.elapsed() < Duration::from_secs(10),
            "{sni}: the published certificate was not served"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_certificate_rewritten_in_place_is_picked_up_by_the_full_rescan() {
    let tls = start(true);
    let hosts = tls.gateway.dir.path().join("hosts");
    // Let the directory's own stamp settle, so only the periodic full
    // rescan can notice a file rewritten in place (the directory's
    // modification time does not change for that).
    std::thread::sleep(Duration::from_millis(1500));
    let renewed = tls
        .ca
        .issue(&hosts, "erp.globex.example", &["erp.globex.example"]);
    assert_ne!(renewed, tls.globex_der);
    wait_until_served(&tls, "erp.globex.example", &renewed);
}

#[test]
fn alpn_offers_h2_and_http_1_1() {
    let tls = start(true);
    let stream = connect(&tls, "erp.globex.example", &[b"h2", b"http/1.1"]).unwrap();
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"h2"[..]));
    let stream = connect(&tls, "erp.globex.example", &[b"http/1.1"]).unwrap();
    assert_eq!(stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
}

/// One HTTPS request on a new connection; an error instead of a panic so a
/// request loop can count failures.
fn https_status(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    sni: &str,
    host: &str,
) -> Result<u16, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let name = ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?;
    let conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    support::try_get_on(StreamOwned::new(conn, tcp), host)
}

#[test]
fn snapshots_and_certificates_reload_under_load_without_a_failed_request() {
    let tls = start(true);
    let other = Upstream::echo("other").unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (addr, config, flag) = (tls.https, tls.ca.client(&[]), stop.clone());
    let load = std::thread::spawn(move || {
        let mut results = Vec::new();
        let started = Instant::now();
        while !flag.load(std::sync::atomic::Ordering::Relaxed)
            && results.len() < 10_000
            && started.elapsed() < Duration::from_secs(60)
        {
            results.push(https_status(
                addr,
                config.clone(),
                "erp.globex.example",
                "erp.globex.example",
            ));
            results.push(https_status(
                addr,
                config.clone(),
                "acme.app.example.test",
                "acme.app.example.test",
            ));
        }
        results
    });

    // Five new snapshot versions, moving both tenants between upstreams,
    // and a new certificate, all while requests flow.
    let upstreams = [tls._upstream.addr().to_string(), other.addr().to_string()];
    for version in 2..=6 {
        let pool = &upstreams[version % 2];
        let next = snapshot(version as u64, pool);
        std::fs::write(&tls.gateway.snapshot, next).unwrap();
        std::thread::sleep(Duration::from_millis(400));
    }
    let hosts = tls.gateway.dir.path().join("hosts");
    let issued = tls
        .ca
        .issue(&hosts, "acme.app.example.test", &["acme.app.example.test"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stream = connect(&tls, "acme.app.example.test", &[]).unwrap();
        if stream.conn.peer_certificates().unwrap()[0] == issued {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let results = load.join().unwrap();
    let failed: Vec<_> = results.iter().filter(|r| !matches!(r, Ok(200))).collect();
    assert!(results.len() > 50, "the loop barely ran: {}", results.len());
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        results.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(other.request_count() > 0, "the moved pool never served");
}

#[test]
fn http2_requests_are_multiplexed_and_proxied() {
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;

    let tls = start(true);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let connector = tokio_rustls::TlsConnector::from(tls.ca.client(&[b"h2"]));
        let tcp = tokio::net::TcpStream::connect(tls.https).await.unwrap();
        let name = ServerName::try_from("erp.globex.example").unwrap();
        let stream = connector.connect(name, tcp).await.unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        // Several requests at once on the one connection.
        let requests = (0..4).map(|i| {
            let mut sender = sender.clone();
            async move {
                let request = hyper::Request::get(format!("https://erp.globex.example/orders/{i}"))
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = sender.send_request(request).await.unwrap();
                let status = response.status();
                let version = response.version();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                (status, version, body)
            }
        });
        for (i, (status, version, body)) in futures::future::join_all(requests)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(status, 200);
            assert_eq!(version, hyper::Version::HTTP_2);
            let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(echo["headers"]["x-tenant-id"], "t-globex");
            assert_eq!(echo["path"], format!("/orders/{i}"));
        }
    });
}
