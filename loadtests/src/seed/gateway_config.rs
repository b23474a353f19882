//! The seeded gateway's config (`gateway.toml`): every key of
//! `deploy/gateway.sample.toml`, with the file source on the seeded
//! snapshot, the seeded certificates, and no Redis. Paths are relative, so
//! the gateway resolves them against the config's own directory and the
//! output directory can be moved or copied as a whole.

use std::fmt::Write as _;

use super::snapshot::quoted;
use super::{CERT_DIR, DEFAULT_CERT, DEFAULT_KEY, GATEWAY_CONFIG, SNAPSHOT, SeedOptions};

/// Peers whose `x-tenant-id` and `x-forwarded-*` are honoured: loopback, so a
/// local load generator can also address tenants by header.
const TRUSTED_PROXIES: &str = r#"["127.0.0.1/32", "::1/128"]"#;

/// The text of `gateway.toml` for `options`.
pub(super) fn text(options: &SeedOptions) -> String {
    let tls = options.certificates;
    let mut out = String::with_capacity(2048);
    // Writing into a String cannot fail.
    let _ = write(&mut out, options, tls);
    out
}

fn write(out: &mut String, o: &SeedOptions, tls: bool) -> std::fmt::Result {
    let p = &o.population;
    writeln!(
        out,
        "# Gateway config written by `loadtest seed` for {} tenants at *.{}.",
        p.count, p.base_domain
    )?;
    out.push_str(
        "# Every key is explained in deploy/gateway.sample.toml. Relative paths are\n\
         # relative to this file's directory. From this directory:\n",
    );
    writeln!(out, "#   gateway --check --config {GATEWAY_CONFIG}")?;
    writeln!(out, "#   gateway --config {GATEWAY_CONFIG}\n")?;

    out.push_str("[gateway]\n");
    writeln!(out, "region = {}", quoted(&o.region))?;
    writeln!(out, "http_listen = \"{}\"", o.http_listen)?;
    if tls {
        writeln!(out, "https_listen = \"{}\"", o.https_listen)?;
    }
    writeln!(out, "admin_listen = \"{}\"", o.admin_listen)?;
    writeln!(out, "threads = {}", o.threads)?;
    writeln!(out, "base_domains = [{}]", quoted(&p.base_domain))?;
    writeln!(out, "trusted_proxies = {TRUSTED_PROXIES}")?;
    writeln!(out, "access_log = {}\n", o.access_log)?;

    if tls {
        out.push_str("# Clients trust ca.pem, which signed every certificate here.\n[tls]\n");
        writeln!(out, "default_cert = \"{DEFAULT_CERT}\"")?;
        writeln!(out, "default_key = \"{DEFAULT_KEY}\"")?;
        writeln!(out, "cert_dir = \"{CERT_DIR}\"\n")?;
    }

    out.push_str("[source]\nkind = \"file\"\n");
    writeln!(out, "path = \"{SNAPSHOT}\"\n")?;

    out.push_str(
        "# No [redis]: rate limits and purges are local to this gateway.\n\n\
         [cache]\n\
         max_bytes = 268435456\n\
         lock_timeout_ms = 5000\n\
         stale_if_error_secs = 300\n\n\
         [upstream]\n\
         connect_timeout_ms = 1000\n\
         read_timeout_ms = 30000\n\
         write_timeout_ms = 30000\n\
         idle_timeout_secs = 60\n\
         health_check_interval_ms = 2000\n\
         circuit_failures = 5\n\
         circuit_open_ms = 10000\n\n\
         [routing]\n\
         move_write_hold_ms = 5000\n\n\
         # A test gateway stops quickly; the socket and pid file stay in this\n\
         # directory so several seeded gateways can run side by side.\n\
         [shutdown]\n\
         grace_period_secs = 1\n\
         graceful_shutdown_timeout_secs = 5\n\
         upgrade_sock = \"gateway-upgrade.sock\"\n\
         pid_file = \"gateway.pid\"\n",
    );
    Ok(())
}
