//! How long one certificate order takes against Pebble with tenant-admin's
//! ACME transport (instant-acme's client with `TCP_NODELAY` set) and with
//! instant-acme's default client (Nagle's algorithm left on, so every POST
//! whose body goes out in a second write waits for a delayed ACK).
//!
//! Starts Debian's Pebble (the test support's harness) and a loopback
//! server answering its HTTP-01 challenges; registers one account per
//! transport; then orders `ROUNDS` certificates (default 5, after one
//! warm-up) with each, alternating, and prints the medians of a whole
//! issuance and of one POST.
//!
//!     cargo run -p tenant-admin --example acme_transport

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tenant_admin::acme::{Acme, AcmeConfig};
use testkit::{Pebble, PebbleOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Published = Arc<Mutex<HashMap<String, String>>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let published: Published = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = listener.local_addr().unwrap().port();
    tokio::spawn(answer_challenges(listener, published.clone()));
    let pebble = tokio::task::spawn_blocking(move || {
        Pebble::start(PebbleOptions {
            http_port,
            ..PebbleOptions::default()
        })
    })
    .await
    .unwrap()
    .expect("Pebble starts");
    let config = AcmeConfig {
        directory_url: pebble.directory_url(),
        ca_root: Some(pebble.api_ca_pem_path().to_owned()),
        contact: None,
        call_timeout: Duration::from_secs(10),
    };
    let posts: [Arc<Mutex<Vec<Duration>>>; 2] = Default::default();
    let transports: [Arc<dyn HttpClient>; 2] = [
        Arc::new(Timed {
            inner: Acme::transport(&config).unwrap(),
            posts: posts[0].clone(),
        }),
        Arc::new(Timed {
            inner: default_transport(&pebble),
            posts: posts[1].clone(),
        }),
    ];
    let mut accounts = Vec::new();
    for transport in transports {
        let (acme, _) = Acme::connect_with_http(&config, None, transport)
            .await
            .expect("an account");
        accounts.push(acme);
    }
    let mut times: [Vec<Duration>; 2] = Default::default();
    for round in 0..=rounds {
        for (i, acme) in accounts.iter().enumerate() {
            posts[i].lock().unwrap().clear();
            let start = Instant::now();
            let order = acme
                .order(&format!("r{round}t{i}.timing.example"))
                .await
                .expect("an order");
            for c in order.challenges() {
                published
                    .lock()
                    .unwrap()
                    .insert(c.token.clone(), c.key_authorization.clone());
            }
            order
                .complete(Duration::from_secs(30))
                .await
                .expect("a certificate");
            if round > 0 {
                times[i].push(start.elapsed());
            }
        }
    }
    for (i, name) in ["TCP_NODELAY (tenant-admin)", "instant-acme default"]
        .iter()
        .enumerate()
    {
        println!(
            "{name:28} one issuance: median {:>7.1?}   one POST: median {:>6.1?}",
            median(&times[i]),
            median(&posts[i].lock().unwrap())
        );
    }
}

/// Answers `/.well-known/acme-challenge/{token}` from `published`.
async fn answer_challenges(listener: TcpListener, published: Published) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let published = published.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 2048];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
                    _ => return,
                }
            }
            let text = String::from_utf8_lossy(&head);
            let path = text.split(' ').nth(1).unwrap_or_default();
            let body = path
                .strip_prefix("/.well-known/acme-challenge/")
                .and_then(|t| published.lock().unwrap().get(t).cloned());
            let response = match body {
                Some(b) => format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{b}", b.len()),
                None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_owned(),
            };
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// instant-acme's default transport as it builds it (hyper-util's pooled
/// client over hyper-rustls, HTTP/1.1 and HTTP/2, Nagle left on), trusting
/// Pebble's API CA.
fn default_transport(pebble: &Pebble) -> Arc<dyn HttpClient> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pebble.api_ca_pem_path()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    Arc::new(HyperClient::builder(TokioExecutor::new()).build::<_, BodyWrapper<Bytes>>(https))
}

/// A transport that records how long each POST took.
struct Timed {
    inner: Arc<dyn HttpClient>,
    posts: Arc<Mutex<Vec<Duration>>>,
}

impl HttpClient for Timed {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let post = req.method() == http::Method::POST;
        let response = self.inner.request(req);
        let posts = self.posts.clone();
        Box::pin(async move {
            let start = Instant::now();
            let response = response.await;
            if post {
                posts.lock().unwrap().push(start.elapsed());
            }
            response
        })
    }
}

fn median(durations: &[Duration]) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}
