//! `Pebble` starts a real Pebble and pebble-challtestsrv: the ACME directory answers over TLS
//! signed by the CA it hands out, the management API gives the issuing root, the DNS server
//! serves the TXT and A records set through it over UDP and TCP, and dropping the handle
//! stops both servers.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::Resolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use switchyard_testkit::{Pebble, PebbleOptions, TestCa};

/// How long any one network step of these tests may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A client trusting only `roots`.
fn client(roots: Vec<CertificateDer<'static>>) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root).unwrap();
    }
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(store)
            .with_no_client_auth(),
    )
}

/// `GET path` over TLS to `addr`, as HTTP/1.0; the status and body, or the TLS/IO error.
fn https_get(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
    path: &str,
) -> std::io::Result<(u16, String)> {
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let conn = ClientConnection::new(config, ServerName::IpAddress(addr.ip().into()))
        .map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut bytes = Vec::new();
    if let Err(err) = stream.read_to_end(&mut bytes)
        && (bytes.is_empty() || err.kind() != std::io::ErrorKind::UnexpectedEof)
    {
        return Err(err);
    }
    let text = String::from_utf8(bytes).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Ok((status, body.to_owned()))
}

/// The address in `https://ADDR/dir`.
fn directory_addr(pebble: &Pebble) -> SocketAddr {
    let url = pebble.directory_url();
    let rest = url.strip_prefix("https://").unwrap();
    rest.strip_suffix("/dir").unwrap().parse().unwrap()
}

#[test]
fn directory_answers_over_tls_signed_by_the_api_ca() {
    let pebble = Pebble::start(PebbleOptions::default()).unwrap();
    let addr = directory_addr(&pebble);
    assert_eq!(addr, pebble.acme_addr());

    let api_ca = CertificateDer::from_pem_file(pebble.api_ca_pem_path()).unwrap();
    let (status, body) = https_get(client(vec![api_ca]), addr, "/dir").unwrap();
    assert_eq!(status, 200, "{body}");
    let directory: serde_json::Value = serde_json::from_str(&body).unwrap();
    for field in ["newNonce", "newAccount", "newOrder"] {
        let url = directory[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} in {body}"));
        assert!(url.starts_with(&format!("https://{addr}/")), "{url}");
    }

    // A client trusting some other CA refuses the listener: the API CA really is its signer.
    let stranger = TestCa::new();
    let err = https_get(client(vec![stranger.der().clone()]), addr, "/dir").unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    let root = pebble.issuer_root_pem().unwrap();
    let root = CertificateDer::from_pem_slice(root.as_bytes()).unwrap();
    assert!(!root.is_empty());
}

#[test]
fn dropping_stops_both_servers() {
    let pebble = Pebble::start(PebbleOptions::default()).unwrap();
    let acme = pebble.acme_addr();
    let dns = pebble.dns_addr();
    assert!(TcpStream::connect_timeout(&acme, TIMEOUT).is_ok());
    assert!(TcpStream::connect_timeout(&dns, TIMEOUT).is_ok());
    let dir = pebble.dir().to_owned();
    drop(pebble);
    assert!(TcpStream::connect_timeout(&acme, TIMEOUT).is_err());
    assert!(TcpStream::connect_timeout(&dns, TIMEOUT).is_err());
    assert!(!dir.exists());
}

#[test]
fn instances_get_their_own_ports() {
    let a = Pebble::start(PebbleOptions::default()).unwrap();
    let b = Pebble::start(PebbleOptions::default()).unwrap();
    assert_ne!(a.directory_url(), b.directory_url());
    assert_ne!(a.dns_addr(), b.dns_addr());
    assert_ne!(a.issuer_root_pem().unwrap(), b.issuer_root_pem().unwrap());
}

/// A resolver asking only `dns` over `tcp` (else UDP), without a cache.
fn resolver(dns: SocketAddr, tcp: bool) -> Resolver<TokioRuntimeProvider> {
    let mut connection = if tcp {
        ConnectionConfig::tcp()
    } else {
        ConnectionConfig::udp()
    };
    connection.port = dns.port();
    let server = NameServerConfig::new(dns.ip(), true, vec![connection]);
    let mut builder = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![server]),
        TokioRuntimeProvider::default(),
    );
    builder.options_mut().cache_size = 0;
    builder.options_mut().timeout = Duration::from_secs(2);
    builder.options_mut().attempts = 2;
    builder.build().unwrap()
}

/// The TXT strings of `name`, sorted; empty when there are none.
async fn txt(resolver: &Resolver<TokioRuntimeProvider>, name: &str) -> Vec<String> {
    let lookup = tokio::time::timeout(TIMEOUT, resolver.lookup(name, RecordType::TXT))
        .await
        .expect("TXT lookup timed out");
    let Ok(lookup) = lookup else {
        return Vec::new();
    };
    let mut values: Vec<String> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect();
    values.sort();
    values
}

/// The A records of `name`.
async fn a(resolver: &Resolver<TokioRuntimeProvider>, name: &str) -> Vec<Ipv4Addr> {
    let lookup = tokio::time::timeout(TIMEOUT, resolver.lookup(name, RecordType::A))
        .await
        .expect("A lookup timed out")
        .unwrap();
    lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn dns_serves_txt_and_a_records_over_udp_and_tcp() {
    let pebble = Pebble::start(PebbleOptions::default()).unwrap();
    let dns = pebble.dns_addr();
    assert_eq!(dns.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    let name = "_switchyard-challenge.shop.example";

    for tcp in [false, true] {
        let resolver = resolver(dns, tcp);
        assert_eq!(
            txt(&resolver, &format!("{name}.")).await,
            Vec::<String>::new()
        );

        pebble.set_txt(name, "first-proof").unwrap();
        pebble.set_txt(name, "second-proof").unwrap();
        assert_eq!(
            txt(&resolver, &format!("{name}.")).await,
            ["first-proof", "second-proof"],
            "tcp: {tcp}"
        );
        pebble.clear_txt(name).unwrap();
        assert_eq!(
            txt(&resolver, &format!("{name}.")).await,
            Vec::<String>::new()
        );

        // Every name resolves to 127.0.0.1 unless told otherwise.
        assert_eq!(a(&resolver, "shop.example.").await, [Ipv4Addr::LOCALHOST]);
        let elsewhere = Ipv4Addr::new(10, 9, 8, 7);
        pebble.add_a("shop.example", elsewhere).unwrap();
        assert_eq!(a(&resolver, "shop.example.").await, [elsewhere]);
        assert_eq!(a(&resolver, "other.example.").await, [Ipv4Addr::LOCALHOST]);
        pebble.clear_a("shop.example").unwrap();
        assert_eq!(a(&resolver, "shop.example.").await, [Ipv4Addr::LOCALHOST]);
    }
}
