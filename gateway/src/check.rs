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
            url,
            token_file,
            cache_path,
            cert_cache_dir,
        } => {
            if config.https_listen.is_some()
                && let Some(host) = url.cleartext_remote_host()
            {
                problems.push(format!(
                    "source.url: certificates and their private keys are not fetched over plain http:// from {host}: use an https:// feed URL (plain http:// is only for localhost or a loopback address)"
                ));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `check` of a feed config with `url`, with or without an HTTPS
    /// listener; its problems.
    fn problems(url: &str, https: bool) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "secret\n").unwrap();
        let listen = if https {
            "https_listen = \"127.0.0.1:8443\""
        } else {
            "http_listen = \"127.0.0.1:8080\""
        };
        let text = format!(
            "[gateway]\nregion = \"eu-west\"\n{listen}\nadmin_listen = \"127.0.0.1:9090\"\n\n\
             [source]\nkind = \"admin\"\nurl = \"{url}\"\ntoken_file = \"token\"\n\
             cache_path = \"snapshot.json\"\n"
        );
        let config = Config::from_toml(&text, &dir.path().join("gateway.toml")).unwrap();
        check(&config).err().unwrap_or_default()
    }

    #[test]
    fn a_plain_http_feed_to_another_host_is_a_problem_only_when_certificates_are_served() {
        let found = problems("http://tenant-admin.internal:8080", true);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with(
                "source.url: certificates and their private keys are not fetched over plain http:// from tenant-admin.internal: use an https:// feed URL"
            ),
            "{found:?}"
        );
        for (url, https) in [
            ("http://tenant-admin.internal:8080", false),
            ("http://127.0.0.1:8080", true),
            ("http://localhost:8080", true),
            ("https://tenant-admin.internal", true),
        ] {
            assert_eq!(problems(url, https), Vec::<String>::new(), "{url} {https}");
        }
    }
}
