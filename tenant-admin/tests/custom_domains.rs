//! Custom domains end to end on loopback: the real `tenant-admin serve`
//! with a real ACME CA (Debian's Pebble) and its DNS server
//! (`pebble-challtestsrv`), a real gateway following the feed with an HTTPS
//! listener, a real upstream, and a real TLS client that trusts only
//! Pebble's root.
//!
//! A domain is added, proven through a DNS TXT record (or the gateway's
//! HTTP answer), ordered from Pebble with HTTP-01 answered by the gateway,
//! and served by the gateway under its SNI name with a chain that verifies.
//! Also: Pebble refusing validation (the domain `failed` with the reason,
//! then retried by itself), badNonce storms, renewal of a short-lived
//! certificate, two tenant-admin replicas ordering each domain exactly
//! once, and removal or suspension taking the certificate off the gateway.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use support::gateway::Gateway;
use support::{Admin, ShardSpec, free_port};
use testkit::{Pebble, PebbleOptions, PgCluster, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Everything one test needs.
struct Stack {
    // Dropped in order: gateway and tenant-admin before the CA.
    gateway: Gateway,
    admin: Admin,
    pebble: Pebble,
    _cluster: PgCluster,
    _upstream: Upstream,
    _dir: tempfile::TempDir,
}

/// tenant-admin's settings for Pebble: its directory and API root, its DNS
/// server for proofs, the gateway's HTTP port for the HTTP proof, quick
/// retries, generous limits.
fn acme_env(pebble: &Pebble, http_port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("BASE_DOMAINS", "app.example.test".to_owned()),
        ("ACME_DIRECTORY", pebble.directory_url()),
        (
            "ACME_CA_ROOT",
            pebble.api_ca_pem_path().display().to_string(),
        ),
        ("ACME_CONTACT", "ops@platform.example".to_owned()),
        ("DNS_RESOLVER", pebble.dns_addr().to_string()),
        ("CHALLENGE_HTTP_PORT", http_port.to_string()),
        ("CHALLENGE_ALLOW_PRIVATE", "true".to_owned()),
        ("ACME_RETRY_AFTER_SECS", "2".to_owned()),
        ("ACME_CONCURRENCY", "8".to_owned()),
        ("ACME_ORDERS_PER_HOUR", "5000".to_owned()),
        ("ACME_TENANT_ORDERS_PER_HOUR", "5000".to_owned()),
    ]
}

async fn stack(options: PebbleOptions) -> Stack {
    let http_port = free_port();
    let pebble = Pebble::start(PebbleOptions {
        http_port,
        ..options
    })
    .expect("Pebble starts");
    let mut builder = Admin::builder();
    for (k, v) in acme_env(&pebble, http_port) {
        builder = builder.env(k, v);
    }
    let admin = builder.start();
    let cluster = PgCluster::start().unwrap();
    let upstream = Upstream::echo("shard-1").unwrap();
    admin.add_region("eu-west").await;
    admin
        .post(
            "/v1/plans",
            admin.token(),
            &json!({"name": "business", "rate_per_sec": 100_000, "burst": 100_000,
                    "max_body_bytes": 65536, "max_domains": 50}),
        )
        .await
        .expect_status(201);
    admin
        .add_shard(
            &ShardSpec::new("shard-1", "eu-west", &cluster)
                .pool("eu-west", upstream.addr().to_string()),
        )
        .await;
    for (id, slug) in [("t-acme", "acme"), ("t-globex", "globex")] {
        admin
            .create_tenant(
                &json!({"id": id, "slug": slug, "plan": "business", "region": "eu-west"}),
            )
            .await;
    }
    let (_, token) = admin.create_token("edge", "gateway").await;
    let dir = tempfile::tempdir().unwrap();
    let gateway = Gateway::start_with(dir.path(), "gw", &admin.base_url(), &token, http_port, true);
    Stack {
        gateway,
        admin,
        pebble,
        _cluster: cluster,
        _upstream: upstream,
        _dir: dir,
    }
}

