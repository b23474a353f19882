//! The HTTP client of tenant-admin's routing feed: one `GET
//! /v1/routing/snapshot` long poll at a time, over HTTP/1.1 on a fresh
//! connection (plain, or TLS verified against the system's roots).
//!
//! A fresh connection per poll keeps the client simple and robust: a poll
//! lasts up to the feed's wait (25 s), so the connect costs nothing worth
//! pooling, a half-closed idle connection can never eat a change, and the
//! bearer token is re-read for every request (a rotated token applies at
//! once). The token is sent marked sensitive and never logged.
//!
//! The same transport fetches the certificates snapshots refer to
//! ([`crate::cert_fetch`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONNECTION, HOST, USER_AGENT};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use pingora::tls::{ClientConfig, RootCertStore, ServerName, TlsConnector};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Longest wait for the TCP connection and the TLS handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How much longer than the long poll's wait the response header may take.
pub const RESPONSE_MARGIN: Duration = Duration::from_secs(10);
/// Longest time to receive a snapshot body once its header arrived: a
/// large snapshot is hundreds of megabytes.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest snapshot body accepted (a million tenants and domains fit).
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 30;
/// Largest error body read for its problem detail.
const MAX_PROBLEM_BYTES: usize = 16 * 1024;
/// Longest problem detail kept for a log line.
const MAX_DETAIL_CHARS: usize = 300;

/// The feed's base URL (`source.url`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedUrl {
    /// As the operator wrote it, for messages. It never holds a password:
    /// those are refused.
    text: String,
    https: bool,
    /// Host name or IP address to connect to and verify, without brackets.
    host: String,
    port: u16,
    /// The `Host` header: host and port as written.
    authority: String,
    /// The path tenant-admin is mounted under, without a trailing `/`.
    prefix: String,
}

impl FeedUrl {
    /// Parses an `http://` or `https://` base URL: host, optional port and
    /// path prefix; no user, password, query or fragment.
    ///
    /// # Errors
    ///
    /// What is wrong, for a `source.url: …` problem.
    pub fn parse(text: &str) -> Result<Self, String> {
        let not_http = || format!("{text:?} is not an http:// or https:// URL");
        let uri: Uri = text.parse().map_err(|_| not_http())?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(not_http()),
        };
        let authority = uri.authority().ok_or_else(not_http)?;
        if authority.as_str().contains('@') {
            // Not echoed: it may hold a password.
            return Err(
                "must not hold a user or password: put the gateway's token in source.token_file"
                    .to_owned(),
            );
        }
        if uri.query().is_some() || text.contains('#') {
            return Err(format!(
                "{text:?} must not have a query or fragment: give the base URL of tenant-admin"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{text:?} has no host"));
        }
        Ok(Self {
            text: text.to_owned(),
            https,
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            authority: authority.as_str().to_owned(),
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// Whether the feed is reached over TLS.
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// The host, when the feed is reached over plain `http://` to a host
    /// other than `localhost` or a loopback address (127.0.0.0/8, `::1`):
    /// certificates and their private keys are not fetched from it.
    pub fn cleartext_remote_host(&self) -> Option<&str> {
        let loopback = self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback());
        (!self.https && !loopback).then_some(self.host.as_str())
    }

    /// The path tenant-admin is mounted under, without a trailing `/`.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The path and query of one poll: this gateway's `region` and id,
    /// and, once a snapshot is applied, its version as `since` with the
    /// long poll's `wait` (whole seconds).
    pub fn request_target(
        &self,
        region: &str,
        gateway: &str,
        since: Option<u64>,
        wait: Duration,
    ) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("region", region);
        query.append_pair("gateway", gateway);
        if let Some(since) = since {
            query.append_pair("since", itoa::Buffer::new().format(since));
            query.append_pair("wait", itoa::Buffer::new().format(wait.as_secs()));
        }
        format!("{}/v1/routing/snapshot?{}", self.prefix, query.finish())
    }
}

impl fmt::Display for FeedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What the feed answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `200`: a snapshot document (JSON), with the version its
    /// `x-snapshot-version` header announces, if any.
    Snapshot {
        /// The announced version, to skip a known one without parsing it.
        version: Option<u64>,
        /// The snapshot document.
        body: Bytes,
    },
    /// `304`: nothing newer than `since` within the wait.
    NotModified,
    /// Any other status, with the problem's detail (or title), shortened.
    Refused {
        /// The status.
        status: StatusCode,
        /// What the problem+json body says, if anything.
        detail: String,
    },
}

/// Why a poll got no answer.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// No TCP connection (refused, unreachable, name not resolved).
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed (e.g. a certificate not trusted).
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    /// A step took too long.
    #[error("timed out {0}")]
    Timeout(&'static str),
    /// The HTTP exchange failed (connection reset, malformed response).
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
    /// The body could not be read whole (cut off, or over the limit).
    #[error("cannot read the body: {0}")]
    Body(String),
    /// The request could not be built (a target that is not a URI path).
    #[error("cannot build the request: {0}")]
    Request(http::Error),
    /// The token cannot be sent as a header (control characters).
    #[error("the token is not a valid header value")]
    Token,
}

impl FeedError {
    /// A bounded metric label for the error.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Tls(_) => "tls",
            Self::Timeout(_) => "timeout",
            Self::Http(_) | Self::Request(_) => "http",
            Self::Body(_) => "body",
            Self::Token => "auth",
        }
    }
}

