//! The ACME client: certificates for tenants' custom domains, validated over HTTP-01.
//!
//! Built on `instant-acme`, with what it leaves to its caller:
//!
//! - **Bounded calls.** Every request to the CA runs under [`AcmeConfig::call_timeout`], and
//!   [`PendingOrder::complete`] under its own overall deadline as well.
//! - **Retries.** `badNonce` is retryable by design (RFC 8555 §6.5); instant-acme retries it
//!   three times per request, and each step here retries it up to [`BAD_NONCE_RETRIES`]
//!   more times. Network failures, timeouts and 5xx answers are retried a few times with a
//!   short backoff ([`TRANSIENT_ATTEMPTS`]). Whatever still fails is an [`AcmeError`] that
//!   says whether retrying later can help.
//! - **All authorizations first.** [`Acme::order`] fetches every authorization of the order
//!   before anything is published, so a failure there leaves nothing half-done.
//! - **The transport.** instant-acme's default client (hyper-util's pooled client over
//!   hyper-rustls) leaves Nagle's algorithm on. Over HTTP/2 every POST goes out as a
//!   HEADERS and a DATA frame in separate writes, and the second waits for the server's
//!   delayed ACK: about 40 ms per request on Linux, against ~1 ms with `TCP_NODELAY`
//!   (measured against Pebble). [`Acme::connect`] uses the same client with `TCP_NODELAY`
//!   set, keeping its connection pool and HTTP/2, and trusting the platform's roots plus
//!   [`AcmeConfig::ca_root`].
//!
//! Key material is never logged: the account credentials and the certificate key only
//! leave this module as return values, and the `Debug` impls leave them out.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{Request, StatusCode, header};
use hyper_rustls::HttpsConnectorBuilder;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, ChallengeStatus,
    ChallengeType, HttpClient, Identifier, Key, NewAccount, NewOrder, Order, OrderStatus, Problem,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, PublicKeyData};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Runs `$call` (an expression making a future of `Result<T, instant_acme::Error>`, built
/// afresh for every attempt) under the [`Attempts`] `$attempts`, to a
/// `Result<T, AcmeError>`.
macro_rules! call {
    ($attempts:expr, $call:expr) => {{
        let attempts: &mut Attempts = &mut $attempts;
        loop {
            let outcome = match attempts.limit() {
                Ok(limit) => tokio::time::timeout(limit, $call).await.ok(),
                Err(err) => break Err(err),
            };
            if let ControlFlow::Break(done) = attempts.judge(outcome).await {
                break done;
            }
        }
    }};
}

/// How many more times one step is retried after instant-acme's own `badNonce` retries
/// are used up.
pub const BAD_NONCE_RETRIES: u32 = 10;

/// How many times one step is attempted when it fails transiently (network, timeout, 5xx).
pub const TRANSIENT_ATTEMPTS: u32 = 4;

/// The pause after the first transient failure of a step; doubled after each further one.
const TRANSIENT_BACKOFF: Duration = Duration::from_millis(200);

/// The first pause while waiting for the CA to validate or to issue; doubled each time up to
/// [`POLL_MAX`]. Short, since a local CA answers within milliseconds; a public one takes a
/// second or two, which is eight looks.
const POLL_START: Duration = Duration::from_millis(20);

/// The longest pause between two looks at an order.
const POLL_MAX: Duration = Duration::from_secs(3);

/// How long an idle connection to the CA is kept for the next request.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// How long a `Retry-After` seen on a 429 answer is taken to belong to the error that follows.
const RATE_LIMIT_MEMORY: Duration = Duration::from_secs(30);

/// The prefix of the ACME error types (RFC 8555 §6.7).
const ACME_ERROR: &str = "urn:ietf:params:acme:error:";

/// Where the CA is and how to talk to it.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The ACME directory, e.g. `https://acme-v02.api.letsencrypt.org/directory`.
    pub directory_url: String,
    /// A PEM file of extra roots to trust for the ACME API (Pebble's, a private CA's), on
    /// top of the platform's.
    pub ca_root: Option<PathBuf>,
    /// The account's contact, e.g. `mailto:ops@example.com`.
    pub contact: Option<String>,
    /// How long any one request to the CA may take.
    pub call_timeout: Duration,
}