impl Stack {
    async fn add(&self, tenant: &str, hostname: &str) -> Value {
        self.admin
            .post(
                &format!("/v1/tenants/{tenant}/domains"),
                self.admin.token(),
                &json!({ "hostname": hostname }),
            )
            .await
            .expect_status(201)
            .json
    }

    async fn domain(&self, tenant: &str, hostname: &str) -> Value {
        self.admin
            .get(
                &format!("/v1/tenants/{tenant}/domains/{hostname}"),
                self.admin.token(),
            )
            .await
            .expect_status(200)
            .json
    }

    async fn verify(&self, tenant: &str, hostname: &str) -> Value {
        self.admin
            .post(
                &format!("/v1/tenants/{tenant}/domains/{hostname}/verify"),
                self.admin.token(),
                &json!({}),
            )
            .await
            .expect_status(200)
            .json
    }

    /// Publishes the domain's TXT proof in the CA's DNS and verifies it.
    async fn prove_by_dns(&self, tenant: &str, hostname: &str) -> Value {
        let added = self.domain(tenant, hostname).await;
        let token = added["verification"]["token"].as_str().unwrap();
        self.pebble
            .set_txt(&format!("_switchyard-challenge.{hostname}"), token)
            .unwrap();
        self.verify(tenant, hostname).await
    }

