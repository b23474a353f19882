//! The ACME client against a real Pebble (`switchyard_testkit::Pebble`): issuance over
//! HTTP-01 answered by a loopback server started here, `badNonce` storms, a failed
//! validation, account reuse from stored credentials, reused authorizations, and an
//! unanswering CA. (The transport's speed against instant-acme's default client is
//! measured by `examples/acme_transport.rs`.)
//!
//! Pebble's validation authority resolves every name through pebble-challtestsrv, which
//! answers 127.0.0.1, and connects to the challenge server's port (`PebbleOptions::http_port`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use rcgen::{KeyPair, PublicKeyData};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tenant_admin::acme::{Acme, AcmeConfig, AcmeError, Issued};
use testkit::{Pebble, PebbleOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The longest any one test step may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(30);

/// The deadline given to `PendingOrder::complete`.
const COMPLETE_DEADLINE: Duration = Duration::from_secs(20);

/// Awaits `future`, failing the test if it takes longer than [`STEP`].
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {STEP:?}"))
}

/// What the challenge server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answers {
    /// The key authorization published for the token.
    Honest,
    /// The token with another account's thumbprint.
    WrongKeyAuthorization,
}

/// A loopback HTTP/1.1 server answering `/.well-known/acme-challenge/{token}`, as the
/// gateway does for custom domains.
#[derive(Debug)]
struct ChallengeServer {
    /// Its port: Pebble's `http_port`.
    port: u16,
    /// Token → key authorization.
    published: Arc<Mutex<HashMap<String, String>>>,
    /// Every request seen: (path, Host header).
    seen: Arc<Mutex<Vec<(String, String)>>>,
    /// The accept loop; aborted on drop.
    task: JoinHandle<()>,
}