/// Why talking to the CA failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcmeError {
    /// The CA refused: validation failed, the name is not allowed, the request was
    /// malformed… Retrying the same thing will fail the same way. The reason in words, from
    /// the ACME problem document and its subproblems, with the step it happened in.
    #[error("the CA refused: {0}")]
    Rejected(String),
    /// The CA's rate limit was hit.
    #[error("rate limited by the CA: {detail}")]
    RateLimited {
        /// The CA's explanation.
        detail: String,
        /// When to try again, from the 429 answer's `Retry-After`, if it had one.
        retry_after: Option<Duration>,
    },
    /// Network failures, timeouts, 5xx answers, `badNonce` that kept coming after every
    /// retry, and local problems (an unreadable `ca_root`, unusable stored credentials) that
    /// need an operator rather than a tenant. Retrying later may work.
    #[error("{0}")]
    Transient(String),
}

/// A registered ACME account and the client that talks to its CA. Cheap to clone.
#[derive(Clone)]
pub struct Acme {
    /// The account, with its key and HTTP client.
    account: Account,
    /// Where the CA is, for logs.
    directory_url: String,
    /// Timeouts and the rate-limit memory shared with the orders.
    calls: Calls,
}

impl fmt::Debug for Acme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acme")
            .field("directory_url", &self.directory_url)
            .field("account_id", &self.account.id())
            .field("call_timeout", &self.calls.call_timeout)
            .finish_non_exhaustive()
    }
}

/// An HTTP-01 challenge to publish: answer `GET /.well-known/acme-challenge/{token}` on
/// port 80 of the name with `key_authorization` (as `text/plain` or
/// `application/octet-stream`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http01 {
    /// The last path segment of the challenge URL.
    pub token: String,
    /// The body to answer with: the token and the account key's thumbprint. Public by
    /// design, not a secret.
    pub key_authorization: String,
}

/// An order whose authorizations are known, waiting for its challenges to be published.
pub struct PendingOrder {
    /// The order, with its authorizations fetched.
    order: Order,
    /// The name the order is for.
    hostname: String,
    /// The HTTP-01 challenges of its pending authorizations.
    challenges: Vec<Http01>,
    /// Timeouts and the rate-limit memory.
    calls: Calls,
}

impl fmt::Debug for PendingOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingOrder")
            .field("hostname", &self.hostname)
            .field("url", &self.order.url())
            .field("challenges", &self.challenges)
            .finish_non_exhaustive()
    }
}

/// An issued certificate and its key.
#[derive(Clone)]
pub struct Issued {
    /// The chain as the CA sent it, leaf first, PEM.
    pub chain_pem: String,
    /// The certificate's private key (ECDSA P-256), PKCS#8 PEM.
    pub key_pem: String,
    /// The leaf's `notBefore`.
    pub not_before: DateTime<Utc>,
    /// The leaf's `notAfter`.
    pub not_after: DateTime<Utc>,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field(
                "chain_certificates",
                &self
                    .chain_pem
                    .matches("-----BEGIN CERTIFICATE-----")
                    .count(),
            )
            .field("key_pem", &"<redacted>")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish()
    }
}

impl Acme {
    /// Loads the account from `stored` credentials (instant-acme's `AccountCredentials` as
    /// JSON, as returned by an earlier call), or registers a new account (agreeing to the
    /// CA's terms of service) when there are none. Returns the new credentials JSON when it
    /// registered one; it holds the account key, so store it sealed.
    ///
    /// The stored account is looked up at the CA by its key. When the CA does not know it
    /// (a test CA restarted, an account deactivated) or the credentials were made for
    /// another directory URL, a new account is registered and its credentials returned.
    ///
    /// # Errors
    ///
    /// [`AcmeError::Transient`] when the CA cannot be reached, `ca_root` cannot be read or
    /// `stored` is not usable; [`AcmeError::Rejected`] when the CA refuses the
    /// registration (e.g. an invalid contact).
    pub async fn connect(
        config: &AcmeConfig,
        stored: Option<&str>,
    ) -> Result<(Acme, Option<String>), AcmeError> {
        Self::connect_with_http(config, stored, Self::transport(config)?).await
    }

    /// The HTTP client [`Acme::connect`] uses: hyper-util's pooled client over hyper-rustls
    /// (HTTP/1.1 and HTTP/2), as instant-acme's default, but with `TCP_NODELAY`, a connect
    /// timeout of `config.call_timeout`, and the platform's roots plus `config.ca_root`.
    ///
    /// # Errors
    ///
    /// [`AcmeError::Transient`] when `ca_root` cannot be read or holds no certificate, or
    /// no roots can be loaded at all.
    pub fn transport(config: &AcmeConfig) -> Result<Arc<dyn HttpClient>, AcmeError> {
        Ok(Arc::new(nodelay_client(config)?))
    }