/// A client of one feed URL.
pub struct FeedClient {
    url: FeedUrl,
    /// For `https://` URLs only.
    tls: Option<TlsConnector>,
}

impl fmt::Debug for FeedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedClient")
            .field("url", &self.url.text)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl FeedClient {
    /// A client of `url`, trusting `roots` when it is `https://`.
    pub fn new(url: FeedUrl, roots: RootCertStore) -> Self {
        let tls = url.https.then(|| {
            pingora::tls::install_default_crypto_provider();
            let mut config = ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            TlsConnector::from(Arc::new(config))
        });
        Self { url, tls }
    }

    /// The URL it polls.
    pub fn url(&self) -> &FeedUrl {
        &self.url
    }

    /// Sends one `GET target` with `token`, waiting up to `wait` plus
    /// [`RESPONSE_MARGIN`] for the answer.
    ///
    /// # Errors
    ///
    /// [`FeedError`] when no HTTP answer arrived in time.
    pub async fn get(
        &self,
        target: &str,
        token: &str,
        wait: Duration,
    ) -> Result<Answer, FeedError> {
        let exchange = self.exchange(target, token, wait + RESPONSE_MARGIN).await?;
        let status = exchange.status();
        match status {
            StatusCode::OK => {
                let version = exchange
                    .response
                    .headers()
                    .get("x-snapshot-version")
                    .and_then(|v| v.to_str().ok()?.parse().ok());
                let body = exchange
                    .body(
                        MAX_SNAPSHOT_BYTES,
                        BODY_TIMEOUT,
                        "reading the snapshot body",
                    )
                    .await?;
                Ok(Answer::Snapshot { version, body })
            }
            StatusCode::NOT_MODIFIED => Ok(Answer::NotModified),
            _ => {
                let detail = exchange.problem_detail().await;
                Ok(Answer::Refused { status, detail })
            }
        }
    }

    /// Sends one `GET target` with `token` (marked sensitive) on a fresh
    /// connection and waits up to `patience` for the response header.
    ///
    /// # Errors
    ///
    /// [`FeedError`] when no HTTP answer arrived in time.
    pub(crate) async fn exchange(
        &self,
        target: &str,
        token: &str,
        patience: Duration,
    ) -> Result<Exchange, FeedError> {
        let mut auth =
            HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| FeedError::Token)?;
        auth.set_sensitive(true);
        let request = Request::get(target)
            .header(HOST, &self.url.authority)
            .header(AUTHORIZATION, auth)
            .header(ACCEPT, "application/json")
            .header(CONNECTION, "close")
            .header(
                USER_AGENT,
                concat!("switchyard-gateway/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(FeedError::Request)?;
        let (mut sender, connection) = timeout(CONNECT_TIMEOUT, self.connect())
            .await
            .map_err(|_| FeedError::Timeout("connecting"))??;
        let response = timeout(patience, sender.send_request(request))
            .await
            .map_err(|_| FeedError::Timeout("waiting for the answer"))??;
        Ok(Exchange {
            response,
            _connection: connection,
        })
    }

    /// Opens a connection (TLS for `https://`) and starts HTTP/1.1 on it.
    async fn connect(&self) -> Result<(SendRequest<Empty<Bytes>>, Connection), FeedError> {
        let tcp = TcpStream::connect((self.url.host.as_str(), self.url.port))
            .await
            .map_err(FeedError::Connect)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => http(tcp).await,
            Some(tls) => {
                let name = ServerName::try_from(self.url.host.clone()).map_err(|e| {
                    FeedError::Tls(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                })?;
                let stream = tls.connect(name, tcp).await.map_err(FeedError::Tls)?;
                http(stream).await
            }
        }
    }
}

/// The task driving one connection, stopped when the poll is over
/// (answered, timed out or cancelled by shutdown).
pub(crate) struct Connection(JoinHandle<()>);

/// A response header received, its body still to read, and the
/// connection it arrives on (closed when this is dropped).
pub(crate) struct Exchange {
    pub(crate) response: http::Response<Incoming>,
    _connection: Connection,
}

impl Exchange {
    pub(crate) fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The whole body, at most `limit` bytes, within `patience`; `what`
    /// names the step in a timeout.
    pub(crate) async fn body(
        self,
        limit: usize,
        patience: Duration,
        what: &'static str,
    ) -> Result<Bytes, FeedError> {
        let collected = timeout(
            patience,
            Limited::new(self.response.into_body(), limit).collect(),
        )
        .await
        .map_err(|_| FeedError::Timeout(what))?
        .map_err(|e| FeedError::Body(e.to_string()))?;
        Ok(collected.to_bytes())
    }

    /// The detail of an error answer's problem+json body, shortened; empty
    /// when it cannot be read quickly.
    pub(crate) async fn problem_detail(self) -> String {
        match self.body(MAX_PROBLEM_BYTES, CONNECT_TIMEOUT, "").await {
            Ok(body) => problem_detail(&body),
            Err(_) => String::new(),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn http<T>(io: T) -> Result<(SendRequest<Empty<Bytes>>, Connection), FeedError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((sender, Connection(task)))
}

/// The system's trusted roots (honouring `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`); unparsable ones are skipped.
///
/// # Errors
///
/// When the system's certificates cannot be read at all.
pub fn system_roots() -> std::io::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(pingora::tls::load_native_certs()?);
    Ok(roots)
}

/// The `detail` (or `title`) of a problem+json body, shortened and
/// stripped of control characters; the start of any other body.
fn problem_detail(body: &[u8]) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            ["detail", "title"]
                .iter()
                .find_map(|k| v.get(k)?.as_str().map(str::to_owned))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_DETAIL_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_validated_without_echoing_a_password() {
        let url = FeedUrl::parse("https://tenant-admin.internal:8443/admin/").unwrap();
        assert!(url.is_https());
        assert_eq!(
            (url.host.as_str(), url.port, url.prefix.as_str()),
            ("tenant-admin.internal", 8443, "/admin")
        );
        assert_eq!(url.authority, "tenant-admin.internal:8443");
        let url = FeedUrl::parse("http://[::1]").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 80));
        assert_eq!(url.to_string(), "http://[::1]");

        assert!(
            FeedUrl::parse("ftp://admin")
                .unwrap_err()
                .contains("not an http://")
        );
        assert!(FeedUrl::parse("tenant-admin:8080").is_err());
        let e = FeedUrl::parse("http://gw:hunter2@tenant-admin").unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(FeedUrl::parse("http://tenant-admin/?x=1").is_err());
        assert!(FeedUrl::parse("http://tenant-admin/#x").is_err());
    }

    #[test]
    fn only_plain_http_to_another_host_than_loopback_is_cleartext_remote() {
        let remote = |text: &str| {
            FeedUrl::parse(text)
                .unwrap()
                .cleartext_remote_host()
                .map(str::to_owned)
        };
        for local in [
            "http://127.0.0.1:9000",
            "http://127.8.9.10",
            "http://[::1]:9000",
            "http://localhost:9000/admin",
            "http://LOCALHOST",
            "https://tenant-admin.internal",
            "https://10.0.0.5",
        ] {
            assert_eq!(remote(local), None, "{local}");
        }
        assert_eq!(
            remote("http://tenant-admin.internal:8080").as_deref(),
            Some("tenant-admin.internal")
        );
        assert_eq!(remote("http://10.0.0.5").as_deref(), Some("10.0.0.5"));
        assert_eq!(remote("http://[fe80::1]").as_deref(), Some("fe80::1"));
        assert_eq!(
            remote("http://localhost.evil.test").as_deref(),
            Some("localhost.evil.test")
        );
    }

    #[test]
    fn the_query_is_encoded_and_carries_since_and_wait_once_a_version_is_applied() {
        let url = FeedUrl::parse("http://127.0.0.1:9000/").unwrap();
        let wait = Duration::from_secs(25);
        assert_eq!(
            url.request_target("eu-west", "gw 1&x=/é", None, wait),
            "/v1/routing/snapshot?region=eu-west&gateway=gw+1%26x%3D%2F%C3%A9"
        );
        let url = FeedUrl::parse("http://127.0.0.1:9000/base").unwrap();
        assert_eq!(
            url.request_target("us-east", "h-1-ab", Some(42), wait),
            "/base/v1/routing/snapshot?region=us-east&gateway=h-1-ab&since=42&wait=25"
        );
    }

    #[test]
    fn a_problem_body_gives_its_detail_and_anything_else_its_start() {
        assert_eq!(
            problem_detail(br#"{"title":"Unauthorized","detail":"unknown token","status":401}"#),
            "unknown token"
        );
        assert_eq!(problem_detail(br#"{"title":"Forbidden"}"#), "Forbidden");
        assert_eq!(problem_detail(b"oops\r\nmore"), "oopsmore");
        assert_eq!(problem_detail(&[b'x'; 5000]).len(), MAX_DETAIL_CHARS);
    }

    fn client(url: &str) -> FeedClient {
        FeedClient::new(FeedUrl::parse(url).unwrap(), RootCertStore::empty())
    }

    #[tokio::test]
    async fn a_poll_sends_the_bearer_token_and_reads_status_version_and_body() {
        let snapshot = testkit::Upstream::builder()
            .respond(200, r#"{"version": 7}"#)
            .header("x-snapshot-version", "7")
            .start()
            .unwrap();
        let feed = client(&format!("{}/prefix", snapshot.url()));
        let target = feed
            .url()
            .request_target("eu-west", "gw-1", Some(6), Duration::ZERO);
        let answer = feed.get(&target, "s3cret", Duration::ZERO).await.unwrap();
        assert_eq!(
            answer,
            Answer::Snapshot {
                version: Some(7),
                body: Bytes::from_static(br#"{"version": 7}"#)
            }
        );
        let seen = snapshot.last_request().unwrap();
        assert_eq!(
            seen.path_and_query,
            "/prefix/v1/routing/snapshot?region=eu-west&gateway=gw-1&since=6&wait=0"
        );
        assert_eq!(seen.header("authorization"), Some("Bearer s3cret"));
        assert_eq!(
            seen.host.as_deref(),
            Some(snapshot.addr().to_string().as_str())
        );

        let unchanged = testkit::Upstream::builder()
            .respond(304, "")
            .start()
            .unwrap();
        let answer = client(&unchanged.url()).get("/", "t", Duration::ZERO).await;
        assert_eq!(answer.unwrap(), Answer::NotModified);

        let refused = testkit::Upstream::builder()
            .respond(401, r#"{"title":"Unauthorized","detail":"unknown token"}"#)
            .start()
            .unwrap();
        let answer = client(&refused.url()).get("/", "t", Duration::ZERO).await;
        assert_eq!(
            answer.unwrap(),
            Answer::Refused {
                status: StatusCode::UNAUTHORIZED,
                detail: "unknown token".to_owned()
            }
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error_and_a_bad_token_is_never_sent() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let feed = client(&format!("http://127.0.0.1:{port}"));
        let e = feed.get("/", "t", Duration::ZERO).await.unwrap_err();
        assert_eq!(e.kind(), "connect", "{e}");
        let e = feed.get("/", "a\nb", Duration::ZERO).await.unwrap_err();
        assert_eq!(e.kind(), "auth", "{e}");
    }

    /// Accepts one TLS connection with a certificate for `localhost` and
    /// answers its request with `304`.
    async fn tls_server(dir: &std::path::Path, ca: &testkit::TestCa) -> u16 {
        ca.issue(dir, "localhost", &["localhost"]);
        let cert = dir.join("localhost.crt").display().to_string();
        let key = dir.join("localhost.key").display().to_string();
        let (certs, key) = pingora::tls::load_certs_and_key_files(&cert, &key)
            .unwrap()
            .unwrap();
        pingora::tls::install_default_crypto_provider();
        let config = pingora::tls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = pingora::tls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut head = Vec::new();
                let mut buf = [0; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 304 Not Modified\r\ncontent-length: 0\r\n\r\n")
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        port
    }

    #[tokio::test]
    async fn https_feeds_are_verified_against_the_trusted_roots() {
        let dir = tempfile::tempdir().unwrap();
        let ca = testkit::TestCa::new();
        let port = tls_server(dir.path(), &ca).await;
        let url = FeedUrl::parse(&format!("https://localhost:{port}")).unwrap();

        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let trusting = FeedClient::new(url.clone(), roots);
        let answer = trusting.get("/", "t", Duration::ZERO).await.unwrap();
        assert_eq!(answer, Answer::NotModified);

        let untrusting = FeedClient::new(url, RootCertStore::empty());
        let e = untrusting.get("/", "t", Duration::ZERO).await.unwrap_err();
        assert_eq!(e.kind(), "tls", "{e}");
    }
}
