//! Proving that a customer controls a custom domain before the platform
//! serves it or asks for a certificate for it.
//!
//! A customer who adds `erp.customer.com` to their tenant is given a token
//! and proves control of the name in either of two ways:
//!
//! - **DNS**: a TXT record at `_switchyard-challenge.erp.customer.com` whose
//!   value is the token. Other TXT values may sit beside it; a value split
//!   into several character-strings is joined first.
//! - **HTTP**: `GET http://erp.customer.com/.well-known/switchyard-challenge/<token>`
//!   answered `200` with the token as its body (surrounding whitespace
//!   ignored). The gateways answer that once the name points at the
//!   platform.
//!
//! [`Verifier::check`] tries both at once and succeeds on the first that
//! holds. When neither does, its error is a short reason covering both,
//! written to be shown to the customer as is: it names records, addresses
//! and status codes, never a response body or an internal error.
//!
//! Nothing is cached: every check asks the DNS again, so a customer who
//! fixes a record sees the next check pass.
//!
//! The HTTP proof fetches from an address the customer chose, so in
//! production ([`VerifierConfig::allow_private`] false) it refuses
//! loopback, private, link-local, unspecified, multicast and other
//! non-public addresses. It connects to the address it checked (no second
//! resolution to rebind), sends one request and follows no redirect.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::rdata::TXT;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

/// The label under which the DNS proof's TXT record lives.
pub const DNS_LABEL: &str = "_switchyard-challenge";

/// The path prefix of the HTTP proof; the token follows it.
pub const HTTP_PATH_PREFIX: &str = "/.well-known/switchyard-challenge/";

/// The most of an HTTP answer that is read, head and body together.
const MAX_RESPONSE: usize = 4096;

/// The longest token accepted: it goes into a request line.
const MAX_TOKEN: usize = 512;

/// How a [`Verifier`] reaches the DNS and the customer's web server.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The DNS server to ask, over UDP and falling back to TCP; `None` uses
    /// the system's (`/etc/resolv.conf`).
    pub resolver: Option<SocketAddr>,
    /// The port the HTTP proof is fetched from: 80 in production.
    pub http_port: u16,
    /// Whether the HTTP proof may be fetched from loopback, private,
    /// link-local and other non-public addresses. False in production: a
    /// customer must not make the platform fetch from its own network.
    pub allow_private: bool,
    /// How long each proof may take in all: the DNS lookup; the HTTP
    /// proof's resolution, connection and response. Both proofs run at
    /// once, so a check takes at most about this long.
    pub timeout: Duration,
}

