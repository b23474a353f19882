//! A throwaway ACME certificate authority: Let's Encrypt's Pebble with its fake DNS server.
//!
//! [`Pebble::start`] runs two processes from Debian's `pebble` package, both on free ports of
//! 127.0.0.1:
//!
//! - `pebble-challtestsrv`, a DNS server (UDP and TCP) answering every A query with
//!   127.0.0.1 unless told otherwise, and TXT queries with what [`Pebble::set_txt`] stored.
//!   Its HTTP-01, HTTPS-01 and TLS-ALPN-01 responders are turned off: the code under test
//!   answers the challenges itself.
//! - `pebble`, the ACME server, resolving names through that DNS server and validating
//!   HTTP-01 challenges on [`PebbleOptions::http_port`] of whatever address the name
//!   resolves to. Its HTTPS listener uses a certificate from a CA made for this instance
//!   ([`Pebble::api_ca_pem_path`]); the certificates it issues chain to a root it generates
//!   at startup ([`Pebble::issuer_root_pem`]).
//!
//! Validation runs without Pebble's artificial sleeps (`PEBBLE_VA_NOSLEEP=1`), and by default
//! Pebble neither rejects valid nonces nor reuses authorizations, so tests are fast and
//! deterministic unless they ask for the chaos ([`PebbleOptions::nonce_reject_percent`],
//! [`PebbleOptions::authz_reuse_percent`]).
//!
//! Pebble is known to stall when it handles many orders at once; keep a test's concurrent
//! orders to a handful (≤ 8) and put a timeout on every ACME call.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use tempfile::TempDir;

use crate::error::{Result, TestkitError};
use crate::plain_http;
use crate::port;
use crate::process::ServerProcess;

/// The Debian package that ships both executables.
const PEBBLE_PACKAGE: &str = "pebble";

/// How long each process may take to become ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// How many sets of fresh ports a start tries before giving up.
const PORT_ATTEMPTS: u32 = 5;

/// How long connecting, writing and reading may each take in the testkit's own requests.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How Pebble is configured.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// The port Pebble's validation authority connects to for HTTP-01 challenges, on the
    /// address the name resolves to (127.0.0.1 by default). In tests, the port of the server
    /// that answers `/.well-known/acme-challenge/{token}`. Pebble's `Host` header includes it.
    pub http_port: u16,
    /// How long issued certificates are valid, in seconds; `None` keeps Pebble's default
    /// (five years).
    pub validity_secs: Option<u64>,
    /// The percentage (0–100) of valid nonces Pebble rejects with `badNonce`.
    pub nonce_reject_percent: u8,
    /// The percentage (0–100) of new orders for which Pebble reuses a valid authorization
    /// of the same account instead of creating a pending one.
    pub authz_reuse_percent: u8,
}

impl Default for PebbleOptions {
    /// HTTP-01 on port 5002 (Pebble's own default), default validity, no nonce rejection and
    /// no authorization reuse.
    fn default() -> Self {
        Self {
            http_port: 5002,
            validity_secs: None,
            nonce_reject_percent: 0,
            authz_reuse_percent: 0,
        }
    }
}

/// A running Pebble ACME server and its DNS server.
///
/// Dropping it kills both processes and deletes their directory (configuration, TLS
/// certificates, logs), also while a failing test unwinds.
///
/// ```no_run
/// use switchyard_testkit::{Pebble, PebbleOptions};
///
/// let pebble = Pebble::start(PebbleOptions { http_port: 8080, ..PebbleOptions::default() })?;
/// let directory = pebble.directory_url(); // https://127.0.0.1:PORT/dir
/// let trust = pebble.api_ca_pem_path();   // give it to the ACME client
/// pebble.set_txt("_acme-challenge.shop.example", "token")?;
/// let root = pebble.issuer_root_pem()?;   // verify issued chains against it
/// # Ok::<(), switchyard_testkit::TestkitError>(())
/// ```
pub struct Pebble {
    /// The ACME server; declared first so it stops before its DNS server.
    pebble: ServerProcess,
    /// The DNS server and its management API.
    challtestsrv: ServerProcess,
    /// Pebble's ACME port (HTTPS).
    acme_port: u16,
    /// Pebble's management port (HTTPS).
    management_port: u16,
    /// challtestsrv's DNS port (UDP and TCP).
    dns_port: u16,
    /// challtestsrv's management port (plain HTTP).
    challtestsrv_management_port: u16,
    /// The PEM of the CA that signed Pebble's HTTPS certificate.
    api_ca_pem: PathBuf,
    /// A client trusting that CA, for the management API.
    tls: Arc<ClientConfig>,
    /// Configuration, certificates and logs; deleted after both processes stopped.
    dir: TempDir,
}

