//! `gateway --check`: everything `gateway --config` would load, validated
//! without serving, with every problem listed.

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
        Source::File { path } => match snapshot_file::load(path, config) {
            Ok(loaded) => summary.push(describe(path, &loaded)),
            Err(rejected) => problems.extend(
                rejected
                    .problems
                    .into_iter()
                    .map(|p| format!("snapshot {}: {p}", rejected.path)),
            ),
        },
        Source::Admin {
            token_file,
            cache_path,
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
                match snapshot_file::load(cache_path, config) {
                    Ok(loaded) => summary.push(describe(cache_path, &loaded)),
                    Err(rejected) => problems.extend(
                        rejected
                            .problems
                            .into_iter()
                            .map(|p| format!("source.cache_path {}: {p}", rejected.path)),
                    ),
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

fn describe(path: &std::path::Path, loaded: &snapshot_file::LoadedTable) -> String {
    let t = &loaded.table;
    format!(
        "snapshot {}: valid: version {}, {} regions, {} targets, {} tenants, {} custom domains",
        path.display(),
        t.version(),
        t.regions().len(),
        t.targets().len(),
        t.tenant_count(),
        t.domain_count()
    )
}
