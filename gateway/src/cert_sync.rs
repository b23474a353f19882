//! Serving the certificates tenant-admin's snapshots refer to
//! (`[source] kind = "admin"` with an HTTPS listener).
//!
//! Each snapshot lists a certificate reference (hostname, id, expiry) per
//! custom domain that has one. [`CertSync`] is woken by every swap of the
//! routing table (no timer) and, in this order:
//!
//! 1. drops the certificates the table no longer refers to (a removed
//!    domain, a suspended or deleted tenant): from that swap on they are
//!    not served. A host whose reference moved to a new issuance keeps its
//!    previous certificate, while it has not expired, until the new one
//!    is loaded;
//! 2. loads the missing ones kept on disk ([`crate::cert_cache`]), then
//!    fetches the rest from tenant-admin ([`crate::cert_fetch`]), 100 ids
//!    per request and 4 requests at a time, checks each (its id and
//!    hostname those of the reference, a key that belongs to a
//!    certificate naming the host), swaps them in, and then keeps them on
//!    disk;
//! 3. retries what could not be fetched with capped, jittered backoff
//!    while the reference stands (every 10 s while the token is refused).
//!    An entry refused by the checks is logged once, by hostname and id,
//!    and not fetched again unless a snapshot refers to another issuance;
//!    an id tenant-admin no longer has is retried until a newer snapshot
//!    drops it.
//!
//! A host whose domain moved to another tenant loses its previous
//! certificate at once, in step 1: only a renewal for the same tenant
//! keeps it meanwhile.
//!
//! Certificates carry private keys: they are never fetched over plain
//! `http://` from a host other than `localhost` or a loopback address.
//! With such a `source.url`, only the kept ones are served; this is
//! logged once and counted as `reason="plain_http"`.
//!
//! A fetch in flight never holds back step 1 for a newer table. Log lines
//! name hostnames and ids, never PEM. Operators and tests can wait for
//! `gateway: certificates from the feed:`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::StreamExt;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::tls::sign::CertifiedKey;
use router::{CertRef, RoutingTable};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cert_cache;
use crate::cert_fetch::{CertFetchError, FetchedCertificate, MAX_IDS_PER_REQUEST};
use crate::cert_store::{self, CertStore, FeedCert, FeedCerts};
use crate::config::{Config, Source};
use crate::feed_client::FeedClient;
use crate::metrics::Metrics;
use crate::snapshot_feed::{AUTH_RETRY, Backoff, read_token};
use crate::state::RoutingState;
use crate::tls::hosts;

/// Requests to tenant-admin in flight at once while catching up.
const CONCURRENT_REQUESTS: usize = 4;

/// Metric reason of a round refused because the feed URL is plain
/// `http://` to a host other than loopback.
const PLAIN_HTTP: &str = "plain_http";

/// Seconds since the Unix epoch.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Records the feed's certificates in force in `metrics`.
fn record(metrics: &Metrics, certs: &FeedCerts) {
    let nearest = certs.values().map(|c| c.not_after).min();
    metrics.feed_certificates(certs.len(), nearest);
}

/// At start-up, with the last-known-good `table` in force: loads the
/// certificates it refers to that are kept in `source.cert_cache_dir`, so
/// custom domains are served before tenant-admin answers. Does nothing
/// unless the feed's certificates are served (see [`CertSync::new`]).
pub fn load_kept(config: &Config, table: &RoutingTable, store: &CertStore, metrics: &Metrics) {
    let Some(dir) = cache_dir(config) else {
        return;
    };
    let references = table.certificates();
    if references.is_empty() {
        return;
    }
    let mut certs = FeedCerts::with_capacity(references.len());
    for reference in references {
        match cert_cache::load(dir, reference) {
            Ok(Some(key)) => {
                certs.insert(
                    reference.hostname.as_str().to_owned(),
                    feed_cert(table, reference, key),
                );
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("gateway: deleting a kept certificate: {e}");
                cert_cache::discard(dir, reference.id);
            }
        }
    }
    eprintln!(
        "gateway: {} of {} certificate(s) of snapshot version {} loaded from source.cert_cache_dir {}",
        certs.len(),
        references.len(),
        table.version(),
        dir.display()
    );
    record(metrics, &certs);
    store.set_feed(certs);
}