impl ChallengeServer {
    async fn start(answers: Answers) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let published: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let task = tokio::spawn({
            let published = published.clone();
            let seen = seen.clone();
            async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        return;
                    };
                    let published = published.clone();
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let mut request = Vec::new();
                        let mut buf = [0_u8; 2048];
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            let read =
                                tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                                    .await;
                            match read {
                                Ok(Ok(n)) if n > 0 => request.extend_from_slice(&buf[..n]),
                                _ => return,
                            }
                        }
                        let head = String::from_utf8_lossy(&request).into_owned();
                        let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                        let host = head
                            .lines()
                            .find_map(|line| {
                                let (name, value) = line.split_once(':')?;
                                name.eq_ignore_ascii_case("host")
                                    .then(|| value.trim().to_owned())
                            })
                            .unwrap_or_default();
                        seen.lock().unwrap().push((path.clone(), host));
                        let token = path.strip_prefix("/.well-known/acme-challenge/");
                        let body = token.and_then(|token| {
                            let key_authorization =
                                published.lock().unwrap().get(token).cloned()?;
                            Some(match answers {
                                Answers::Honest => key_authorization,
                                Answers::WrongKeyAuthorization => {
                                    format!("{token}.c29tZW9uZS1lbHNlcy10aHVtYnByaW50")
                                }
                            })
                        });
                        let response = match body {
                            Some(body) => format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            ),
                            None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                                .to_owned(),
                        };
                        let _ = stream.write_all(response.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    });
                }
            }
        });
        Self {
            port,
            published,
            seen,
            task,
        }
    }

    fn publish(&self, token: &str, key_authorization: &str) {
        self.published
            .lock()
            .unwrap()
            .insert(token.to_owned(), key_authorization.to_owned());
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ChallengeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A challenge server and a Pebble validating against it.
async fn pebble_with_server(answers: Answers, options: PebbleOptions) -> (Pebble, ChallengeServer) {
    let server = ChallengeServer::start(answers).await;
    let http_port = server.port;
    let pebble = tokio::task::spawn_blocking(move || {
        Pebble::start(PebbleOptions {
            http_port,
            ..options
        })
    })
    .await
    .unwrap()
    .unwrap();
    (pebble, server)
}

/// The client's configuration for `pebble`.
fn config(pebble: &Pebble) -> AcmeConfig {
    AcmeConfig {
        directory_url: pebble.directory_url(),
        ca_root: Some(pebble.api_ca_pem_path().to_owned()),
        contact: Some("mailto:certificates@switchyard.example".to_owned()),
        call_timeout: Duration::from_secs(5),
    }
}

/// Registers a new account.
async fn connect(pebble: &Pebble) -> Acme {
    let (acme, credentials) = bounded("connect", Acme::connect(&config(pebble), None))
        .await
        .unwrap();
    assert!(
        credentials.is_some(),
        "a new account comes with credentials"
    );
    acme
}

/// Orders a certificate for `hostname`, publishes its challenges on `server` and completes.
async fn issue(acme: &Acme, server: &ChallengeServer, hostname: &str) -> Result<Issued, AcmeError> {
    bounded(&format!("issuing for {hostname}"), async {
        let order = acme.order(hostname).await?;
        for challenge in order.challenges() {
            server.publish(&challenge.token, &challenge.key_authorization);
        }
        order.complete(COMPLETE_DEADLINE).await
    })
    .await
}

/// The certificates of a PEM chain.
fn certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Verifies `chain` for `hostname` as a TLS client trusting only `root` would.
fn verify_chain(
    chain: &[CertificateDer<'static>],
    root: CertificateDer<'static>,
    hostname: &str,
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(root).unwrap();
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let name = ServerName::try_from(hostname.to_owned()).unwrap();
    verifier
        .verify_server_cert(&chain[0], &chain[1..], &name, &[], UnixTime::now())
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issues_a_certificate_that_chains_to_pebbles_root_and_matches_its_key() {
    let (pebble, server) = pebble_with_server(
        Answers::Honest,
        PebbleOptions {
            validity_secs: Some(3600),
            ..PebbleOptions::default()
        },
    )
    .await;
    let acme = connect(&pebble).await;
    let hostname = "shop.tenant-a.example";

    let order = bounded("order", acme.order("Shop.Tenant-A.Example."))
        .await
        .unwrap();
    assert_eq!(order.hostname(), hostname);
    assert_eq!(order.challenges().len(), 1, "{order:?}");
    let challenge = order.challenges()[0].clone();
    assert!(
        challenge
            .key_authorization
            .starts_with(&format!("{}.", challenge.token))
    );
    server.publish(&challenge.token, &challenge.key_authorization);
    let issued = bounded("complete", order.complete(COMPLETE_DEADLINE))
        .await
        .unwrap();

    // Pebble's validation authority really fetched the token, for the name, on our port.
    let seen = server.seen();
    assert!(
        seen.iter().any(|(path, host)| {
            path == &format!("/.well-known/acme-challenge/{}", challenge.token)
                && host == &format!("{hostname}:{}", server.port)
        }),
        "{seen:?}"
    );

    // The chain verifies for the name against the root Pebble issues from, and against
    // nothing else.
    let chain = certificates(&issued.chain_pem);
    assert!(chain.len() >= 2, "leaf and intermediate: {}", chain.len());
    let root =
        CertificateDer::from_pem_slice(pebble.issuer_root_pem().unwrap().as_bytes()).unwrap();
    verify_chain(&chain, root.clone(), hostname).unwrap();
    assert!(verify_chain(&chain, root.clone(), "other.example").is_err());
    let api_ca = CertificateDer::from_pem_file(pebble.api_ca_pem_path()).unwrap();
    assert!(verify_chain(&chain, api_ca, hostname).is_err());

    // The key is a PKCS#8 P-256 key, and the leaf's.
    assert!(issued.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key = KeyPair::from_pem(&issued.key_pem).unwrap();
    assert_eq!(key.algorithm(), &rcgen::PKCS_ECDSA_P256_SHA256);
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    assert_eq!(
        leaf.public_key().raw,
        key.subject_public_key_info().as_slice()
    );

    // The validity is the leaf's: the hour Pebble was told to issue for.
    assert_eq!(
        issued.not_before.timestamp(),
        leaf.validity().not_before.timestamp()
    );
    assert_eq!(
        issued.not_after.timestamp(),
        leaf.validity().not_after.timestamp()
    );
    let lifetime = (issued.not_after - issued.not_before).num_seconds();
    assert!((3590..=3600).contains(&lifetime), "{lifetime}");
    let now = chrono::Utc::now();
    assert!(issued.not_before <= now + chrono::Duration::seconds(5));
    assert!(issued.not_after > now);

    // Debug output leaves the key out.
    let debug = format!("{issued:?} {acme:?}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
    let key_body = issued.key_pem.lines().nth(1).unwrap();
    assert!(!debug.contains(key_body), "{debug}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_survives_pebble_rejecting_half_the_nonces() {
    let (pebble, server) = pebble_with_server(
        Answers::Honest,
        PebbleOptions {
            nonce_reject_percent: 50,
            ..PebbleOptions::default()
        },
    )
    .await;
    let acme = connect(&pebble).await;
    let root =
        CertificateDer::from_pem_slice(pebble.issuer_root_pem().unwrap().as_bytes()).unwrap();

    // Four orders at a time (Pebble stalls with many), two rounds.
    for round in 0..2 {
        let names: Vec<String> = (0..4)
            .map(|i| format!("n{round}{i}.nonce-storm.example"))
            .collect();
        let results =
            futures::future::join_all(names.iter().map(|name| issue(&acme, &server, name))).await;
        for (name, result) in names.iter().zip(results) {
            let issued = result.unwrap_or_else(|err| panic!("{name}: {err:?}"));
            verify_chain(&certificates(&issued.chain_pem), root.clone(), name).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_authorization_is_rejected_with_the_cas_reason() {
    let (pebble, server) =
        pebble_with_server(Answers::WrongKeyAuthorization, PebbleOptions::default()).await;
    let acme = connect(&pebble).await;

    let err = issue(&acme, &server, "wrong.tenant-b.example")
        .await
        .unwrap_err();
    let AcmeError::Rejected(reason) = &err else {
        panic!("not a rejection: {err:?}");
    };
    assert!(reason.contains("wrong.tenant-b.example"), "{reason}");
    // Pebble 2.4 calls it `unauthorized` (Let's Encrypt: `incorrectResponse`); the words
    // say what happened either way.
    assert!(reason.contains("key authorization"), "{reason}");
    assert!(
        reason.contains("(unauthorized)") || reason.contains("(incorrectResponse)"),
        "{reason}"
    );
    assert_eq!(
        reason.matches("did not match").count(),
        1,
        "said once: {reason}"
    );
    assert!(
        !server.seen().is_empty(),
        "Pebble never asked the challenge server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_credentials_load_the_same_account() {
    let (pebble, server) = pebble_with_server(Answers::Honest, PebbleOptions::default()).await;
    let config = config(&pebble);

    let (first, credentials) = bounded("register", Acme::connect(&config, None))
        .await
        .unwrap();
    let credentials = credentials.expect("credentials of the new account");

    let (again, none) = bounded("reload", Acme::connect(&config, Some(&credentials)))
        .await
        .unwrap();
    assert!(none.is_none(), "no new registration");
    assert_eq!(again.account_id(), first.account_id());
    // The reloaded key signs for the account: it can order and be issued.
    issue(&again, &server, "reloaded.tenant-c.example")
        .await
        .unwrap();

    // Credentials from another CA are not used here: a new account is registered.
    let mut elsewhere: serde_json::Value = serde_json::from_str(&credentials).unwrap();
    elsewhere["directory"] = "https://acme.elsewhere.example/directory".into();
    let (moved, new_credentials) = bounded(
        "connect with another CA's credentials",
        Acme::connect(&config, Some(&elsewhere.to_string())),
    )
    .await
    .unwrap();
    assert!(new_credentials.is_some());
    assert_ne!(moved.account_id(), first.account_id());

    // Credentials whose key the CA has never seen (as after a CA reset): a new account.
    let mut unknown: serde_json::Value = serde_json::from_str(&credentials).unwrap();
    unknown["key_pkcs8"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(KeyPair::generate().unwrap().serialize_der())
        .into();
    let (fresh, fresh_credentials) = bounded(
        "connect with an unknown key",
        Acme::connect(&config, Some(&unknown.to_string())),
    )
    .await
    .unwrap();
    assert!(fresh_credentials.is_some());
    assert_ne!(fresh.account_id(), first.account_id());
    issue(&fresh, &server, "fresh.tenant-c.example")
        .await
        .unwrap();

    // Unusable credentials are an error that does not quote them.
    let err = Acme::connect(&config, Some(r#"{"id": 1, "key_pkcs8": "c2VjcmV0"}"#))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AcmeError::Transient(m) if !m.contains("c2VjcmV0")),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_authorizations_leave_nothing_to_publish() {
    let (pebble, server) = pebble_with_server(
        Answers::Honest,
        PebbleOptions {
            authz_reuse_percent: 100,
            ..PebbleOptions::default()
        },
    )
    .await;
    let acme = connect(&pebble).await;
    issue(&acme, &server, "again.tenant-d.example")
        .await
        .unwrap();
    let requests = server.seen().len();

    let order = bounded("second order", acme.order("again.tenant-d.example"))
        .await
        .unwrap();
    assert!(order.challenges().is_empty(), "{order:?}");
    bounded("complete", order.complete(COMPLETE_DEADLINE))
        .await
        .unwrap();
    assert_eq!(server.seen().len(), requests, "no new validation");
}

#[tokio::test]
async fn a_ca_that_never_answers_is_transient_within_bounds() {
    // Accepts connections and never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let config = AcmeConfig {
        directory_url: format!("https://{addr}/dir"),
        ca_root: None,
        contact: None,
        call_timeout: Duration::from_millis(300),
    };
    let start = Instant::now();
    let err = bounded("connect", Acme::connect(&config, None))
        .await
        .unwrap_err();
    hold.abort();
    let AcmeError::Transient(reason) = &err else {
        panic!("not transient: {err:?}");
    };
    assert!(reason.contains("no answer within 300ms"), "{reason}");
    assert!(reason.contains("4 attempts"), "{reason}");
    // Four attempts of 300 ms and pauses of 200 + 400 + 800 ms.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