impl Default for VerifierConfig {
    /// Production settings: the system's resolver, port 80, public
    /// addresses only, 10 seconds per proof.
    fn default() -> Self {
        Self {
            resolver: None,
            http_port: 80,
            allow_private: false,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Which proof of control held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proof {
    /// The TXT record at `_switchyard-challenge.<hostname>`.
    Dns,
    /// The token served over HTTP at the well-known path.
    Http,
}

impl Proof {
    /// `"dns"` or `"http"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Http => "http",
        }
    }
}

impl fmt::Display for Proof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks domain-ownership proofs. Cheap to clone: clones share one
/// resolver (and its connections, so keep them on one Tokio runtime).
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    resolver: TokioResolver,
    config: VerifierConfig,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier asking `config.resolver` (or the system's resolver).
    ///
    /// # Errors
    ///
    /// A zero timeout, or a system DNS configuration that cannot be read.
    pub fn new(config: VerifierConfig) -> Result<Self, String> {
        if config.timeout.is_zero() {
            return Err("the verification timeout must be more than zero".to_owned());
        }
        let provider = TokioRuntimeProvider::default();
        let mut builder = match config.resolver {
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![server]),
                    provider,
                )
            }
            None => TokioResolver::builder(provider)
                .map_err(|e| format!("reading the system DNS configuration: {e}"))?,
        };
        configure(builder.options_mut(), config.timeout);
        let resolver = builder
            .build()
            .map_err(|e| format!("building the DNS resolver: {e}"))?;
        Ok(Self {
            inner: Arc::new(Inner { resolver, config }),
        })
    }

    /// The configuration this verifier was built with.
    pub fn config(&self) -> &VerifierConfig {
        &self.inner.config
    }

    /// Checks both proofs for `hostname` and `token` at once.
    ///
    /// # Errors
    ///
    /// When neither proof holds: a short reason covering both, e.g.
    /// `DNS: no TXT record at _switchyard-challenge.erp.customer.com; HTTP:
    /// 203.0.113.7:80 answered 404`, safe to show to the customer. Also
    /// when `hostname` is not a domain name or `token` is unusable.
    pub async fn check(&self, hostname: &str, token: &str) -> Result<Proof, String> {
        let host = normalize_hostname(hostname)?;
        validate_token(token)?;
        let deadline = Instant::now() + self.inner.config.timeout;
        let dns = self.dns_proof(&host, token, deadline);
        let http = self.http_proof(&host, token, deadline);
        let result = first_ok(dns, http).await;
        match &result {
            Ok(proof) => {
                tracing::debug!(hostname = %host, proof = proof.as_str(), "domain verified")
            }
            Err(reason) => tracing::debug!(hostname = %host, %reason, "domain not verified"),
        }
        result
    }

    /// The DNS proof: a TXT value at `_switchyard-challenge.<host>` equal to
    /// `token`.
    async fn dns_proof(&self, host: &str, token: &str, deadline: Instant) -> Result<(), String> {
        let record = format!("{DNS_LABEL}.{host}");
        let name = Name::from_ascii(format!("{record}."))
            .map_err(|_| format!("DNS: {record} is not a valid name"))?;
        let lookup =
            match timeout_at(deadline, self.inner.resolver.lookup(name, RecordType::TXT)).await {
                Err(_) => {
                    return Err(format!(
                        "DNS: looking up {record} timed out after {}",
                        seconds(self.inner.config.timeout)
                    ));
                }
                Ok(Err(err)) => {
                    return Err(format!(
                        "DNS: {}",
                        lookup_failure(&err, &record, "TXT", self.inner.config.timeout)
                    ));
                }
                Ok(Ok(lookup)) => lookup,
            };
        let mut found = false;
        for answer in lookup.answers() {
            if let RData::TXT(txt) = &answer.data {
                found = true;
                if txt_matches(txt, token) {
                    return Ok(());
                }
            }
        }
        if found {
            Err("DNS: TXT record found but no value matches the token".to_owned())
        } else {
            Err(format!("DNS: no TXT record at {record}"))
        }
    }

    /// The HTTP proof: the token served at the well-known path of `host`.
    async fn http_proof(&self, host: &str, token: &str, deadline: Instant) -> Result<(), String> {
        let config = &self.inner.config;
        let ip = self.http_address(host, deadline).await?;
        let addr = SocketAddr::new(ip, config.http_port);
        let within = seconds(config.timeout);
        let mut stream = match timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(format!(
                    "HTTP: connecting to {addr} timed out after {within}"
                ));
            }
            Ok(Err(err)) => {
                return Err(format!(
                    "HTTP: could not connect to {addr} ({})",
                    err.kind()
                ));
            }
            Ok(Ok(stream)) => stream,
        };
        let request = format!(
            "GET {HTTP_PATH_PREFIX}{token} HTTP/1.1\r\n\
             Host: {host}\r\n\
             User-Agent: switchyard-verifier\r\n\
             Accept: */*\r\n\
             Connection: close\r\n\r\n"
        );
        let exchange = async {
            stream.write_all(request.as_bytes()).await?;
            read_response(&mut stream).await
        };
        let response = match timeout_at(deadline, exchange).await {
            Err(_) => return Err(format!("HTTP: {addr} did not answer within {within}")),
            Ok(Err(err)) => {
                return Err(format!(
                    "HTTP: exchange with {addr} failed ({})",
                    err.kind()
                ));
            }
            Ok(Ok(response)) => response,
        };
        match response {
            Response::Malformed => Err(format!("HTTP: {addr} did not answer with valid HTTP")),
            Response::Status(status) => Err(format!("HTTP: {addr} answered {status}")),
            Response::TooLarge => Err(format!(
                "HTTP: {addr} answered 200 but the body is too large to be the token"
            )),
            Response::Ok(body) if body.trim_ascii() == token.as_bytes() => Ok(()),
            Response::Ok(_) => Err(format!(
                "HTTP: {addr} answered 200 but the body is not the token"
            )),
        }
    }

    /// The first address of `host` (A before AAAA) the HTTP proof may
    /// fetch from.
    async fn http_address(&self, host: &str, deadline: Instant) -> Result<IpAddr, String> {
        let config = &self.inner.config;
        let name = Name::from_ascii(format!("{host}."))
            .map_err(|_| format!("HTTP: {host} is not a valid name"))?;
        let lookup = match timeout_at(deadline, self.inner.resolver.lookup_ip(name)).await {
            Err(_) => {
                return Err(format!(
                    "HTTP: looking up {host} timed out after {}",
                    seconds(config.timeout)
                ));
            }
            Ok(Err(err)) => {
                return Err(format!(
                    "HTTP: {}",
                    lookup_failure(&err, host, "A or AAAA", config.timeout)
                ));
            }
            Ok(Ok(lookup)) => lookup,
        };
        let addresses: Vec<IpAddr> = lookup.iter().collect();
        if addresses.is_empty() {
            return Err(format!("HTTP: {host} has no A or AAAA record"));
        }
        if config.allow_private {
            return Ok(addresses[0]);
        }
        let mut refused = Vec::new();
        for ip in addresses {
            match non_public(ip) {
                None => return Ok(ip),
                Some(kind) => refused.push((ip, kind)),
            }
        }
        let (ip, kind) = refused[0];
        let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        Err(match refused.len() {
            1 => format!("HTTP: {host} resolves to {ip}, {article} {kind} address"),
            n => format!(
                "HTTP: {host} resolves only to non-public addresses ({ip}, {article} {kind} address, and {} more)",
                n - 1
            ),
        })
    }
}

