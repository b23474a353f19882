//! Running a scenario against a target: the open-loop engine.
//!
//! One task follows the schedule ([`plan`]) and, at each request's due time, hands
//! it to a task of its own, whatever happened to the ones before: a stalled target
//! cannot hold the schedule back (open loop). Each request's latency runs from its
//! due time to the end of its response, so time spent waiting for a connection or
//! behind a stall is in it (no coordinated omission). Requests that have no answer
//! `timeout_ms` after their due time count as `timeout` errors, so every run ends.
//! Samples go to one collector ([`recorder`]), which builds the report.

mod client;
mod plan;
mod recorder;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::report::{Report, TargetInfo};
use crate::scenario::{BodySize, Scenario};
use client::Client;
use plan::Plan;
use recorder::{ErrorKind, Outcome, Recorder, Sample};

/// Where load goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its name in reports (`NAME` of `--target NAME=URL`).
    pub name: String,
    /// The URL as given.
    pub url: String,
    /// Whether requests go over TLS.
    pub tls: bool,
    /// The address connected to (unless the scenario's `resolve` says otherwise).
    pub addr: SocketAddr,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The target is not usable.
    #[error("target {target}: {reason}")]
    Target {
        /// The URL.
        target: String,
        /// Why.
        reason: String,
    },
    /// The TLS settings are not usable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(std::io::Error),
}

impl Target {
    /// Parses `url` (`http://HOST:PORT` or `https://HOST:PORT`, no path) and
    /// resolves its host.
    ///
    /// # Errors
    ///
    /// [`RunError::Target`] naming what is wrong.
    pub fn parse(name: &str, url: &str) -> Result<Self, RunError> {
        let refuse = |reason: String| RunError::Target {
            target: url.to_owned(),
            reason,
        };
        let parsed = url::Url::parse(url).map_err(|err| refuse(format!("not a URL: {err}")))?;
        let tls = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(refuse(format!("scheme {other}: use http or https"))),
        };
        if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
            return Err(refuse(
                "give no path or query: they come from the scenario's requests".to_owned(),
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refuse(
                "credentials in the URL are not supported".to_owned(),
            ));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| refuse("no host".to_owned()))?
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = parsed
            .port_or_known_default()
            .ok_or_else(|| refuse("no port".to_owned()))?;
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|err| refuse(format!("cannot resolve {host}: {err}")))?
            .next()
            .ok_or_else(|| refuse(format!("{host} has no address")))?;
        Ok(Self {
            name: name.to_owned(),
            url: url.to_owned(),
            tls,
            addr,
        })
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads of the load generator.
    pub threads: usize,
    /// CA certificates (PEM) to trust on an https target, instead of the scenario's
    /// `tls.ca` and the system's roots.
    pub ca: Option<PathBuf>,
    /// Allow addresses that are not loopback.
    pub allow_remote: bool,
    /// Draw a progress bar on stderr (only drawn when it is a terminal).
    pub progress: bool,
}

/// Runs `scenario` against `target` and reports it.
///
/// # Errors
///
/// [`RunError`] when the run cannot start; failures of the target are results, in
/// the report.
pub fn run(scenario: &Scenario, target: &Target, options: &RunOptions) -> Result<Report, RunError> {
    let tls = check(scenario, target, options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads.max(1))
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let scenario = Arc::new(scenario.clone());
    Ok(runtime.block_on(drive(scenario, target.clone(), tls, options.progress)))
}

/// Checks that a run of `scenario` against `target` can start (its addresses are
/// allowed, its TLS settings usable) without sending anything; returns the TLS
/// client for an https target.
///
/// # Errors
///
/// [`RunError`] as [`run`] would return it.
pub fn check(
    scenario: &Scenario,
    target: &Target,
    options: &RunOptions,
) -> Result<Option<Arc<ClientConfig>>, RunError> {
    check_addresses(scenario, target, options.allow_remote)?;
    if target.tls {
        let ca = options.ca.as_deref().or(scenario.tls.ca.as_deref());
        Ok(Some(tls_config(ca)?))
    } else {
        Ok(None)
    }
}

/// Refuses addresses off loopback unless allowed: a load test aimed at the wrong
/// place is an outage.
fn check_addresses(
    scenario: &Scenario,
    target: &Target,
    allow_remote: bool,
) -> Result<(), RunError> {
    if allow_remote {
        return Ok(());
    }
    let remote = std::iter::once(target.addr)
        .chain(scenario.resolve.iter().map(|(_, addr)| *addr))
        .find(|addr| !addr.ip().is_loopback());
    match remote {
        Some(addr) => Err(RunError::Target {
            target: target.url.clone(),
            reason: format!(
                "{addr} is not a loopback address; pass --allow-remote to load a remote target"
            ),
        }),
        None => Ok(()),
    }
}