    /// Waits for the domain to reach `state`; the domain then.
    async fn wait_state(
        &self,
        tenant: &str,
        hostname: &str,
        state: &str,
        limit: Duration,
    ) -> Value {
        let start = Instant::now();
        loop {
            let d = self.domain(tenant, hostname).await;
            if d["state"] == state {
                return d;
            }
            assert!(
                start.elapsed() < limit,
                "{hostname} did not become {state} within {limit:?}: {d:#}\n---- tenant-admin ----\n{}",
                self.admin.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn https(&self) -> SocketAddr {
        self.gateway.https.expect("an HTTPS listener")
    }

    /// A client trusting only Pebble's issuing root.
    fn client(&self) -> Arc<rustls::ClientConfig> {
        testkit::client_trusting_pem(&self.pebble.issuer_root_pem().unwrap(), &[])
    }
}

/// What an HTTPS request through the gateway gave.
#[derive(Debug)]
struct Served {
    status: u16,
    body: String,
    /// The leaf certificate the gateway presented.
    leaf: Vec<u8>,
}

/// `GET /` over TLS to `addr` with SNI and Host `hostname`, verifying the
/// chain against `client`'s roots; the error text when the handshake or
/// the request fails.
async fn https_get(
    addr: SocketAddr,
    hostname: &str,
    client: Arc<rustls::ClientConfig>,
) -> Result<Served, String> {
    let connector = tokio_rustls::TlsConnector::from(client);
    let name = ServerName::try_from(hostname.to_owned()).map_err(|e| e.to_string())?;
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default();
        tls.write_all(
            format!("GET / HTTP/1.1\r\nhost: {hostname}\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .map_err(|e| format!("write: {e}"))?;
        let mut raw = Vec::new();
        let _ = tls.read_to_end(&mut raw).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no HTTP response: {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok(Served { status, body, leaf })
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "timed out".to_owned())?
}

/// The tenant the upstream saw, from its JSON echo (chunked or not).
fn tenant_in(body: &str) -> Option<String> {
    let start = body.find('{')?;
    let end = body.rfind('}')?;
    let echo: Value = serde_json::from_str(&body[start..=end]).ok()?;
    echo["headers"]["x-tenant-id"].as_str().map(str::to_owned)
}

/// `not_after` of a DER certificate, seconds since the epoch, and its serial.
fn leaf_facts(der: &[u8]) -> (i64, String) {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("a certificate");
    (
        cert.validity().not_after.timestamp(),
        cert.raw_serial_as_string(),
    )
}

/// Waits until an HTTPS request for `hostname` gives `Ok` that passes `check`.
async fn served_within(
    stack: &Stack,
    hostname: &str,
    limit: Duration,
    check: impl Fn(&Result<Served, String>) -> bool,
) -> Result<Served, String> {
    let client = stack.client();
    let start = Instant::now();
    loop {
        let got = https_get(stack.https(), hostname, client.clone()).await;
        if check(&got) {
            return got;
        }
        assert!(
            start.elapsed() < limit,
            "{hostname}: not as expected within {limit:?}: {got:?}\n---- gateway ----\n{}",
            stack.gateway.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_proven_by_dns_is_retried_after_a_refused_validation_and_served_by_sni() {
    let s = stack(PebbleOptions::default()).await;
    let host = "erp.customer.test";
    s.add("t-acme", host).await;

    // The name points elsewhere and there is no TXT record yet: both
    // proofs fail, and the reason says why.
    s.pebble.add_a(host, Ipv4Addr::new(127, 0, 0, 9)).unwrap();
    let pending = s.verify("t-acme", host).await;
    assert_eq!(pending["state"], "pending_verification", "{pending:#}");
    let reason = pending["last_error"].as_str().unwrap();
    assert!(
        reason.contains("DNS") && reason.contains("HTTP"),
        "{reason}"
    );
    assert_eq!(s.gateway.tenant_of(host), Err(404));

    // The TXT record proves it, and the name routes at once. The CA still
    // resolves it to an address nobody answers on, so the certificate
    // order fails, with the reason.
    let verified = s.prove_by_dns("t-acme", host).await;
    assert_eq!(verified["state"], "verified", "{verified:#}");
    assert_eq!(verified["verification"]["verified_by"], "dns");
    s.gateway
        .routed_within(host, "t-acme", Duration::from_secs(2));
    let failed = s
        .wait_state("t-acme", host, "failed", Duration::from_secs(60))
        .await;
    let reason = failed["last_error"].as_str().unwrap();
    assert!(reason.starts_with("certificate order failed"), "{reason}");
    assert!(
        reason.contains("127.0.0.9") || reason.contains("onnection"),
        "{reason}"
    );
    assert!(failed["next_issue_at"].is_string(), "{failed:#}");

    // The name pointed at the platform: the next retry (seconds later
    // here) gets the certificate.
    s.pebble.clear_a(host).unwrap();
    let active = s
        .wait_state("t-acme", host, "active", Duration::from_secs(60))
        .await;
    let cert = &active["certificate"];
    let not_after = chrono::DateTime::parse_from_rfc3339(cert["not_after"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert_eq!(active["last_error"], Value::Null);

    // Served under its SNI name, with a chain that verifies against
    // Pebble's root, to the right tenant.
    let served = served_within(&s, host, Duration::from_secs(2), |r| {
        r.as_ref().is_ok_and(|s| s.status == 200)
    })
    .await
    .unwrap();
    assert_eq!(
        tenant_in(&served.body).as_deref(),
        Some("t-acme"),
        "{}",
        served.body
    );
    assert_eq!(leaf_facts(&served.leaf).0, not_after);

    // Another tenant's name is not served with this certificate, and the
    // platform has no default certificate here: the handshake fails.
    let other = https_get(s.https(), "globex.app.example.test", s.client()).await;
    assert!(other.is_err(), "{other:?}");

    // The snapshot references the certificate; only the gateway role gets
    // its key, and the catalog holds the key sealed.
    let snapshot = s.admin.snapshot().await;
    let refs = snapshot["certificates"].as_array().unwrap();
    assert_eq!(refs.len(), 1, "{snapshot}");
    assert_eq!(refs[0]["hostname"], host);
    assert_eq!(refs[0]["id"], cert["id"]);
    assert!(!snapshot.to_string().contains("PRIVATE KEY"));
    s.admin
        .get(
            &format!("/v1/routing/certificates?ids={}", cert["id"]),
            s.admin.token(),
        )
        .await
        .expect_status(403);
    let db = s.admin.catalog().await;
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT key_sealed FROM certificates")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"));
    assert!(!s.admin.logs().contains("PRIVATE KEY"));
    assert!(!s.gateway.logs().contains("PRIVATE KEY"));

    // Failed orders, then one issued; the gauges show it.
    let outcomes: Vec<Option<String>> =
        sqlx::query_scalar("SELECT outcome FROM acme_orders ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert!(outcomes.len() >= 2, "{outcomes:?}");
    assert_eq!(outcomes.last().unwrap().as_deref(), Some("issued"));
    assert!(
        outcomes[..outcomes.len() - 1]
            .iter()
            .all(|o| o.as_deref() == Some("failed"))
    );
    let metrics = s
        .admin
        .request(http::Method::GET, "/metrics")
        .send()
        .await
        .text();
    assert!(
        metrics.contains("switchyard_admin_domains{state=\"active\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_admin_acme_orders_total{outcome=\"failed\"}")
            && metrics.contains("switchyard_admin_acme_orders_total{outcome=\"issued\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchyard_admin_certificate_nearest_expiry_days"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_proven_through_the_gateway_is_served_and_removal_or_suspension_takes_it_away() {
    let s = stack(PebbleOptions::default()).await;
    let host = "shop.customer.test";
    let added = s.add("t-globex", host).await;
    // The CA's DNS points every name at 127.0.0.1, where the gateway
    // answers the HTTP proof: the name points at the platform. The proof is
    // checked once the gateway has the pending domain's token (the feed
    // brings it a few milliseconds after the claim).
    let url = added["verification"]["http"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = url
        .strip_prefix(&format!("http://{host}"))
        .unwrap()
        .to_owned();
    let http = s.gateway.http;
    support::eventually(
        "the gateway answers the HTTP proof",
        Duration::from_secs(5),
        || {
            let path = path.clone();
            async move {
                let (status, _) = tokio::task::spawn_blocking(move || {
                    support::gateway::get(http, &path, "shop.customer.test")
                })
                .await
                .unwrap();
                (status == 200).then_some(())
            }
        },
    )
    .await;
    let verified = s.verify("t-globex", host).await;
    assert_eq!(verified["state"], "verified", "{verified:#}");
    assert_eq!(verified["verification"]["verified_by"], "http");
    s.wait_state("t-globex", host, "active", Duration::from_secs(60))
        .await;
    served_within(&s, host, Duration::from_secs(2), |r| {
        r.as_ref().is_ok_and(|s| s.status == 200)
    })
    .await
    .unwrap();

    // Suspended: neither routed nor served; resumed: both again.
    s.admin
        .post("/v1/tenants/t-globex/suspend", s.admin.token(), &json!({}))
        .await
        .expect_status(200);
    served_within(&s, host, Duration::from_secs(2), Result::is_err)
        .await
        .unwrap_err();
    assert_eq!(s.gateway.tenant_of(host), Err(404));
    s.admin
        .post("/v1/tenants/t-globex/resume", s.admin.token(), &json!({}))
        .await
        .expect_status(200);
    served_within(&s, host, Duration::from_secs(2), |r| {
        r.as_ref().is_ok_and(|s| s.status == 200)
    })
    .await
    .unwrap();

    // Removed: the certificate leaves the gateway within a second, and its
    // key leaves the catalog.
    let start = Instant::now();
    s.admin
        .delete(
            &format!("/v1/tenants/t-globex/domains/{host}"),
            s.admin.token(),
        )
        .await
        .expect_status(200);
    served_within(&s, host, Duration::from_secs(2), Result::is_err)
        .await
        .unwrap_err();
    let gone = start.elapsed();
    assert!(gone < Duration::from_secs(2), "{gone:?}");
    assert_eq!(s.gateway.tenant_of(host), Err(404));
    let db = s.admin.catalog().await;
    assert_eq!(support::count(&db, "certificates").await, 0);
    assert_eq!(support::count(&db, "acme_challenges").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_nonces_are_retried_and_a_short_lived_certificate_is_renewed() {
    // Half the nonces refused; certificates valid for 45 s, so renewal is
    // due about 30 s after issuance.
    let s = stack(PebbleOptions {
        nonce_reject_percent: 50,
        validity_secs: Some(45),
        ..PebbleOptions::default()
    })
    .await;
    let hosts = ["a.customer.test", "b.customer.test", "c.customer.test"];
    for host in hosts {
        s.add("t-acme", host).await;
        s.verify("t-acme", host).await;
    }
    let mut first = Vec::new();
    for host in hosts {
        let d = s
            .wait_state("t-acme", host, "active", Duration::from_secs(90))
            .await;
        first.push(d["certificate"]["id"].as_i64().unwrap());
    }
    let served = served_within(&s, hosts[0], Duration::from_secs(2), |r| {
        r.as_ref().is_ok_and(|s| s.status == 200)
    })
    .await
    .unwrap();
    let (_, first_serial) = leaf_facts(&served.leaf);

    // Renewed before it expires, and the gateway serves the new one.
    let start = Instant::now();
    loop {
        let d = s.domain("t-acme", hosts[0]).await;
        if d["certificate"]["id"].as_i64() != Some(first[0]) && d["state"] == "active" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not renewed: {d:#}\n{}",
            s.admin.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let renewed = served_within(&s, hosts[0], Duration::from_secs(2), |r| {
        r.as_ref()
            .is_ok_and(|s| s.status == 200 && leaf_facts(&s.leaf).1 != first_serial)
    })
    .await
    .unwrap();
    assert_eq!(renewed.status, 200);
    let db = s.admin.catalog().await;
    let renewals: i64 =
        sqlx::query_scalar("SELECT count(*) FROM acme_orders WHERE renewal AND outcome = 'issued'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(renewals >= 1);
    // The replaced certificate and its key are gone.
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM certificates WHERE id = $1")
        .bind(first[0])
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(kept, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_order_each_domain_exactly_once() {
    let s = stack(PebbleOptions::default()).await;
    let catalog_url = s.admin.catalog_cluster().unwrap().database_url("catalog");
    let http_port = s.gateway.http.port();
    let mut builder = Admin::builder().catalog_url(catalog_url);
    for (k, v) in acme_env(&s.pebble, http_port) {
        builder = builder.env(k, v);
    }
    let second = builder.start();

    // Proven by DNS and left to the background checks of both replicas,
    // which then race to order them.
    let hosts: Vec<String> = (0..6).map(|i| format!("site{i}.customer.test")).collect();
    for host in &hosts {
        let added = s.add("t-acme", host).await;
        s.pebble
            .set_txt(
                &format!("_switchyard-challenge.{host}"),
                added["verification"]["token"].as_str().unwrap(),
            )
            .unwrap();
    }
    for host in &hosts {
        s.wait_state("t-acme", host, "active", Duration::from_secs(90))
            .await;
    }
    let db = s.admin.catalog().await;
    let per_domain: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT hostname, count(*), count(DISTINCT owner) FROM acme_orders GROUP BY hostname ORDER BY hostname",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(per_domain.len(), hosts.len());
    for (host, orders, _) in &per_domain {
        assert_eq!(
            *orders, 1,
            "{host} was ordered {orders} times: {per_domain:?}"
        );
    }
    assert_eq!(
        support::count(&db, "certificates").await,
        hosts.len() as i64
    );
    let owners: i64 = sqlx::query_scalar("SELECT count(DISTINCT owner) FROM acme_orders")
        .fetch_one(&db)
        .await
        .unwrap();
    eprintln!("orders split between {owners} replica(s)");
    drop(second);
}