/// Where the feed's certificates are kept, when they are served.
fn cache_dir(config: &Config) -> Option<&std::path::Path> {
    match &config.source {
        Source::Admin { cert_cache_dir, .. } if config.https_listen.is_some() => {
            Some(cert_cache_dir)
        }
        _ => None,
    }
}

/// The certificate loaded for `reference`, with the tenant `table` gives
/// its hostname.
fn feed_cert(table: &RoutingTable, reference: &CertRef, key: Arc<CertifiedKey>) -> FeedCert {
    FeedCert {
        id: reference.id,
        not_after: reference.not_after,
        tenant: table
            .tenant_by_domain(reference.hostname.as_str())
            .map(|t| t.id().to_owned()),
        key,
    }
}

/// The background service that keeps the feed's certificates in line
/// with the routing table in force.
#[derive(Debug)]
pub struct CertSync {
    /// Shared with the routing feed's follower.
    client: Arc<FeedClient>,
    /// Re-read before every fetch, so a rotated token applies at once.
    token_file: PathBuf,
    /// Where fetched certificates are kept for the next start.
    cache_dir: PathBuf,
    /// The feed's host when `source.url` is plain `http://` to a host
    /// other than loopback: nothing is fetched from it.
    cleartext_host: Option<String>,
    /// Its swaps wake the service; its table says what to serve.
    state: Arc<RoutingState>,
    store: Arc<CertStore>,
    metrics: Metrics,
}

impl CertSync {
    /// A follower of the certificates `state`'s tables refer to, fetched
    /// with `client`; `None` unless the source is tenant-admin's feed and
    /// an HTTPS listener serves them.
    pub fn new(
        config: &Config,
        client: Arc<FeedClient>,
        state: Arc<RoutingState>,
        store: Arc<CertStore>,
        metrics: Metrics,
    ) -> Option<Self> {
        let cache_dir = cache_dir(config)?.to_owned();
        let Source::Admin { token_file, .. } = &config.source else {
            return None;
        };
        let cleartext_host = client.url().cleartext_remote_host().map(str::to_owned);
        Some(Self {
            client,
            token_file: token_file.clone(),
            cache_dir,
            cleartext_host,
            state,
            store,
            metrics,
        })
    }

    /// Drops what `table` no longer refers to; returns the references
    /// still to load.
    fn follow(&self, table: Option<&RoutingTable>, sync: &mut Progress) -> Vec<CertRef> {
        let wanted = table.map_or(&[][..], RoutingTable::certificates);
        let owner = |host: &str| table.and_then(|t| t.tenant_by_domain(host)).map(|t| t.id());
        let plan = cert_store::plan_feed(&self.store.feed(), wanted, owner, unix_now());
        if !plan.dropped.is_empty() {
            eprintln!(
                "gateway: certificates from the feed: dropped {}; {} in force",
                hosts(&plan.dropped),
                plan.serve.len()
            );
            record(&self.metrics, &plan.serve);
            self.store.set_feed(plan.serve);
        }
        let referenced: HashSet<(&str, u64)> =
            wanted.iter().map(|r| (r.hostname.as_str(), r.id)).collect();
        let still = |(host, id): &(String, u64)| referenced.contains(&(host.as_str(), *id));
        sync.refused.retain(still);
        sync.absent.retain(still);
        if let Some(table) = table {
            self.prune(table, sync);
        }
        plan.missing
            .into_iter()
            .filter(|r| {
                let key = (r.hostname.as_str().to_owned(), r.id);
                !sync.refused.contains(&key) && !sync.in_flight.contains(&r.id)
            })
            .collect()
    }