    /// [`Acme::connect`] over another HTTP client; `config.ca_root` is then the client's
    /// business. For comparing transports; production uses [`Acme::connect`].
    ///
    /// # Errors
    ///
    /// As [`Acme::connect`].
    pub async fn connect_with_http(
        config: &AcmeConfig,
        stored: Option<&str>,
        http: Arc<dyn HttpClient>,
    ) -> Result<(Acme, Option<String>), AcmeError> {
        let calls = Calls {
            call_timeout: config.call_timeout,
            rate_limit: RateLimitMemory::default(),
        };
        let http = RecordingClient {
            inner: http,
            rate_limit: calls.rate_limit.clone(),
        };
        let directory_url = config.directory_url.clone();

        if let Some(stored) = stored {
            let credentials = parse_credentials(stored)?;
            let stored_directory = credentials
                .get("directory")
                .and_then(serde_json::Value::as_str);
            if let Some(dir) = stored_directory
                && dir != directory_url
            {
                tracing::warn!(
                    stored_directory = dir,
                    directory = %directory_url,
                    "the stored ACME account belongs to another directory; registering a new one"
                );
            } else {
                let mut attempts = calls.attempts("looking up the ACME account".to_owned(), None);
                let found = call!(attempts, find_account(&credentials, &directory_url, &http))?;
                if let Some(account) = found {
                    let acme = Acme {
                        account,
                        directory_url,
                        calls,
                    };
                    return Ok((acme, None));
                }
                tracing::warn!(
                    directory = %directory_url,
                    "the CA does not know the stored ACME account; registering a new one"
                );
            }
        }

        let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
        let new_account = NewAccount {
            contact: &contact,
            terms_of_service_agreed: true,
            only_return_existing: false,
        };
        let mut attempts = calls.attempts("registering an ACME account".to_owned(), None);
        let (account, credentials) = call!(
            attempts,
            Account::builder_with_http(Box::new(http.clone())).create(
                &new_account,
                directory_url.clone(),
                None
            )
        )?;
        let credentials = serde_json::to_string(&credentials).map_err(|err| {
            AcmeError::Transient(format!(
                "serialising the new ACME account's credentials: {err}"
            ))
        })?;
        tracing::info!(account = account.id(), directory = %directory_url, "registered an ACME account");
        let acme = Acme {
            account,
            directory_url,
            calls,
        };
        Ok((acme, Some(credentials)))
    }

    /// The account's URL at the CA, which identifies it.
    pub fn account_id(&self) -> &str {
        self.account.id()
    }

    /// Creates an order for one DNS name (a trailing dot and upper case are normalised
    /// away) and fetches all its authorizations. The HTTP-01 challenges to publish are in
    /// [`PendingOrder::challenges`].
    ///
    /// # Errors
    ///
    /// [`AcmeError::Rejected`] for a name the CA will not issue for (and, before asking,
    /// for wildcards and IP addresses, which HTTP-01 cannot validate), or when the CA offers
    /// no HTTP-01 challenge; [`AcmeError::RateLimited`]; [`AcmeError::Transient`].
    pub async fn order(&self, hostname: &str) -> Result<PendingOrder, AcmeError> {
        let hostname = normalise_hostname(hostname)?;
        let identifiers = [Identifier::Dns(hostname.clone())];

        let mut attempts = self
            .calls
            .attempts(format!("creating the order for {hostname}"), None);
        let mut order = call!(
            attempts,
            self.account.new_order(&NewOrder::new(&identifiers))
        )?;

        let mut attempts = self
            .calls
            .attempts(format!("fetching the authorizations for {hostname}"), None);
        call!(attempts, fetch_authorizations(&mut order))?;

        let mut challenges = Vec::new();
        let mut authorizations = order.authorizations();
        // Every state is cached now: this loop makes no requests.
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(|err| {
                AcmeError::Transient(format!("reading the authorizations for {hostname}: {err}"))
            })?;
            let identifier = authorization.identifier().to_string();
            match authorization.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(AcmeError::Rejected(format!(
                        "the new order's authorization for {identifier} is {other:?}"
                    )));
                }
            }
            let Some(challenge) = authorization.challenge(ChallengeType::Http01) else {
                return Err(AcmeError::Rejected(format!(
                    "the CA offers no http-01 challenge for {identifier}"
                )));
            };
            challenges.push(Http01 {
                token: challenge.token.clone(),
                key_authorization: challenge.key_authorization().as_str().to_owned(),
            });
        }

        Ok(PendingOrder {
            order,
            hostname,
            challenges,
            calls: self.calls.clone(),
        })
    }
}

impl PendingOrder {
    /// The HTTP-01 challenges to publish before [`PendingOrder::complete`]; empty when the
    /// CA already had valid authorizations for the name.
    pub fn challenges(&self) -> &[Http01] {
        &self.challenges
    }