/// Resolver options for a verifier: no cache, no hosts file, bounded
/// timeouts and attempts.
fn configure(opts: &mut ResolverOpts, timeout: Duration) {
    // Every check asks again: a record fixed a moment ago must be seen.
    opts.cache_size = 0;
    opts.positive_min_ttl = Some(Duration::ZERO);
    opts.positive_max_ttl = Some(Duration::ZERO);
    opts.negative_min_ttl = Some(Duration::ZERO);
    opts.negative_max_ttl = Some(Duration::ZERO);
    // The proof's deadline bounds every lookup; within it, UDP queries are
    // resent (hickory's retry interval) and a query that failed at once
    // (an I/O error) is tried once more.
    opts.attempts = 2;
    opts.timeout = timeout;
    // An answer truncated over UDP is asked again over TCP: hickory does
    // that by itself for a server configured with both.

    // What the world sees of the customer's name, not this machine's view.
    opts.use_hosts_file = ResolveHosts::Never;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
}

/// Whether a TXT value, its character-strings joined, is `token`
/// (surrounding whitespace ignored).
fn txt_matches(txt: &TXT, token: &str) -> bool {
    let value: Vec<u8> = txt.txt_data.iter().flatten().copied().collect();
    value.trim_ascii() == token.as_bytes()
}

/// Runs both proofs at once: the first to hold wins; when neither does,
/// both reasons, DNS first.
async fn first_ok(
    dns: impl Future<Output = Result<(), String>>,
    http: impl Future<Output = Result<(), String>>,
) -> Result<Proof, String> {
    tokio::pin!(dns, http);
    tokio::select! {
        dns_result = &mut dns => match dns_result {
            Ok(()) => Ok(Proof::Dns),
            Err(dns_reason) => match http.await {
                Ok(()) => Ok(Proof::Http),
                Err(http_reason) => Err(format!("{dns_reason}; {http_reason}")),
            },
        },
        http_result = &mut http => match http_result {
            Ok(()) => Ok(Proof::Http),
            Err(http_reason) => match dns.await {
                Ok(()) => Ok(Proof::Dns),
                Err(dns_reason) => Err(format!("{dns_reason}; {http_reason}")),
            },
        },
    }
}

/// Why a lookup of `record_type` at `name` failed, for the customer: the
/// answer's meaning, never the resolver's internals.
fn lookup_failure(err: &NetError, name: &str, record_type: &str, timeout: Duration) -> String {
    tracing::debug!(%name, error = %err, "verification lookup failed");
    match err {
        NetError::Dns(DnsError::NoRecordsFound(no))
            if no.response_code == ResponseCode::NXDomain =>
        {
            if record_type == "TXT" {
                format!("no TXT record at {name}")
            } else {
                format!("{name} does not exist in the DNS")
            }
        }
        NetError::Dns(DnsError::NoRecordsFound(_)) => {
            if record_type == "TXT" {
                format!("no TXT record at {name}")
            } else {
                format!("{name} has no {record_type} record")
            }
        }
        NetError::Dns(DnsError::ResponseCode(code)) => {
            format!(
                "looking up {name} failed: the DNS answered {}",
                code.to_str()
            )
        }
        NetError::Timeout => format!("looking up {name} timed out after {}", seconds(timeout)),
        NetError::Io(_) | NetError::NoConnections | NetError::Busy => {
            format!("looking up {name} failed: the DNS resolver could not be reached")
        }
        _ => format!("looking up {name} failed"),
    }
}

