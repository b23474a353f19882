//! Domain-ownership proofs against real servers: TXT records served by
//! `pebble-challtestsrv` (through the testkit's [`Pebble`]), which also
//! resolves every name to 127.0.0.1 unless told otherwise, and HTTP answers
//! from real loopback servers — the testkit's hyper [`Upstream`] and raw
//! sockets for what hyper will not do (never answering, chunked framing).
//! A few lines of DNS server over UDP and TCP serve what challtestsrv
//! cannot: a TXT value split into several strings, and truncated answers.
//!
//! Every check runs under [`OUTER`], so a hang fails the test instead of
//! stalling it.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tenant_admin::verify::{Proof, Verifier, VerifierConfig};
use testkit::{Pebble, PebbleOptions, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The per-proof timeout of most tests: generous for loopback.
const TIMEOUT: Duration = Duration::from_secs(3);

/// How long any one check may take before the test itself gives up.
const OUTER: Duration = Duration::from_secs(10);

/// A token shaped like the ones the domain API hands out.
const TOKEN: &str = "q7Xk2mP9vR4tY8wZ1aB3cD5eF6gH0jKl";

/// A DNS server (no ACME use here: only its challtestsrv matters).
fn pebble() -> Pebble {
    Pebble::start(PebbleOptions::default()).expect("starting pebble-challtestsrv")
}

fn verifier(dns: SocketAddr, http_port: u16, allow_private: bool, timeout: Duration) -> Verifier {
    Verifier::new(VerifierConfig {
        resolver: Some(dns),
        http_port,
        allow_private,
        timeout,
    })
    .unwrap()
}

/// A port on 127.0.0.1 nothing listens on (a moment ago).
fn closed_port() -> u16 {
    StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn challenge(host: &str) -> String {
    format!("_switchyard-challenge.{host}")
}

/// Runs `check` under [`OUTER`].
async fn bounded<T>(check: impl Future<Output = T>) -> T {
    tokio::time::timeout(OUTER, check)
        .await
        .expect("a check outlived its bound")
}

/// A loopback server that accepts connections, reads, and never answers.
async fn silent_server() -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
            held.push(stream);
        }
    });
    (addr, task)
}

/// A loopback server answering every connection with `response` verbatim.
async fn raw_server(response: &'static str) -> (SocketAddr, JoinHandle<()>) {
    raw_server_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), response).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_proof_holds_beside_other_txt_values() {
    let pebble = pebble();
    let host = "erp.customer.test";
    pebble
        .set_txt(&challenge(host), "google-site-verification=abc")
        .unwrap();
    pebble.set_txt(&challenge(host), TOKEN).unwrap();
    let verifier = verifier(pebble.dns_addr(), closed_port(), false, TIMEOUT);

    assert_eq!(bounded(verifier.check(host, TOKEN)).await, Ok(Proof::Dns));
    // Names are case-insensitive and may be written fully qualified.
    assert_eq!(
        bounded(verifier.check("ERP.Customer.test.", TOKEN)).await,
        Ok(Proof::Dns)
    );
    assert_eq!(Proof::Dns.as_str(), "dns");
    assert_eq!(Proof::Http.as_str(), "http");
}