    /// The name the order is for.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// Tells the CA the challenges are ready, waits for it to validate them, finalizes the
    /// order with a CSR for a new ECDSA P-256 key and downloads the chain, all within
    /// `deadline`.
    ///
    /// # Errors
    ///
    /// [`AcmeError::Rejected`] when validation fails (naming the CA's reason) or the CA
    /// refuses to issue; [`AcmeError::Transient`] when `deadline` passes first or the CA
    /// cannot be reached; [`AcmeError::RateLimited`].
    pub async fn complete(self, deadline: Duration) -> Result<Issued, AcmeError> {
        let PendingOrder {
            mut order,
            hostname,
            calls,
            ..
        } = self;
        let until = Instant::now() + deadline;

        announce_challenges(&mut order, &hostname, &calls, until).await?;
        let status = wait_for_validation(&mut order, &hostname, &calls, until).await?;

        let key = KeyPair::generate()
            .map_err(|err| AcmeError::Transient(format!("generating a key: {err}")))?;
        if status == OrderStatus::Ready {
            finalize(&mut order, &hostname, &key, &calls, until).await?;
        }
        let chain_pem = download_chain(&mut order, &hostname, &calls, until).await?;
        let issued = inspect_chain(chain_pem, &key, &hostname)?;
        tracing::info!(
            hostname,
            not_after = %issued.not_after,
            "the CA issued a certificate"
        );
        Ok(issued)
    }
}

/// Fetches every authorization of `order` that is not cached yet.
async fn fetch_authorizations(order: &mut Order) -> Result<(), instant_acme::Error> {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        authorization?;
    }
    Ok(())
}