    /// Deletes the kept files that neither `table` nor the table before
    /// it refer to, once per version, off the runtime.
    fn prune(&self, table: &RoutingTable, sync: &mut Progress) {
        if sync.pruned_for == Some(table.version()) {
            return;
        }
        sync.pruned_for = Some(table.version());
        let ids: HashSet<u64> = table.certificates().iter().map(|r| r.id).collect();
        // The first table seen: the copy on disk may be older; wait for
        // the next one.
        let Some(previous) = sync.previous_ids.replace(ids.clone()) else {
            return;
        };
        let keep: HashSet<u64> = ids.union(&previous).copied().collect();
        let dir = self.cache_dir.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = cert_cache::prune(&dir, &keep) {
                eprintln!(
                    "gateway: cannot prune source.cert_cache_dir {}: {e}",
                    dir.display()
                );
            }
        });
    }

    /// Starts a round loading `missing`.
    fn start_round(&self, missing: Vec<CertRef>, sync: &mut Progress) -> InFlight {
        sync.in_flight = missing.iter().map(|r| r.id).collect();
        let round = Round::run(
            self.client.clone(),
            self.token_file.clone(),
            self.cache_dir.clone(),
            self.cleartext_host.clone(),
            missing,
        );
        InFlight(tokio::spawn(round))
    }

    /// Swaps in what a round loaded (if the table in force still refers to
    /// it), logs what failed, and decides when to retry.
    fn finish(&self, round: RoundResult, sync: &mut Progress) {
        sync.in_flight.clear();
        sync.failed = round.retry.iter().copied().collect();
        let current = self.state.current();
        let table = current.as_ref().map(|t| &t.table);
        let wanted: HashMap<&str, u64> = table
            .map(|t| t.certificates())
            .unwrap_or_default()
            .iter()
            .map(|r| (r.hostname.as_str(), r.id))
            .collect();
        let mut next = (*self.store.feed()).clone();
        let mut loaded = Vec::new();
        for (reference, key) in round.loaded {
            let host = reference.hostname.as_str();
            if let Some(table) = table
                && wanted.get(host) == Some(&reference.id)
            {
                next.insert(host.to_owned(), feed_cert(table, &reference, key));
                loaded.push(host.to_owned());
            }
        }
        if !loaded.is_empty() {
            loaded.sort();
            eprintln!(
                "gateway: certificates from the feed: loaded {}; {} in force",
                hosts(&loaded),
                next.len()
            );
            record(&self.metrics, &next);
            self.store.set_feed(next);
        }
        for (reference, reason) in round.refused {
            self.metrics.certificate_fetch_failure("rejected");
            eprintln!(
                "gateway: certificate id {} for {} refused: {reason}; not fetched again unless a snapshot refers to another certificate for it",
                reference.id, reference.hostname
            );
            sync.refused
                .insert((reference.hostname.as_str().to_owned(), reference.id));
        }
        let retry_absent = !round.absent.is_empty();
        for reference in round.absent {
            self.metrics.certificate_fetch_failure("absent");
            if sync
                .absent
                .insert((reference.hostname.as_str().to_owned(), reference.id))
            {
                eprintln!(
                    "gateway: tenant-admin has no certificate id {} for {}; retrying until a newer snapshot refers to another",
                    reference.id, reference.hostname
                );
            }
        }
        match round.failure {
            Some(failure) => {
                for _ in 0..failure.requests {
                    self.metrics.certificate_fetch_failure(failure.kind);
                }
                let pause = if failure.auth {
                    AUTH_RETRY
                } else {
                    sync.backoff.next()
                };
                sync.retry_at = Some(Instant::now() + pause);
                if sync.trouble != Some(failure.kind) {
                    sync.trouble = Some(failure.kind);
                    if failure.kind == PLAIN_HTTP {
                        eprintln!(
                            "gateway: {}; serving only the certificates kept in source.cert_cache_dir",
                            failure.message
                        );
                    } else {
                        eprintln!(
                            "gateway: cannot fetch certificates from {}: {}; serving the ones loaded meanwhile, retrying with backoff",
                            self.client.url(),
                            failure.message
                        );
                    }
                }
            }
            None => {
                // A plain http:// feed URL stands until a restart: a round
                // that had nothing to fetch does not end it.
                if sync.trouble.take_if(|kind| *kind != PLAIN_HTTP).is_some() {
                    eprintln!(
                        "gateway: certificates can be fetched from {} again",
                        self.client.url()
                    );
                }
                if retry_absent {
                    sync.retry_at = Some(Instant::now() + sync.backoff.next());
                } else {
                    sync.backoff.reset();
                    sync.retry_at = None;
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for CertSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Subscribed before the first read of the table: no swap is missed.
        let mut swaps = self.state.swaps();
        let mut sync = Progress::default();
        let mut in_flight: Option<InFlight> = None;
        loop {
            let table = self.state.current();
            let missing = self.follow(table.as_deref().map(|t| &t.table), &mut sync);
            drop(table);
            if sync.retry_at.is_some_and(|at| at <= Instant::now()) {
                sync.retry_at = None;
            }
            // A reference that did not fail is fetched at once, whatever
            // the backoff of those that did.
            let fresh = missing.iter().any(|r| !sync.failed.contains(&r.id));
            if in_flight.is_none() && !missing.is_empty() && (fresh || sync.retry_at.is_none()) {
                in_flight = Some(self.start_round(missing, &mut sync));
            }
            let retry_at = sync.retry_at;
            tokio::select! {
                changed = swaps.changed() => {
                    if changed.is_err() {
                        // The state is gone: the process is stopping.
                        return;
                    }
                }
                done = async {
                    match in_flight.as_mut() {
                        Some(round) => (&mut round.0).await,
                        None => std::future::pending().await,
                    }
                } => {
                    in_flight = None;
                    match done {
                        Ok(round) => self.finish(round, &mut sync),
                        Err(e) => {
                            sync.failed = std::mem::take(&mut sync.in_flight);
                            sync.retry_at = Some(Instant::now() + sync.backoff.next());
                            eprintln!("gateway: the certificate fetch task failed: {e}");
                        }
                    }
                }
                _ = async {
                    match retry_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// What the service remembers between rounds.
#[derive(Debug, Default)]
struct Progress {
    backoff: Backoff,
    /// When to retry what failed; `None`: at once.
    retry_at: Option<Instant>,
    /// The kind of the failure in progress, logged when it started.
    trouble: Option<&'static str>,
    /// References whose entry was refused: not fetched again.
    refused: HashSet<(String, u64)>,
    /// References tenant-admin did not have, logged once.
    absent: HashSet<(String, u64)>,
    /// Ids of the round in flight.
    in_flight: HashSet<u64>,
    /// Ids the last round could not load: retried at `retry_at`, while
    /// any other missing one is fetched at once.
    failed: HashSet<u64>,
    /// The version whose unreferenced files were pruned.
    pruned_for: Option<u64>,
    /// The ids the previous table referred to, kept on disk too.
    previous_ids: Option<HashSet<u64>>,
}

/// A round in flight, stopped with the service.
struct InFlight(JoinHandle<RoundResult>);

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InFlight").finish_non_exhaustive()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What one round brought back.
#[derive(Default)]
struct RoundResult {
    /// Checked certificates, with the reference each was loaded for.
    loaded: Vec<(CertRef, Arc<CertifiedKey>)>,
    /// Entries refused by the checks, and why.
    refused: Vec<(CertRef, String)>,
    /// References tenant-admin answered without.
    absent: Vec<CertRef>,
    /// The first request that failed.
    failure: Option<Failure>,
    /// Ids of failed requests and absent ones: retried with backoff.
    retry: Vec<u64>,
}

/// Requests of a round that got no usable answer.
struct Failure {
    /// Metric label.
    kind: &'static str,
    /// The token is missing or refused.
    auth: bool,
    /// The first error, for the log.
    message: String,
    /// How many requests failed.
    requests: usize,
}

/// One round: kept files first, then tenant-admin.
struct Round;

impl Round {
    async fn run(
        client: Arc<FeedClient>,
        token_file: PathBuf,
        dir: PathBuf,
        cleartext_host: Option<String>,
        missing: Vec<CertRef>,
    ) -> RoundResult {
        let mut result = RoundResult::default();
        let ids: Vec<u64> = missing.iter().map(|r| r.id).collect();
        let kept_dir = dir.clone();
        let kept = tokio::task::spawn_blocking(move || {
            let mut loaded = Vec::new();
            let mut rest = Vec::new();
            for reference in missing {
                match cert_cache::load(&kept_dir, &reference) {
                    Ok(Some(key)) => loaded.push((reference, key)),
                    Ok(None) => rest.push(reference),
                    Err(e) => {
                        eprintln!("gateway: deleting a kept certificate: {e}; fetching it again");
                        cert_cache::discard(&kept_dir, reference.id);
                        rest.push(reference);
                    }
                }
            }
            (loaded, rest)
        })
        .await;
        let rest = match kept {
            Ok((loaded, rest)) => {
                result.loaded = loaded;
                rest
            }
            Err(e) => {
                result.failure = Some(Failure {
                    kind: "internal",
                    auth: false,
                    message: format!("reading source.cert_cache_dir failed: {e}"),
                    requests: 0,
                });
                result.retry = ids;
                return result;
            }
        };
        if rest.is_empty() {
            return result;
        }
        if let Some(host) = cleartext_host {
            result.fail(plain_http(&host), rest.iter().map(|r| r.id).collect());
            return result;
        }
        let token = match read_token(&token_file) {
            Ok(token) => token,
            Err(message) => {
                result.failure = Some(Failure {
                    kind: "auth",
                    auth: true,
                    message,
                    requests: 1,
                });
                result.retry = rest.iter().map(|r| r.id).collect();
                return result;
            }
        };
        let batches: Vec<Vec<CertRef>> = rest
            .chunks(MAX_IDS_PER_REQUEST)
            .map(<[CertRef]>::to_vec)
            .collect();
        let mut answers = futures::stream::iter(batches)
            .map(|batch| {
                let (client, token) = (&client, &token);
                async move {
                    let ids: Vec<u64> = batch.iter().map(|r| r.id).collect();
                    let answer = client.certificates(&ids, token).await;
                    (batch, answer)
                }
            })
            .buffer_unordered(CONCURRENT_REQUESTS);
        while let Some((batch, answer)) = answers.next().await {
            let ids: Vec<u64> = batch.iter().map(|r| r.id).collect();
            match answer {
                Ok(entries) => {
                    let checked = tokio::task::spawn_blocking(move || check(batch, entries)).await;
                    match checked {
                        Ok(checked) => result.absorb(checked, &dir),
                        Err(e) => result.fail(
                            Failure {
                                kind: "internal",
                                auth: false,
                                message: format!("checking certificates failed: {e}"),
                                requests: 1,
                            },
                            ids,
                        ),
                    }
                }
                Err(e) => result.fail(Failure::of(&e), ids),
            }
        }
        result
    }
}

/// The refusal to fetch private keys over plain `http://` from `host`.
fn plain_http(host: &str) -> Failure {
    Failure {
        kind: PLAIN_HTTP,
        auth: false,
        message: format!(
            "certificates are not fetched over plain http:// from {host}: use an https:// feed URL"
        ),
        requests: 1,
    }
}

impl Failure {
    fn of(e: &CertFetchError) -> Self {
        Self {
            kind: e.kind(),
            auth: e.is_auth(),
            message: e.to_string(),
            requests: 1,
        }
    }
}

impl RoundResult {
    /// Counts a failed request for `ids`; the first one is kept for the
    /// log.
    fn fail(&mut self, failure: Failure, ids: Vec<u64>) {
        self.retry.extend(ids);
        match &mut self.failure {
            Some(first) => {
                first.requests += failure.requests;
                first.auth |= failure.auth;
            }
            None => self.failure = Some(failure),
        }
    }

    /// Takes a checked batch, and keeps its certificates in `dir` in the
    /// background: serving them does not wait for the disk.
    fn absorb(&mut self, checked: Checked, dir: &std::path::Path) {
        self.loaded.extend(checked.loaded);
        self.refused.extend(checked.refused);
        self.retry.extend(checked.absent.iter().map(|r| r.id));
        self.absent.extend(checked.absent);
        if checked.keep.is_empty() {
            return;
        }
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || {
            for cert in &checked.keep {
                if let Err(e) = cert_cache::store(&dir, cert) {
                    eprintln!(
                        "gateway: cannot keep certificate id {} for {} in source.cert_cache_dir {}: {e}; a restart while tenant-admin is down would start without it",
                        cert.id,
                        cert.hostname,
                        dir.display()
                    );
                }
            }
        });
    }
}

/// A batch's answer, checked against its references.
#[derive(Default)]
struct Checked {
    loaded: Vec<(CertRef, Arc<CertifiedKey>)>,
    refused: Vec<(CertRef, String)>,
    absent: Vec<CertRef>,
    /// The accepted entries, to keep on disk.
    keep: Vec<FetchedCertificate>,
}

/// Matches the `entries` tenant-admin answered with the references asked
/// for, by id; entries not asked for are ignored.
fn check(batch: Vec<CertRef>, entries: Vec<FetchedCertificate>) -> Checked {
    let mut by_id: HashMap<u64, FetchedCertificate> =
        entries.into_iter().map(|e| (e.id, e)).collect();
    let mut checked = Checked::default();
    for reference in batch {
        match by_id.remove(&reference.id) {
            None => checked.absent.push(reference),
            Some(entry) => match entry.load_for(&reference) {
                Ok(key) => {
                    checked.loaded.push((reference, key));
                    checked.keep.push(entry);
                }
                Err(reason) => checked.refused.push((reference, reason)),
            },
        }
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;
    use router::Hostname;

    fn reference(host: &str, id: u64) -> CertRef {
        CertRef {
            hostname: Hostname::parse(host).unwrap(),
            id,
            not_after: 1_790_000_000,
        }
    }

    fn fetched(
        ca: &testkit::TestCa,
        dir: &std::path::Path,
        id: u64,
        host: &str,
        names: &[&str],
    ) -> FetchedCertificate {
        ca.issue(dir, host, names);
        FetchedCertificate {
            id,
            hostname: host.to_owned(),
            not_after: 1_790_000_000,
            chain_pem: std::fs::read_to_string(dir.join(format!("{host}.crt"))).unwrap(),
            key_pem: std::fs::read_to_string(dir.join(format!("{host}.key"))).unwrap(),
        }
    }

    #[test]
    fn a_batch_is_matched_to_its_references_by_id() {
        let ca = testkit::TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let good = fetched(
            &ca,
            dir.path(),
            1,
            "erp.customer.test",
            &["erp.customer.test"],
        );
        // Issued for another name than the one it is filed under.
        let misfiled = fetched(&ca, dir.path(), 2, "shop.other.test", &["www.other.test"]);
        // A key that belongs to another certificate.
        let mut mismatched = fetched(&ca, dir.path(), 3, "crm.third.test", &["crm.third.test"]);
        mismatched.key_pem = good.key_pem.clone();
        let stray = fetched(&ca, dir.path(), 99, "stray.test", &["stray.test"]);

        let batch = vec![
            reference("erp.customer.test", 1),
            reference("shop.other.test", 2),
            reference("crm.third.test", 3),
            reference("gone.test", 4),
        ];
        let checked = check(batch, vec![stray, mismatched, good.clone(), misfiled]);
        let loaded: Vec<_> = checked.loaded.iter().map(|(r, _)| r.id).collect();
        assert_eq!(loaded, [1]);
        assert_eq!(checked.keep, [good]);
        let refused: Vec<_> = checked
            .refused
            .iter()
            .map(|(r, why)| (r.id, why.as_str()))
            .collect();
        assert_eq!(
            refused,
            [
                (2, "the certificate is not valid for the hostname"),
                (3, "the private key does not belong to the certificate"),
            ]
        );
        let absent: Vec<_> = checked.absent.iter().map(|r| r.id).collect();
        assert_eq!(absent, [4]);
    }

    #[tokio::test]
    async fn private_keys_are_not_fetched_over_plain_http_from_another_host() {
        let ca = testkit::TestCa::new();
        let dir = tempfile::tempdir().unwrap();
        let issued = tempfile::tempdir().unwrap();
        let kept = fetched(&ca, issued.path(), 1, "kept.test", &["kept.test"]);
        cert_cache::store(dir.path(), &kept).unwrap();
        // Nothing listens there: any request would fail otherwise.
        let url = crate::feed_client::FeedUrl::parse("http://tenant-admin.internal:1").unwrap();
        let host = url.cleartext_remote_host().map(str::to_owned);
        assert_eq!(host.as_deref(), Some("tenant-admin.internal"));
        let client = Arc::new(FeedClient::new(url, pingora::tls::RootCertStore::empty()));

        let round = Round::run(
            client,
            dir.path().join("no-token"),
            dir.path().to_owned(),
            host,
            vec![reference("kept.test", 1), reference("new.test", 2)],
        )
        .await;
        // The kept certificate is still served.
        let loaded: Vec<_> = round.loaded.iter().map(|(r, _)| r.id).collect();
        assert_eq!(loaded, [1]);
        let failure = round.failure.expect("the fetch was refused");
        assert_eq!(
            (failure.kind, failure.requests, failure.auth),
            (PLAIN_HTTP, 1, false)
        );
        assert_eq!(
            failure.message,
            "certificates are not fetched over plain http:// from tenant-admin.internal: use an https:// feed URL"
        );
        assert_eq!(round.retry, [2]);
    }
}
