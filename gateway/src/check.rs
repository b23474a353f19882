//! `gateway --check`: everything `gateway --config` would load, validated
//! without serving, with every problem listed.

use std::path::Path;

use crate::cert_cache;
use crate::config::{Config, Source};
use crate::snapshot_file;

/// What a successful check found, one line each.
pub type Summary = Vec<String>;

/// Checks the snapshot (or the admin source's files) behind `config`.
///
/// # Errors
///
/// Every problem found, one line each.
pub fn check(config: &Config) -> Result<Summary, Vec<String>> {
    let mut summary = vec![format!(
        "config {}: valid (region {}, {} base domain(s), {} trusted proxy range(s))",
        config.path.display(),
        config.region,
        config.base_domains.len(),
        config.trusted_proxies.len()
    )];
    let mut problems = Vec::new();
    match &config.source {
        Source::File { path } => {
            check_snapshot(path, config, "snapshot", &mut summary, &mut problems);
        }
        Source::Admin {
            token_file,
            cache_path,
            cert_cache_dir,
            ..
        } => {
            match std::fs::read_to_string(token_file) {
                Ok(token) if token.trim().is_empty() => problems.push(format!(
                    "source.token_file: {} is empty",
                    token_file.display()
                )),
                Ok(_) => {}
                Err(e) => problems.push(format!(
                    "source.token_file: cannot read {}: {e}",
                    token_file.display()
                )),
            }
            if cache_path.exists() {
                let what = "source.cache_path";
                let loaded = check_snapshot(cache_path, config, what, &mut summary, &mut problems);
                if let Some(loaded) = loaded.filter(|_| config.https_listen.is_some()) {
                    let references = loaded.table.certificates();
                    summary.push(format!(
                        "source.cert_cache_dir {}: {} of the {} certificate(s) the last-known-good snapshot refers to are kept; the rest are fetched from the feed",
                        cert_cache_dir.display(),
                        cert_cache::count_kept(cert_cache_dir, references),
                        references.len()
                    ));
                }
            } else {
                summary.push(format!(
                    "source.cache_path {}: no last-known-good snapshot yet; the gateway is ready once the feed answers",
                    cache_path.display()
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(summary)
    } else {
        Err(problems)
    }
}

/// Loads the snapshot at `path` as serving would, adding a summary line or
/// its problems, each prefixed with `what` and the path; the table when
/// it loads.
fn check_snapshot(
    path: &Path,
    config: &Config,
    what: &str,
    summary: &mut Summary,
    problems: &mut Vec<String>,
) -> Option<snapshot_file::LoadedTable> {
    match snapshot_file::load(path, config) {
        Ok(loaded) => {
            summary.push(describe(path, &loaded));
            Some(loaded)
        }
        Err(rejected) => {
            problems.extend(
                rejected
                    .problems
                    .into_iter()
                    .map(|p| format!("{what} {}: {p}", rejected.origin)),
            );
            None
        }
    }
}

fn describe(path: &Path, loaded: &snapshot_file::LoadedTable) -> String {
    let t = &loaded.table;
    format!(
        "snapshot {}: valid: version {}, {} regions, {} targets, {} tenants, {} custom domains, {} certificate references, {} challenges",
        path.display(),
        t.version(),
        t.regions().len(),
        t.targets().len(),
        t.tenant_count(),
        t.domain_count(),
        t.certificates().len(),
        t.challenge_count()
    )
}