/// Tells the CA that every pending HTTP-01 challenge of `order` is ready.
async fn announce_challenges(
    order: &mut Order,
    hostname: &str,
    calls: &Calls,
    until: Instant,
) -> Result<(), AcmeError> {
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization.map_err(|err| {
            AcmeError::Transient(format!("reading the authorizations for {hostname}: {err}"))
        })?;
        if authorization.status != AuthorizationStatus::Pending {
            continue;
        }
        let identifier = authorization.identifier().to_string();
        let Some(mut challenge) = authorization.challenge(ChallengeType::Http01) else {
            return Err(AcmeError::Rejected(format!(
                "the CA offers no http-01 challenge for {identifier}"
            )));
        };
        if challenge.status != ChallengeStatus::Pending {
            continue;
        }
        let mut attempts = calls.attempts(
            format!("telling the CA the challenge for {identifier} is ready"),
            Some(until),
        );
        match call!(attempts, challenge.set_ready()) {
            Ok(()) => {}
            // An earlier attempt may have gone through with its answer lost, and the CA
            // now refuses to start the challenge twice: let the order's state tell.
            Err(AcmeError::Rejected(reason)) if attempts.failed_transiently() => {
                tracing::debug!(hostname, reason, "challenge already announced, it seems");
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Polls `order` until the CA has validated it (`Ready`, or further along), failing with
/// the validation error when it is `Invalid`.
async fn wait_for_validation(
    order: &mut Order,
    hostname: &str,
    calls: &Calls,
    until: Instant,
) -> Result<OrderStatus, AcmeError> {
    let mut poll = Polling::new(until);
    loop {
        let (status, error) = refresh(order, hostname, calls, until).await?;
        match status {
            OrderStatus::Ready | OrderStatus::Processing | OrderStatus::Valid => return Ok(status),
            OrderStatus::Invalid => {
                return Err(why_invalid(order, hostname, error, calls, until).await);
            }
            OrderStatus::Pending => {
                if !poll.pause().await {
                    return Err(AcmeError::Transient(format!(
                        "the CA had not validated {hostname} by the deadline"
                    )));
                }
            }
        }
    }
}

/// Sends the CSR for `key`, checking the order's state when a retried attempt is refused
/// (the first may have gone through).
async fn finalize(
    order: &mut Order,
    hostname: &str,
    key: &KeyPair,
    calls: &Calls,
    until: Instant,
) -> Result<(), AcmeError> {
    let mut params = CertificateParams::new(vec![hostname.to_owned()])
        .map_err(|err| AcmeError::Rejected(format!("{hostname} is not a valid name: {err}")))?;
    params.distinguished_name = DistinguishedName::new();
    let csr = params
        .serialize_request(key)
        .map_err(|err| AcmeError::Transient(format!("making the CSR for {hostname}: {err}")))?;

    let mut attempts = calls.attempts(format!("finalizing the order for {hostname}"), Some(until));
    match call!(attempts, order.finalize_csr(csr.der())) {
        Ok(()) => Ok(()),
        Err(err @ AcmeError::Rejected(_)) if attempts.failed_transiently() => {
            let (status, _) = refresh(order, hostname, calls, until).await?;
            match status {
                OrderStatus::Processing | OrderStatus::Valid => Ok(()),
                _ => Err(err),
            }
        }
        Err(err) => Err(err),
    }
}

/// Polls `order` until its certificate is issued and downloads the chain.
async fn download_chain(
    order: &mut Order,
    hostname: &str,
    calls: &Calls,
    until: Instant,
) -> Result<String, AcmeError> {
    let mut poll = Polling::new(until);
    loop {
        let mut attempts = calls.attempts(
            format!("downloading the certificate for {hostname}"),
            Some(until),
        );
        if let Some(chain) = call!(attempts, order.certificate())? {
            return Ok(chain);
        }
        if !poll.pause().await {
            return Err(AcmeError::Transient(format!(
                "the CA had not issued the certificate for {hostname} by the deadline"
            )));
        }
    }
}

/// The order's current status and error.
async fn refresh(
    order: &mut Order,
    hostname: &str,
    calls: &Calls,
    until: Instant,
) -> Result<(OrderStatus, Option<Problem>), AcmeError> {
    let mut attempts = calls.attempts(format!("checking the order for {hostname}"), Some(until));
    call!(attempts, async {
        order
            .refresh()
            .await
            .map(|state| (state.status, state.error.clone()))
    })
}

/// Why the CA marked `order` invalid: the error of every challenge that failed (fetched
/// afresh), and the order's own error unless it repeats one of those.
async fn why_invalid(
    order: &mut Order,
    hostname: &str,
    order_error: Option<Problem>,
    calls: &Calls,
    until: Instant,
) -> AcmeError {
    let mut reasons = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let identifier = authorization.identifier().to_string();
        let mut attempts = calls.attempts(
            format!("fetching why validating {identifier} failed"),
            Some(until),
        );
        let refreshed = call!(attempts, async {
            authorization.refresh().await.map(|state| {
                state
                    .challenges
                    .iter()
                    .filter_map(|challenge| challenge.error.as_ref().map(describe))
                    .collect::<Vec<_>>()
            })
        });
        match refreshed {
            Ok(errors) => reasons.extend(
                errors
                    .into_iter()
                    .map(|error| format!("validating {identifier} failed: {error}")),
            ),
            Err(err) => reasons.push(format!("(could not fetch why {identifier} failed: {err})")),
        }
    }
    // The order's own error, unless it only repeats a challenge's.
    if let Some(problem) = &order_error {
        let text = describe(problem);
        if !reasons.iter().any(|reason| reason.contains(&text)) {
            reasons.insert(0, text);
        }
    }
    if reasons.is_empty() {
        reasons.push("no reason given".to_owned());
    }
    AcmeError::Rejected(format!(
        "the order for {hostname} is invalid: {}",
        reasons.join("; ")
    ))
}

/// Checks the chain's leaf against `key` and reads its validity.
fn inspect_chain(chain_pem: String, key: &KeyPair, hostname: &str) -> Result<Issued, AcmeError> {
    let bad = |what: String| AcmeError::Transient(format!("the chain for {hostname} {what}"));
    let leaf = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .next()
        .ok_or_else(|| bad("holds no certificate".to_owned()))?
        .map_err(|err| bad(format!("is not PEM: {err}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|err| bad(format!("has a leaf that does not parse: {err}")))?;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(bad("is for another key than the CSR's".to_owned()));
    }
    let time = |t: x509_parser::time::ASN1Time| {
        DateTime::<Utc>::from_timestamp(t.timestamp(), 0)
            .ok_or_else(|| bad(format!("has a date out of range: {t}")))
    };
    let not_before = time(cert.validity().not_before)?;
    let not_after = time(cert.validity().not_after)?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
        not_before,
        not_after,
    })
}

/// The pauses between two looks at an order: [`POLL_START`], doubling up to [`POLL_MAX`].
#[derive(Debug)]
struct Polling {
    /// The next pause.
    pause: Duration,
    /// When waiting must end.
    until: Instant,
}

impl Polling {
    fn new(until: Instant) -> Self {
        Self {
            pause: POLL_START,
            until,
        }
    }

    /// Sleeps for the next pause; false, without sleeping, if it would end past `until`.
    async fn pause(&mut self) -> bool {
        if Instant::now() + self.pause >= self.until {
            return false;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(POLL_MAX);
        true
    }
}

/// `hostname` in lower case without a trailing dot, if HTTP-01 can validate it.
fn normalise_hostname(hostname: &str) -> Result<String, AcmeError> {
    let name = hostname.trim().trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Err(AcmeError::Rejected("the hostname is empty".to_owned()));
    }
    if name.starts_with("*.") {
        return Err(AcmeError::Rejected(format!(
            "{name} is a wildcard, which http-01 cannot validate"
        )));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(AcmeError::Rejected(format!(
            "{name} is an IP address, not a DNS name"
        )));
    }
    Ok(name)
}

/// The account of the stored `credentials` at the CA, looked up by its key
/// (`onlyReturnExisting`), so an account the CA has forgotten is noticed now rather than at
/// the first order; `None` when the CA does not know it.
async fn find_account(
    credentials: &serde_json::Value,
    directory_url: &str,
    http: &RecordingClient,
) -> Result<Option<Account>, instant_acme::Error> {
    let credentials: AccountCredentials = serde_json::from_value(credentials.clone())?;
    let pkcs8 = credentials.private_key().clone_key();
    let key = Key::from_pkcs8_der(pkcs8.clone_key())?;
    let found = Account::builder_with_http(Box::new(http.clone()))
        .from_key((key, PrivateKeyDer::Pkcs8(pkcs8)), directory_url.to_owned())
        .await;
    match found {
        Ok((account, _)) => Ok(Some(account)),
        Err(instant_acme::Error::Api(problem))
            if problem.r#type.as_deref()
                == Some("urn:ietf:params:acme:error:accountDoesNotExist") =>
        {
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// Stored credentials as JSON, checked to be credentials, without quoting them in errors.
fn parse_credentials(stored: &str) -> Result<serde_json::Value, AcmeError> {
    let unusable = |err: serde_json::Error| {
        AcmeError::Transient(format!(
            "the stored ACME account credentials are unusable ({:?} error at line {}, column {})",
            err.classify(),
            err.line(),
            err.column()
        ))
    };
    let value: serde_json::Value = serde_json::from_str(stored).map_err(unusable)?;
    let _credentials: AccountCredentials =
        serde_json::from_value(value.clone()).map_err(unusable)?;
    Ok(value)
}

/// A problem document in words: its detail and type, then each subproblem's.
fn describe(problem: &Problem) -> String {
    let mut text = problem
        .detail
        .clone()
        .unwrap_or_else(|| "no detail given".to_owned());
    if let Some(kind) = &problem.r#type {
        text.push_str(&format!(" ({})", kind.trim_start_matches(ACME_ERROR)));
    }
    for sub in &problem.subproblems {
        text.push_str("; ");
        if let Some(identifier) = &sub.identifier {
            text.push_str(&format!("{}: ", identifier.authorized(false)));
        }
        text.push_str(sub.detail.as_deref().unwrap_or("no detail given"));
        if let Some(kind) = &sub.r#type {
            text.push_str(&format!(" ({})", kind.trim_start_matches(ACME_ERROR)));
        }
    }
    text
}

/// What to do about one failed attempt.
#[derive(Debug)]
enum Failure {
    /// The CA rejected the nonce: retry at once.
    BadNonce,
    /// Retry after a pause.
    Transient(String),
    /// Give up with this error.
    Final(AcmeError),
}

/// Sorts an instant-acme error into what to do about it.
fn classify(err: instant_acme::Error, rate_limit: &RateLimitMemory) -> Failure {
    match err {
        instant_acme::Error::Api(problem) => {
            let kind = problem
                .r#type
                .as_deref()
                .map_or("", |kind| kind.trim_start_matches(ACME_ERROR));
            match kind {
                "badNonce" => Failure::BadNonce,
                "rateLimited" => Failure::Final(AcmeError::RateLimited {
                    detail: describe(&problem),
                    retry_after: rate_limit.recent(),
                }),
                "serverInternal" => Failure::Transient(describe(&problem)),
                _ if problem.status.is_some_and(|status| status >= 500) => {
                    Failure::Transient(describe(&problem))
                }
                _ => Failure::Final(AcmeError::Rejected(describe(&problem))),
            }
        }
        // A non-JSON error page (a proxy's 502, say) fails to parse as a problem document.
        instant_acme::Error::Json(err) => {
            Failure::Transient(format!("the CA's answer was not the JSON expected: {err}"))
        }
        other => Failure::Transient(error_chain(&other)),
    }
}

/// An error and its sources, joined.
fn error_chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The timeouts and rate-limit memory shared by an account and its orders.
#[derive(Debug, Clone)]
struct Calls {
    /// How long one request may take.
    call_timeout: Duration,
    /// The last `Retry-After` of a 429 answer.
    rate_limit: RateLimitMemory,
}

impl Calls {
    /// The attempts of one step, described as `what` in errors, ending by `until` if given.
    fn attempts(&self, what: String, until: Option<Instant>) -> Attempts {
        Attempts {
            what,
            call_timeout: self.call_timeout,
            until,
            bad_nonces: 0,
            transient_failures: 0,
            rate_limit: self.rate_limit.clone(),
        }
    }
}

/// The retry state of one step.
#[derive(Debug)]
struct Attempts {
    /// The step, for errors.
    what: String,
    /// How long one attempt may take.
    call_timeout: Duration,
    /// When the whole step must be done, if it has a deadline.
    until: Option<Instant>,
    /// `badNonce` failures so far.
    bad_nonces: u32,
    /// Transient failures so far.
    transient_failures: u32,
    /// Where a 429's `Retry-After` is remembered.
    rate_limit: RateLimitMemory,
}

impl Attempts {
    /// How long the next attempt may take, or the error if the deadline has passed.
    fn limit(&self) -> Result<Duration, AcmeError> {
        let Some(until) = self.until else {
            return Ok(self.call_timeout);
        };
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(AcmeError::Transient(format!(
                "{}: the deadline passed",
                self.what
            )));
        }
        Ok(left.min(self.call_timeout))
    }

    /// Whether an attempt of this step failed transiently (and so may have reached the CA).
    fn failed_transiently(&self) -> bool {
        self.transient_failures > 0
    }

    /// Decides what follows an attempt (`None`: it timed out): done, or another attempt
    /// (after pausing if need be).
    async fn judge<T>(
        &mut self,
        outcome: Option<Result<T, instant_acme::Error>>,
    ) -> ControlFlow<Result<T, AcmeError>> {
        let failure = match outcome {
            Some(Ok(value)) => return ControlFlow::Break(Ok(value)),
            Some(Err(err)) => classify(err, &self.rate_limit),
            None => Failure::Transient(format!("no answer within {:?}", self.call_timeout)),
        };
        match failure {
            Failure::Final(AcmeError::Rejected(reason)) => {
                ControlFlow::Break(Err(AcmeError::Rejected(format!("{}: {reason}", self.what))))
            }
            Failure::Final(err) => ControlFlow::Break(Err(err)),
            Failure::BadNonce => {
                self.bad_nonces += 1;
                if self.bad_nonces > BAD_NONCE_RETRIES {
                    return ControlFlow::Break(Err(AcmeError::Transient(format!(
                        "{}: the CA kept rejecting nonces (badNonce), {} retries",
                        self.what, BAD_NONCE_RETRIES
                    ))));
                }
                tracing::debug!(step = %self.what, retry = self.bad_nonces, "badNonce, retrying");
                ControlFlow::Continue(())
            }
            Failure::Transient(reason) => {
                self.transient_failures += 1;
                if self.transient_failures >= TRANSIENT_ATTEMPTS {
                    return ControlFlow::Break(Err(AcmeError::Transient(format!(
                        "{}: {reason} ({} attempts)",
                        self.what, self.transient_failures
                    ))));
                }
                let pause = TRANSIENT_BACKOFF * 2_u32.pow(self.transient_failures - 1);
                if self
                    .until
                    .is_some_and(|until| Instant::now() + pause >= until)
                {
                    return ControlFlow::Break(Err(AcmeError::Transient(format!(
                        "{}: {reason} (the deadline leaves no time to retry)",
                        self.what
                    ))));
                }
                tracing::debug!(step = %self.what, reason, "transient failure, retrying");
                tokio::time::sleep(pause).await;
                ControlFlow::Continue(())
            }
        }
    }
}

/// The `Retry-After` of the last 429 answer, and when it came.
#[derive(Debug, Clone, Default)]
struct RateLimitMemory(Arc<Mutex<Option<(Instant, Duration)>>>);

impl RateLimitMemory {
    /// Remembers a 429's `Retry-After`.
    fn remember(&self, retry_after: Duration) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some((Instant::now(), retry_after));
        }
    }

    /// What is left of the last `Retry-After`, if it came within [`RATE_LIMIT_MEMORY`].
    fn recent(&self) -> Option<Duration> {
        let (at, retry_after) = (*self.0.lock().ok()?)?;
        let age = at.elapsed();
        (age < RATE_LIMIT_MEMORY).then(|| retry_after.saturating_sub(age))
    }
}