impl std::fmt::Debug for Pebble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pebble")
            .field("pebble_pid", &self.pebble.pid())
            .field("challtestsrv_pid", &self.challtestsrv.pid())
            .field("acme_port", &self.acme_port)
            .field("management_port", &self.management_port)
            .field("dns_port", &self.dns_port)
            .field(
                "challtestsrv_management_port",
                &self.challtestsrv_management_port,
            )
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Pebble {
    /// Starts `pebble-challtestsrv`, then `pebble` pointed at it, and returns once the DNS
    /// server accepts connections and Pebble answers `GET /dir` over TLS.
    ///
    /// # Errors
    ///
    /// [`TestkitError::BinaryNotFound`] when the `pebble` package is not installed, and the
    /// startup errors of [`TestkitError`] (quoting the process's log) when either server
    /// does not come up.
    pub fn start(opts: PebbleOptions) -> Result<Self> {
        let challtestsrv_bin = find_binary("pebble-challtestsrv")?;
        let pebble_bin = find_binary("pebble")?;
        let dir = tempfile::Builder::new()
            .prefix("switchyard-pebble-")
            .tempdir()
            .map_err(|source| {
                TestkitError::io("creating the temporary directory for Pebble", source)
            })?;
        let tls_files = write_tls_files(dir.path())?;

        let ((dns_port, challtestsrv_management_port), challtestsrv) =
            on_free_ports("pebble-challtestsrv", || {
                let dns = free_udp_and_tcp_port()?;
                let management = port::free_port()?;
                let process = spawn_challtestsrv(&challtestsrv_bin, dir.path(), dns, management)?;
                Ok(((dns, management), process))
            })?;

        let ((acme_port, management_port), pebble) = on_free_ports("Pebble", || {
            let acme = port::free_port()?;
            let management = port::free_port()?;
            let process = spawn_pebble(
                &pebble_bin,
                dir.path(),
                &tls_files,
                &opts,
                PebblePorts {
                    acme,
                    management,
                    dns: dns_port,
                },
            )?;
            Ok(((acme, management), process))
        })?;

        Ok(Self {
            pebble,
            challtestsrv,
            acme_port,
            management_port,
            dns_port,
            challtestsrv_management_port,
            api_ca_pem: tls_files.ca,
            tls: tls_files.client,
            dir,
        })
    }

    /// The ACME directory: `https://127.0.0.1:PORT/dir`.
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// The PEM file of the CA that signed Pebble's HTTPS certificate (for `127.0.0.1` and
    /// `localhost`): the extra root an ACME client must trust to talk to this Pebble.
    pub fn api_ca_pem_path(&self) -> &Path {
        &self.api_ca_pem
    }

    /// The root that issued certificates chain to, from Pebble's management API
    /// (`/roots/0`). Pebble makes a new one at every start.
    ///
    /// # Errors
    ///
    /// [`TestkitError::Io`] when the management API cannot be reached or does not answer 200.
    pub fn issuer_root_pem(&self) -> Result<String> {
        let (status, body) = https_get(&self.tls, port::loopback(self.management_port), "/roots/0")
            .map_err(|source| TestkitError::io("fetching Pebble's /roots/0", source))?;
        if status != 200 {
            return Err(TestkitError::io(
                "fetching Pebble's /roots/0",
                io::Error::other(format!("status {status}: {body}")),
            ));
        }
        Ok(body)
    }

    /// challtestsrv's DNS server, answering over UDP and TCP.
    pub fn dns_addr(&self) -> SocketAddr {
        port::loopback(self.dns_port)
    }

    /// Pebble's ACME (HTTPS) address.
    pub fn acme_addr(&self) -> SocketAddr {
        port::loopback(self.acme_port)
    }

    /// Adds `value` to the TXT records of `host` (a name without the trailing dot, e.g.
    /// `_acme-challenge.shop.example`). Values accumulate until [`Pebble::clear_txt`].
    ///
    /// # Errors
    ///
    /// [`TestkitError::Io`] when challtestsrv's management API does not accept it.
    pub fn set_txt(&self, host: &str, value: &str) -> Result<()> {
        self.manage(
            "/set-txt",
            &serde_json::json!({ "host": fqdn(host), "value": value }),
        )
    }

    /// Removes every TXT record of `host` (without the trailing dot).
    ///
    /// # Errors
    ///
    /// [`TestkitError::Io`] when challtestsrv's management API does not accept it.
    pub fn clear_txt(&self, host: &str) -> Result<()> {
        self.manage("/clear-txt", &serde_json::json!({ "host": fqdn(host) }))
    }

    /// Makes `host` (without the trailing dot) resolve to `ip` instead of 127.0.0.1.
    ///
    /// # Errors
    ///
    /// [`TestkitError::Io`] when challtestsrv's management API does not accept it.
    pub fn add_a(&self, host: &str, ip: Ipv4Addr) -> Result<()> {
        self.manage(
            "/add-a",
            &serde_json::json!({ "host": fqdn(host), "addresses": [ip.to_string()] }),
        )
    }

    /// Removes the A records set for `host`, which then resolves to 127.0.0.1 again.
    ///
    /// # Errors
    ///
    /// [`TestkitError::Io`] when challtestsrv's management API does not accept it.
    pub fn clear_a(&self, host: &str) -> Result<()> {
        self.manage("/clear-a", &serde_json::json!({ "host": fqdn(host) }))
    }

    /// The directory holding the configuration, certificates and both logs
    /// (`pebble.log`, `challtestsrv.log`); deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// POSTs `body` to challtestsrv's management `path`.
    fn manage(&self, path: &str, body: &serde_json::Value) -> Result<()> {
        let addr = port::loopback(self.challtestsrv_management_port);
        let (status, answer) =
            plain_http::request(addr, "POST", path, &[], Some(&body.to_string()));
        if status == 200 {
            return Ok(());
        }
        Err(TestkitError::io(
            format!("POST {path} {body} to pebble-challtestsrv on {addr}"),
            io::Error::other(format!("status {status} (0: no answer): {answer}")),
        ))
    }
}