/// The TLS client: the CA file's roots if given, else the system's; HTTP/1.1 over
/// ALPN; no session resumption, so every new connection is a full handshake.
fn tls_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, RunError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| RunError::Tls(err.to_string()))?;
    let mut config = match ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path).map_err(|err| {
                RunError::Tls(format!("reading CA file {}: {err}", path.display()))
            })?;
            for cert in certs {
                let cert = cert
                    .map_err(|err| RunError::Tls(format!("CA file {}: {err}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|err| RunError::Tls(format!("CA file {}: {err}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(RunError::Tls(format!(
                    "CA file {} holds no certificate",
                    path.display()
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|err| RunError::Tls(format!("the system's roots: {err}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The run itself.
async fn drive(
    scenario: Arc<Scenario>,
    target: Target,
    tls: Option<Arc<ClientConfig>>,
    progress: bool,
) -> Report {
    let max_body = scenario
        .requests
        .iter()
        .map(|kind| match kind.body {
            BodySize::Fixed(bytes) | BodySize::Between(_, bytes) => bytes,
        })
        .max()
        .unwrap_or(0);
    let client = Arc::new(Client::new(
        tls,
        scenario.connections.max,
        usize::try_from(max_body).unwrap_or(usize::MAX),
    ));
    let expected = scenario.rate.work(scenario.total_secs()).ceil() as u64;
    let bar = progress_bar(expected, progress);
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });

    let (samples, mut received) = mpsc::unbounded_channel::<Sample>();
    let collector = {
        let scenario = scenario.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut recorder = Recorder::new(&scenario);
            while let Some(sample) = received.recv().await {
                recorder.record(&sample);
                bar.inc(1);
            }
            recorder
        })
    };

    // The schedule is followed by a thread of its own: its sleeps are precise to
    // tens of microseconds where the runtime's timer rounds up to a millisecond,
    // and no request task can delay it. A short lead lets the first requests leave
    // on time.
    let start = Instant::now() + Duration::from_millis(20);
    let runtime = tokio::runtime::Handle::current();
    let dispatcher = {
        let scenario = scenario.clone();
        let client = client.clone();
        let target = target.clone();
        tokio::task::spawn_blocking(move || {
            let start_std = start.into_std();
            for planned in Plan::new(&scenario, target.addr) {
                let due_std = start_std + planned.due;
                let now = std::time::Instant::now();
                if due_std > now {
                    std::thread::sleep(due_std - now);
                }
                runtime.spawn(request(
                    client.clone(),
                    scenario.clone(),
                    planned,
                    start,
                    samples.clone(),
                ));
            }
        })
    };
    dispatcher.await.expect("the dispatcher does not panic");
    let recorder = collector.await.expect("the collector does not panic");
    bar.finish_and_clear();
    recorder.finish(
        &scenario,
        TargetInfo {
            name: target.name,
            url: target.url,
        },
        started_unix_ms,
        client.opened(),
    )
}

/// One request: sent when due, its outcome and latency to the collector.
async fn request(
    client: Arc<Client>,
    scenario: Arc<Scenario>,
    planned: plan::Planned,
    start: Instant,
    samples: mpsc::UnboundedSender<Sample>,
) {
    let due = start + planned.due;
    // How late the harness itself is: the dispatcher's sleep and the runtime's
    // scheduling, before anything is sent. It is part of the latency (measured from
    // the due time) and reported on its own so a busy generator shows.
    let lag = Instant::now().saturating_duration_since(due);
    let timeout = Duration::from_millis(scenario.timeout_ms);
    let kind = &scenario.requests[planned.kind];
    let result = tokio::time::timeout_at(due + timeout, client.exchange(&planned, kind)).await;
    let (outcome, bytes_in) = match result {
        Ok(Ok(answer)) => (answer.outcome, answer.bytes_in),
        Ok(Err((kind, message))) => (Outcome::Failed { kind, message }, 0),
        Err(_) => (
            Outcome::Failed {
                kind: ErrorKind::Timeout,
                message: format!(
                    "no response within {} ms of the intended send time",
                    timeout.as_millis()
                ),
            },
            0,
        ),
    };
    // The collector outlives every request task.
    let _ = samples.send(Sample {
        due: planned.due,
        done: start.elapsed(),
        lag,
        class: planned.class,
        outcome,
        bytes_out: planned.body_len as u64,
        bytes_in,
    });
}

/// The progress bar: requests done of the schedule, rate, elapsed and left.
fn progress_bar(total: u64, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} requests, {per_sec} (eta {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar
}