/// An HTTP client that remembers the `Retry-After` of 429 answers, which instant-acme's
/// errors do not carry.
#[derive(Clone)]
struct RecordingClient {
    /// The client doing the work.
    inner: Arc<dyn HttpClient>,
    /// Where `Retry-After` goes.
    rate_limit: RateLimitMemory,
}

impl HttpClient for RecordingClient {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = self.inner.request(req);
        let rate_limit = self.rate_limit.clone();
        Box::pin(async move {
            let response = response.await?;
            if response.parts.status == StatusCode::TOO_MANY_REQUESTS
                && let Some(retry_after) = response
                    .parts
                    .headers
                    .get(header::RETRY_AFTER)
                    .and_then(|value| value.to_str().ok())
                    .and_then(parse_retry_after)
            {
                rate_limit.remember(retry_after);
            }
            Ok(response)
        })
    }
}

/// A `Retry-After` value: seconds, or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

/// The client of [`Acme::transport`], HTTPS only.
fn nodelay_client(
    config: &AcmeConfig,
) -> Result<HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>, AcmeError>
{
    let extra_roots = match &config.ca_root {
        None => Vec::new(),
        Some(path) => {
            let roots = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|err| {
                    AcmeError::Transient(format!(
                        "reading the ACME CA root {}: {err}",
                        path.display()
                    ))
                })?;
            if roots.is_empty() {
                return Err(AcmeError::Transient(format!(
                    "the ACME CA root file {} holds no certificate",
                    path.display()
                )));
            }
            roots
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_failed = |err: rustls::Error| {
        AcmeError::Transient(format!("configuring TLS for the ACME client: {err}"))
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
            .map_err(tls_failed)?;
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_failed)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();

    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(config.call_timeout));
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Ok(HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(https))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_read_as_words_with_subproblems() {
        let problem: Problem = serde_json::from_value(serde_json::json!({
            "type": "urn:ietf:params:acme:error:rejectedIdentifier",
            "detail": "Error creating new order",
            "status": 400,
            "subproblems": [{
                "type": "urn:ietf:params:acme:error:rejectedIdentifier",
                "detail": "name is blocked",
                "identifier": { "type": "dns", "value": "bad.example" }
            }]
        }))
        .unwrap();
        assert_eq!(
            describe(&problem),
            "Error creating new order (rejectedIdentifier); bad.example: name is blocked \
             (rejectedIdentifier)"
        );
    }

    #[test]
    fn errors_sort_into_retry_or_give_up() {
        let api = |kind: &str, status: u16| {
            instant_acme::Error::Api(
                serde_json::from_value(serde_json::json!({
                    "type": format!("{ACME_ERROR}{kind}"), "detail": "d", "status": status
                }))
                .unwrap(),
            )
        };
        let memory = RateLimitMemory::default();
        assert!(matches!(
            classify(api("badNonce", 400), &memory),
            Failure::BadNonce
        ));
        assert!(matches!(
            classify(api("serverInternal", 500), &memory),
            Failure::Transient(_)
        ));
        assert!(matches!(
            classify(api("unauthorized", 403), &memory),
            Failure::Final(AcmeError::Rejected(_))
        ));
        assert!(matches!(
            classify(api("rateLimited", 429), &memory),
            Failure::Final(AcmeError::RateLimited {
                retry_after: None,
                ..
            })
        ));
        memory.remember(Duration::from_secs(120));
        let Failure::Final(AcmeError::RateLimited {
            retry_after: Some(after),
            ..
        }) = classify(api("rateLimited", 429), &memory)
        else {
            panic!("rate limit without its Retry-After");
        };
        assert!(after <= Duration::from_secs(120) && after > Duration::from_secs(100));
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after(" 30 "), Some(Duration::from_secs(30)));
        let in_a_minute = (Utc::now() + chrono::Duration::seconds(60)).to_rfc2822();
        let parsed = parse_retry_after(&in_a_minute.replace("+0000", "GMT")).unwrap();
        assert!(parsed > Duration::from_secs(55) && parsed <= Duration::from_secs(60));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn hostnames_are_normalised_and_unvalidatable_ones_refused() {
        assert_eq!(normalise_hostname("Shop.Example.").unwrap(), "shop.example");
        for bad in ["", "*.shop.example", "192.0.2.1", "::1"] {
            assert!(
                matches!(normalise_hostname(bad), Err(AcmeError::Rejected(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn unusable_credentials_are_not_quoted() {
        let secret = r#"{"id": 5, "key_pkcs8": "SECRETSECRET"}"#;
        let AcmeError::Transient(message) = parse_credentials(secret).unwrap_err() else {
            panic!("not transient");
        };
        assert!(!message.contains("SECRET"), "{message}");
    }
}