/// A TXT record set: each value a list of character-strings.
type TxtValues = &'static [&'static [&'static str]];

/// The answer to the DNS `query`: `values` for a TXT question about any
/// name, no records for anything else; over UDP with `truncated`, only the
/// TC bit, so the client must ask again over TCP. `None` for a query too
/// short to have a question.
fn dns_reply(query: &[u8], values: TxtValues, truncated: bool) -> Option<Vec<u8>> {
    // The question: labels up to the root, then type and class.
    let mut end = 12;
    while end < query.len() && query[end] != 0 {
        end += 1 + usize::from(query[end]);
    }
    let question_end = end + 5;
    if question_end > query.len() {
        return None;
    }
    let qtype = u16::from_be_bytes([query[end + 1], query[end + 2]]);
    let answers: TxtValues = if qtype == 16 && !truncated {
        values
    } else {
        &[]
    };
    let mut reply = Vec::with_capacity(512);
    reply.extend_from_slice(&query[..2]); // ID
    let tc = if truncated { 0x02 } else { 0 };
    reply.extend_from_slice(&[0x84 | tc | (query[2] & 0x01), 0x00]); // QR, AA, TC, RD as asked
    reply.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    reply.extend_from_slice(&u16::try_from(answers.len()).unwrap().to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    reply.extend_from_slice(&query[12..question_end]);
    for strings in answers {
        let rdata: Vec<u8> = strings
            .iter()
            .flat_map(|s| std::iter::once(u8::try_from(s.len()).unwrap()).chain(s.bytes()))
            .collect();
        reply.extend_from_slice(&[0xc0, 12]); // the question's name
        reply.extend_from_slice(&[0, 16, 0, 1]); // TXT, IN
        reply.extend_from_slice(&60u32.to_be_bytes());
        reply.extend_from_slice(&u16::try_from(rdata.len()).unwrap().to_be_bytes());
        reply.extend_from_slice(&rdata);
    }
    Some(reply)
}

/// A minimal authoritative DNS server on 127.0.0.1, UDP and TCP on one
/// port, answering as [`dns_reply`] says; with `truncate_udp`, every UDP
/// answer is truncated. challtestsrv can serve neither a value split into
/// several strings nor a truncated answer. Returns the address, how many
/// TCP queries it answered, and its task.
async fn txt_server(
    values: TxtValues,
    truncate_udp: bool,
) -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
    let (udp, tcp) = loop {
        let udp = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let tcp_queries = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&tcp_queries);
    let task = tokio::spawn(async move {
        let udp_loop = async {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = udp.recv_from(&mut buf).await {
                if let Some(reply) = dns_reply(&buf[..n], values, truncate_udp) {
                    let _ = udp.send_to(&reply, peer).await;
                }
            }
        };
        let tcp_loop = async {
            while let Ok((mut stream, _)) = tcp.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    // Length-prefixed messages until the client closes.
                    loop {
                        let mut len = [0u8; 2];
                        if stream.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if stream.read_exact(&mut query).await.is_err() {
                            return;
                        }
                        let Some(reply) = dns_reply(&query, values, false) else {
                            return;
                        };
                        counter.fetch_add(1, Ordering::SeqCst);
                        let mut framed = u16::try_from(reply.len()).unwrap().to_be_bytes().to_vec();
                        framed.extend_from_slice(&reply);
                        if stream.write_all(&framed).await.is_err() {
                            return;
                        }
                    }
                });
            }
        };
        tokio::join!(udp_loop, tcp_loop);
    });
    (addr, tcp_queries, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_txt_value_split_into_strings_is_joined() {
    let (dns, tcp_queries, server) = txt_server(
        &[
            &["v=spf1 -all"],
            &["q7Xk2mP9vR4t", "Y8wZ1aB3cD5eF6", "gH0jKl"],
        ],
        false,
    )
    .await;
    let host = "split.customer.test";
    let verifier = verifier(dns, closed_port(), true, TIMEOUT);

    assert_eq!(bounded(verifier.check(host, TOKEN)).await, Ok(Proof::Dns));
    // A prefix of the joined value is not the token.
    let reason = bounded(verifier.check(host, "q7Xk2mP9vR4t"))
        .await
        .unwrap_err();
    assert_eq!(
        reason,
        format!(
            "DNS: TXT record found but no value matches the token; \
             HTTP: {host} has no A or AAAA record"
        )
    );
    // All over UDP.
    assert_eq!(tcp_queries.load(Ordering::SeqCst), 0);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_udp_answer_is_asked_again_over_tcp() {
    let (dns, tcp_queries, server) = txt_server(&[&[TOKEN]], true).await;
    let verifier = verifier(dns, closed_port(), true, TIMEOUT);

    assert_eq!(
        bounded(verifier.check("big.customer.test", TOKEN)).await,
        Ok(Proof::Dns)
    );
    assert!(tcp_queries.load(Ordering::SeqCst) >= 1);
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_txt_value_is_named_as_such() {
    let pebble = pebble();
    let host = "wrong.customer.test";
    pebble.set_txt(&challenge(host), "not-the-token").unwrap();
    let port = closed_port();
    let verifier = verifier(pebble.dns_addr(), port, true, TIMEOUT);

    let reason = bounded(verifier.check(host, TOKEN)).await.unwrap_err();
    assert_eq!(
        reason,
        format!(
            "DNS: TXT record found but no value matches the token; \
             HTTP: could not connect to 127.0.0.1:{port} (connection refused)"
        )
    );
    assert!(!reason.contains("not-the-token"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_changes_are_seen_at_the_next_check() {
    let pebble = pebble();
    let host = "fixed.customer.test";
    let verifier = verifier(pebble.dns_addr(), closed_port(), false, TIMEOUT);

    // No record yet: a negative answer that must not be cached.
    let reason = bounded(verifier.check(host, TOKEN)).await.unwrap_err();
    assert!(
        reason.starts_with(&format!("DNS: no TXT record at {}", challenge(host))),
        "{reason}"
    );

    // A typo: a positive answer that must not be cached either.
    pebble.set_txt(&challenge(host), "typo").unwrap();
    let reason = bounded(verifier.check(host, TOKEN)).await.unwrap_err();
    assert!(reason.contains("no value matches the token"), "{reason}");

    // Fixed: seen at once.
    pebble.clear_txt(&challenge(host)).unwrap();
    pebble.set_txt(&challenge(host), TOKEN).unwrap();
    assert_eq!(bounded(verifier.check(host, TOKEN)).await, Ok(Proof::Dns));

    // Removed: seen at once too.
    pebble.clear_txt(&challenge(host)).unwrap();
    let reason = bounded(verifier.check(host, TOKEN)).await.unwrap_err();
    assert!(reason.starts_with("DNS: no TXT record at"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proof_holds_where_the_name_resolves() {
    let pebble = pebble();
    let host = "shop.customer.test";
    // Trailing whitespace around the token is ignored.
    let upstream = Upstream::builder()
        .respond(200, format!("{TOKEN}\n"))
        .start()
        .unwrap();
    let verifier = verifier(pebble.dns_addr(), upstream.port(), true, TIMEOUT);

    assert_eq!(bounded(verifier.check(host, TOKEN)).await, Ok(Proof::Http));

    let request = upstream
        .last_request()
        .expect("the upstream saw no request");
    assert_eq!(request.method, "GET");
    assert_eq!(
        request.path_and_query,
        format!("/.well-known/switchyard-challenge/{TOKEN}")
    );
    assert_eq!(request.host.as_deref(), Some(host));
    assert_eq!(request.version, "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proof_follows_the_a_record_and_reads_chunked_bodies() {
    let pebble = pebble();
    let host = "chunked.customer.test";
    // 127.0.0.2 is loopback too, but only this A record leads there.
    pebble.add_a(host, Ipv4Addr::new(127, 0, 0, 2)).unwrap();
    let (addr, server) = raw_server_on(
        SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 0)),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
         10\r\nq7Xk2mP9vR4tY8wZ\r\n10\r\n1aB3cD5eF6gH0jKl\r\n0\r\n\r\n",
    )
    .await;
    let port = addr.port();
    let verifier = verifier(pebble.dns_addr(), port, true, TIMEOUT);

    assert_eq!(bounded(verifier.check(host, TOKEN)).await, Ok(Proof::Http));
    server.abort();
}

/// A server on `addr` answering every connection with `response` verbatim,
/// once it has read the request head.
async fn raw_server_on(addr: SocketAddr, response: &'static str) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind(addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_failures_are_named_without_the_body() {
    let pebble = pebble();
    let host = "web.customer.test";
    let dns_part = format!("DNS: no TXT record at {}", challenge(host));

    let wrong = Upstream::builder()
        .respond(200, "secret-page-content")
        .start()
        .unwrap();
    let reason =
        bounded(verifier(pebble.dns_addr(), wrong.port(), true, TIMEOUT).check(host, TOKEN))
            .await
            .unwrap_err();
    assert_eq!(
        reason,
        format!(
            "{dns_part}; HTTP: 127.0.0.1:{} answered 200 but the body is not the token",
            wrong.port()
        )
    );
    assert!(!reason.contains("secret-page-content"), "{reason}");

    let missing = Upstream::builder()
        .respond(404, "no such page")
        .start()
        .unwrap();
    let reason =
        bounded(verifier(pebble.dns_addr(), missing.port(), true, TIMEOUT).check(host, TOKEN))
            .await
            .unwrap_err();
    assert_eq!(
        reason,
        format!(
            "{dns_part}; HTTP: 127.0.0.1:{} answered 404",
            missing.port()
        )
    );

    // A redirect is reported, not followed.
    let (addr, server) = raw_server(
        "HTTP/1.1 301 Moved Permanently\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    let reason =
        bounded(verifier(pebble.dns_addr(), addr.port(), true, TIMEOUT).check(host, TOKEN))
            .await
            .unwrap_err();
    assert_eq!(reason, format!("{dns_part}; HTTP: {addr} answered 301"));
    server.abort();

    // A body too large to be a token is not read to its end.
    let large = Upstream::builder()
        .respond(200, vec![b'x'; 64 * 1024])
        .start()
        .unwrap();
    let reason =
        bounded(verifier(pebble.dns_addr(), large.port(), true, TIMEOUT).check(host, TOKEN))
            .await
            .unwrap_err();
    assert!(
        reason.ends_with("answered 200 but the body is too large to be the token"),
        "{reason}"
    );

    // Not HTTP at all.
    let (addr, server) = raw_server("SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
    let reason =
        bounded(verifier(pebble.dns_addr(), addr.port(), true, TIMEOUT).check(host, TOKEN))
            .await
            .unwrap_err();
    assert_eq!(
        reason,
        format!("{dns_part}; HTTP: {addr} did not answer with valid HTTP")
    );
    server.abort();

    let port = closed_port();
    let reason = bounded(verifier(pebble.dns_addr(), port, true, TIMEOUT).check(host, TOKEN))
        .await
        .unwrap_err();
    assert_eq!(
        reason,
        format!("{dns_part}; HTTP: could not connect to 127.0.0.1:{port} (connection refused)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_public_addresses_are_refused_in_production() {
    let pebble = pebble();
    // It would answer correctly: the guard must stop the request before it is sent.
    let upstream = Upstream::builder().respond(200, TOKEN).start().unwrap();
    let verifier = verifier(pebble.dns_addr(), upstream.port(), false, TIMEOUT);

    let host = "loop.customer.test";
    let reason = bounded(verifier.check(host, TOKEN)).await.unwrap_err();
    assert_eq!(
        reason,
        format!(
            "DNS: no TXT record at {}; HTTP: {host} resolves to 127.0.0.1, a loopback address",
            challenge(host)
        )
    );

    let host = "intranet.customer.test";
    pebble.add_a(host, Ipv4Addr::new(10, 0, 0, 5)).unwrap();
    let reason = bounded(verifier.check(host, TOKEN)).await.unwrap_err();
    assert!(
        reason.ends_with(&format!(
            "HTTP: {host} resolves to 10.0.0.5, a private address"
        )),
        "{reason}"
    );

    let host = "metadata.customer.test";
    pebble
        .add_a(host, Ipv4Addr::new(169, 254, 169, 254))
        .unwrap();
    let reason = bounded(verifier.check(host, TOKEN)).await.unwrap_err();
    assert!(
        reason.ends_with(&format!(
            "HTTP: {host} resolves to 169.254.169.254, a link-local address"
        )),
        "{reason}"
    );

    assert_eq!(upstream.request_count(), 0);
    // The DNS proof is not affected by the guard.
    pebble.set_txt(&challenge(host), TOKEN).unwrap();
    assert_eq!(bounded(verifier.check(host, TOKEN)).await, Ok(Proof::Dns));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_costs_one_timeout() {
    let pebble = pebble();
    let host = "slow.customer.test";
    let (addr, server) = silent_server().await;
    let timeout = Duration::from_millis(600);
    let verifier = verifier(pebble.dns_addr(), addr.port(), true, timeout);

    let started = Instant::now();
    let reason = bounded(verifier.check(host, TOKEN)).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        reason,
        format!(
            "DNS: no TXT record at {}; HTTP: {addr} did not answer within 600ms",
            challenge(host)
        )
    );
    assert!(took >= timeout, "gave up early: {took:?}");
    assert!(took < timeout + Duration::from_secs(1), "took {took:?}");

    // A proof that holds does not wait for the one that hangs.
    pebble.set_txt(&challenge(host), TOKEN).unwrap();
    let slow = Verifier::new(VerifierConfig {
        timeout: Duration::from_secs(30),
        ..verifier.config().clone()
    })
    .unwrap();
    let started = Instant::now();
    assert_eq!(bounded(slow.check(host, TOKEN)).await, Ok(Proof::Dns));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_server_that_never_answers_costs_one_timeout() {
    // UDP queries are never read; TCP connections queue in the backlog
    // and are never answered.
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = StdTcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            break (udp, tcp);
        }
    };
    let dns = udp.local_addr().unwrap();
    let host = "dark.customer.test";
    let timeout = Duration::from_millis(800);
    let verifier = verifier(dns, closed_port(), true, timeout);

    let started = Instant::now();
    let reason = bounded(verifier.check(host, TOKEN)).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        reason,
        format!(
            "DNS: looking up {} timed out after 800ms; \
             HTTP: looking up {host} timed out after 800ms",
            challenge(host)
        )
    );
    assert!(took >= timeout, "gave up early: {took:?}");
    assert!(took < timeout + Duration::from_secs(1), "took {took:?}");
    drop((udp, tcp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_any_lookup() {
    let pebble = pebble();
    let verifier = verifier(pebble.dns_addr(), closed_port(), true, TIMEOUT);
    for host in ["", "10.0.0.5", "a..b.test", "a b.test", "evil.test/x"] {
        let reason = bounded(verifier.check(host, TOKEN)).await.unwrap_err();
        assert!(
            reason.contains("is not a valid domain name"),
            "{host:?}: {reason}"
        );
    }
    for token in ["", "..", "a/b", "a b", "a\r\nHost: evil"] {
        let reason = bounded(verifier.check("ok.customer.test", token))
            .await
            .unwrap_err();
        assert_eq!(reason, "the verification token is malformed");
    }
    assert!(
        Verifier::new(VerifierConfig {
            timeout: Duration::ZERO,
            ..VerifierConfig::default()
        })
        .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_resolver_configuration_loads() {
    // Production's configuration: /etc/resolv.conf, port 80, no private
    // addresses. Only building it is checked: the test must not depend on
    // the outside network.
    let verifier = Verifier::new(VerifierConfig::default()).unwrap();
    assert!(format!("{verifier:?}").contains("http_port: 80"));
}