/// `hostname` lowercased, without a trailing dot, if it is a domain name
/// (ASCII letters, digits, hyphens; A-labels for international names) and
/// not an IP address.
fn normalize_hostname(hostname: &str) -> Result<String, String> {
    let host = hostname
        .strip_suffix('.')
        .unwrap_or(hostname)
        .to_ascii_lowercase();
    let invalid = || Err(format!("{hostname:?} is not a valid domain name"));
    if host.is_empty() || host.len() > 253 || host.parse::<IpAddr>().is_ok() {
        return invalid();
    }
    for label in host.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return invalid();
        }
    }
    Ok(host)
}

/// A token must be usable verbatim as a path segment and as a TXT value:
/// URL-unreserved characters only, not `.` or `..`.
fn validate_token(token: &str) -> Result<(), String> {
    let unreserved = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if token.is_empty()
        || token.len() > MAX_TOKEN
        || !token.bytes().all(unreserved)
        || token.bytes().all(|b| b == b'.')
    {
        return Err("the verification token is malformed".to_owned());
    }
    Ok(())
}

/// Why `ip` may not be fetched from in production, if it may not.
fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local")
    } else if a == 100 && (64..128).contains(&b) {
        // 100.64.0.0/10, carrier-grade NAT: private in all but name.
        Some("private")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if ip.is_broadcast() || a >= 240 {
        Some("reserved")
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    // 64:ff9b::/96, NAT64: where it is routed, it reaches the IPv4 address
    // in its last 32 bits.
    let segments = ip.segments();
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., a, b, c, d] = ip.octets();
        return non_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    if ip.is_unspecified() {
        Some("unspecified")
    } else if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unique_local() {
        Some("private")
    } else if ip.is_unicast_link_local() {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// A duration as the customer reads it: `5s`, `1.5s`, `250ms`.
fn seconds(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// What the HTTP proof's server answered.
enum Response {
    /// Not an HTTP/1 response, a head larger than [`MAX_RESPONSE`], or a
    /// body cut short.
    Malformed,
    /// A status other than 200.
    Status(u16),
    /// 200, and the whole body.
    Ok(Vec<u8>),
    /// 200, with a body that does not fit in [`MAX_RESPONSE`]: certainly
    /// not the token.
    TooLarge,
}

/// Reads one HTTP/1 response of at most [`MAX_RESPONSE`] bytes from
/// `stream`. A status other than 200 is returned as soon as it is read.
async fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // The head.
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        if buf.len() >= MAX_RESPONSE {
            return Ok(Response::Malformed);
        }
        let room = (MAX_RESPONSE - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            // Closed before the head ended: report a status line if there
            // is one, it says more than "malformed".
            return Ok(match parse_status(&buf) {
                Some(status) if status != 200 => Response::Status(status),
                _ => Response::Malformed,
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let Some(status) = parse_status(&buf[..head_end]) else {
        return Ok(Response::Malformed);
    };
    if status != 200 {
        return Ok(Response::Status(status));
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n.trim() == name).then(|| v.trim().to_owned())
        })
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let length = if chunked {
        None
    } else {
        match header("content-length").map(|v| v.parse::<usize>()) {
            Some(Ok(n)) => Some(n),
            Some(Err(_)) => return Ok(Response::Malformed),
            None => None,
        }
    };
    let body_start = head_end + 4;
    if length.is_some_and(|n| body_start + n > MAX_RESPONSE) {
        return Ok(Response::TooLarge);
    }
    // The body: up to its length, the last chunk, or the end of the
    // connection, whichever framing the server chose.
    loop {
        let body = &buf[body_start..];
        let complete = match length {
            Some(n) => (body.len() >= n).then(|| body[..n].to_vec()),
            None if chunked => match dechunk(body) {
                Chunked::Done(data) => Some(data),
                Chunked::Partial => None,
                Chunked::Invalid => return Ok(Response::Malformed),
            },
            None => None,
        };
        if let Some(data) = complete {
            return Ok(Response::Ok(data));
        }
        if buf.len() >= MAX_RESPONSE {
            return Ok(Response::TooLarge);
        }
        let room = (MAX_RESPONSE - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Ok(match length {
                // Delimited by the end of the connection: all there is.
                None if !chunked => Response::Ok(buf[body_start..].to_vec()),
                // Cut short.
                _ => Response::Malformed,
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The status code of an `HTTP/1.x NNN ...` status line at the start of `head`.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line_end = find(head, b"\r\n").unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..600).contains(c))
}

enum Chunked {
    Done(Vec<u8>),
    Partial,
    Invalid,
}

/// Decodes a chunked body read so far.
fn dechunk(mut body: &[u8]) -> Chunked {
    let mut data = Vec::new();
    loop {
        let Some(line_end) = find(body, b"\r\n") else {
            return Chunked::Partial;
        };
        let Ok(size_line) = std::str::from_utf8(&body[..line_end]) else {
            return Chunked::Invalid;
        };
        let size_text = size_line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Chunked::Invalid;
        };
        body = &body[line_end + 2..];
        if size == 0 {
            // Trailers, if any, are not waited for: the data is complete.
            return Chunked::Done(data);
        }
        if size > MAX_RESPONSE {
            return Chunked::Invalid;
        }
        if body.len() < size + 2 {
            return Chunked::Partial;
        }
        if &body[size..size + 2] != b"\r\n" {
            return Chunked::Invalid;
        }
        data.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_are_normalized_and_checked() {
        assert_eq!(
            normalize_hostname("ERP.Customer.com.").unwrap(),
            "erp.customer.com"
        );
        assert_eq!(
            normalize_hostname("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
        for bad in [
            "",
            ".",
            "a..b",
            "-a.com",
            "a-.com",
            "a b.com",
            "a/b.com",
            "10.0.0.5",
            "::1",
            "bücher.de",
        ] {
            assert!(normalize_hostname(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tokens_must_be_path_safe() {
        assert!(validate_token("Abc-123_x.y~z").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "a%2f", "a?b", "a#b", "a\r\nb"] {
            assert!(validate_token(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_token(&"a".repeat(MAX_TOKEN + 1)).is_err());
    }

    #[test]
    fn non_public_addresses_are_named() {
        let kind = |s: &str| non_public(s.parse().unwrap());
        assert_eq!(kind("127.0.0.1"), Some("loopback"));
        assert_eq!(kind("10.0.0.5"), Some("private"));
        assert_eq!(kind("172.16.3.4"), Some("private"));
        assert_eq!(kind("192.168.1.1"), Some("private"));
        assert_eq!(kind("100.64.0.1"), Some("private"));
        assert_eq!(kind("169.254.169.254"), Some("link-local"));
        assert_eq!(kind("0.0.0.0"), Some("unspecified"));
        assert_eq!(kind("224.0.0.1"), Some("multicast"));
        assert_eq!(kind("255.255.255.255"), Some("reserved"));
        assert_eq!(kind("::"), Some("unspecified"));
        assert_eq!(kind("::1"), Some("loopback"));
        assert_eq!(kind("fd00::1"), Some("private"));
        assert_eq!(kind("fe80::1"), Some("link-local"));
        assert_eq!(kind("ff02::1"), Some("multicast"));
        assert_eq!(kind("::ffff:10.1.2.3"), Some("private"));
        assert_eq!(kind("64:ff9b::127.0.0.1"), Some("loopback"));
        assert_eq!(kind("64:ff9b::203.0.113.7"), None);
        assert_eq!(kind("203.0.113.7"), None);
        assert_eq!(kind("8.8.8.8"), None);
        assert_eq!(kind("2001:4860:4860::8888"), None);
    }

    #[test]
    fn txt_strings_are_joined() {
        let split = TXT::new(vec!["abc".to_owned(), "def".to_owned()]);
        assert!(txt_matches(&split, "abcdef"));
        assert!(!txt_matches(&split, "abc"));
        assert!(txt_matches(
            &TXT::new(vec![" abcdef\n".to_owned()]),
            "abcdef"
        ));
        assert!(!txt_matches(&TXT::new(vec![]), "abcdef"));
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        match dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n") {
            Chunked::Done(data) => assert_eq!(data, b"abcde"),
            _ => panic!("not decoded"),
        }
        assert!(matches!(dechunk(b"3\r\nab"), Chunked::Partial));
        assert!(matches!(dechunk(b"zz\r\n"), Chunked::Invalid));
    }

    #[test]
    fn status_lines_are_parsed() {
        assert_eq!(parse_status(b"HTTP/1.1 404 Not Found\r\nx: y"), Some(404));
        assert_eq!(parse_status(b"HTTP/1.0 200\r\n"), Some(200));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status(b"HTTP/1.1 99999 x\r\n"), None);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(seconds(Duration::from_secs(5)), "5s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
        assert_eq!(seconds(Duration::from_millis(250)), "250ms");
    }
}