/// `host.`, as challtestsrv stores names.
fn fqdn(host: &str) -> String {
    format!("{}.", host.trim_end_matches('.'))
}

/// The executable `name` from `PATH` or `/usr/bin`.
fn find_binary(name: &'static str) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/bin"));
    dirs.iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| TestkitError::BinaryNotFound {
            binary: name,
            package: PEBBLE_PACKAGE,
            searched: dirs
                .iter()
                .map(|dir| dir.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Runs `spawn` (which picks its own ports) until it does not lose a port race.
fn on_free_ports<T>(server: &'static str, mut spawn: impl FnMut() -> Result<T>) -> Result<T> {
    let mut last_tail = String::new();
    for _ in 0..PORT_ATTEMPTS {
        match spawn() {
            Err(TestkitError::ExitedDuringStartup { log_tail, .. })
                if log_tail
                    .to_ascii_lowercase()
                    .contains("address already in use") =>
            {
                last_tail = log_tail;
            }
            started => return started,
        }
    }
    Err(TestkitError::PortsExhausted {
        server,
        attempts: PORT_ATTEMPTS,
        log_tail: last_tail,
    })
}

/// A port free for both TCP and UDP on 127.0.0.1 a moment ago.
fn free_udp_and_tcp_port() -> Result<u16> {
    for _ in 0..20 {
        let port = port::free_port()?;
        if UdpSocket::bind(port::loopback(port)).is_ok() {
            return Ok(port);
        }
    }
    Err(TestkitError::io(
        "picking a port free for both TCP and UDP on 127.0.0.1",
        io::Error::other("20 TCP ports in a row were taken for UDP"),
    ))
}

/// Spawns challtestsrv with only its DNS server and management API, both on 127.0.0.1, and
/// waits until both accept connections.
fn spawn_challtestsrv(
    binary: &Path,
    dir: &Path,
    dns_port: u16,
    management_port: u16,
) -> Result<ServerProcess> {
    let mut command = Command::new(binary);
    command
        .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
        .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
        .args(["-management", &format!("127.0.0.1:{management_port}")])
        .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
        .current_dir(dir);
    let mut process = ServerProcess::spawn(
        &mut command,
        &dir.join("challtestsrv.log"),
        format!("pebble-challtestsrv with DNS on 127.0.0.1:{dns_port}"),
    )?;
    process.wait_ready(STARTUP_TIMEOUT, || {
        port::accepts_connections(management_port) && port::accepts_connections(dns_port)
    })?;
    Ok(process)
}

/// Pebble's listening ports and its DNS server's.
#[derive(Debug, Clone, Copy)]
struct PebblePorts {
    /// The ACME API.
    acme: u16,
    /// The management API.
    management: u16,
    /// challtestsrv's DNS.
    dns: u16,
}

/// Writes Pebble's configuration for `ports`, spawns it and waits until `/dir` answers.
fn spawn_pebble(
    binary: &Path,
    dir: &Path,
    tls: &TlsFiles,
    opts: &PebbleOptions,
    ports: PebblePorts,
) -> Result<ServerProcess> {
    let mut pebble = serde_json::json!({
        "listenAddress": format!("127.0.0.1:{}", ports.acme),
        "managementListenAddress": format!("127.0.0.1:{}", ports.management),
        "certificate": tls.cert,
        "privateKey": tls.key,
        "httpPort": opts.http_port,
        // TLS-ALPN-01 is not used; any port will do.
        "tlsPort": 5001,
        "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    });
    if let Some(validity) = opts.validity_secs {
        pebble["certificateValidityPeriod"] = validity.into();
    }
    let config = dir.join("pebble-config.json");
    std::fs::write(&config, serde_json::json!({ "pebble": pebble }).to_string())
        .map_err(|source| TestkitError::io(format!("writing {}", config.display()), source))?;

    let mut command = Command::new(binary);
    command
        .arg("-config")
        .arg(&config)
        .args(["-dnsserver", &format!("127.0.0.1:{}", ports.dns)])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .env(
            "PEBBLE_WFE_NONCEREJECT",
            opts.nonce_reject_percent.min(100).to_string(),
        )
        .env(
            "PEBBLE_AUTHZREUSE",
            opts.authz_reuse_percent.min(100).to_string(),
        )
        .current_dir(dir);
    let mut process = ServerProcess::spawn(
        &mut command,
        &dir.join("pebble.log"),
        format!("Pebble on 127.0.0.1:{}", ports.acme),
    )?;
    let addr = port::loopback(ports.acme);
    process.wait_ready(STARTUP_TIMEOUT, || {
        matches!(https_get(&tls.client, addr, "/dir"), Ok((200, _)))
    })?;
    Ok(process)
}

/// The TLS material of one Pebble instance.
struct TlsFiles {
    /// The CA's certificate, PEM.
    ca: PathBuf,
    /// Pebble's certificate for 127.0.0.1 and localhost, PEM.
    cert: PathBuf,
    /// Its PKCS#8 key, PEM.
    key: PathBuf,
    /// A client trusting only the CA.
    client: Arc<ClientConfig>,
}

/// Makes a CA and a certificate for `127.0.0.1` and `localhost` signed by it, writes them
/// into `dir` and returns their paths and a client trusting the CA.
fn write_tls_files(dir: &Path) -> Result<TlsFiles> {
    let rcgen_failed = |err: rcgen::Error| {
        TestkitError::io("making Pebble's TLS certificates", io::Error::other(err))
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_failed)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "switchyard testkit Pebble API CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().map_err(rcgen_failed)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(rcgen_failed)?;
    let ca_der: CertificateDer<'static> = ca_cert.der().clone();
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .map_err(rcgen_failed)?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let leaf_key = KeyPair::generate().map_err(rcgen_failed)?;
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(rcgen_failed)?;

    let files = [
        ("api-ca.pem", ca_pem),
        ("api-cert.pem", leaf.pem()),
        ("api-key.pem", leaf_key.serialize_pem()),
    ];
    for (name, contents) in &files {
        let path = dir.join(name);
        std::fs::write(&path, contents)
            .map_err(|source| TestkitError::io(format!("writing {}", path.display()), source))?;
    }

    let mut roots = RootCertStore::empty();
    roots
        .add(ca_der)
        .map_err(|err| TestkitError::io("trusting Pebble's API CA", io::Error::other(err)))?;
    let client =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|err| TestkitError::io("configuring TLS", io::Error::other(err)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(TlsFiles {
        ca: dir.join("api-ca.pem"),
        cert: dir.join("api-cert.pem"),
        key: dir.join("api-key.pem"),
        client: Arc::new(client),
    })
}

/// One `GET path` over TLS to `addr` (certificate checked for 127.0.0.1), as HTTP/1.0 so the
/// answer is never chunked and ends with the connection. Returns the status and body.
fn https_get(tls: &Arc<ClientConfig>, addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    tcp.set_read_timeout(Some(IO_TIMEOUT))?;
    tcp.set_write_timeout(Some(IO_TIMEOUT))?;
    let name = ServerName::IpAddress(addr.ip().into());
    let connection = ClientConnection::new(Arc::clone(tls), name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(connection, tcp);
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    stream.flush()?;
    let mut bytes = Vec::new();
    match stream.read_to_end(&mut bytes) {
        Ok(_) => {}
        // Go's server may close without close_notify; the answer is complete anyway.
        Err(err) if err.kind() == io::ErrorKind::UnexpectedEof && !bytes.is_empty() => {}
        Err(err) => return Err(err),
    }
    let text = String::from_utf8_lossy(&bytes);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("no HTTP head in {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, body.to_owned()))
}
