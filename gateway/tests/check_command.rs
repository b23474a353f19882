//! `gateway --check` and the config file: what an operator sees at 3 a.m.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .output()
        .expect("gateway runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

#[test]
fn shipped_sample_config_and_snapshot_pass_the_check() {
    let sample = repo().join("deploy/gateway.sample.toml");
    let out = gateway(&["--check", "--config", sample.to_str().unwrap()]);
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("region eu-west"), "{text}");
    assert!(
        text.contains("valid: version 1, 2 regions, 4 targets, 12 tenants, 7 custom domains"),
        "{text}"
    );
}

#[test]
fn every_config_problem_is_listed_by_key_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "gateway.toml",
        r#"
[gateway]
region = "EU West"
https_listen = "127.0.0.1:8443"
admin_listen = "localhost"
threads = 0
base_domains = ["app.example.test", "10.0.0.1", "APP.example.test."]
trusted_proxies = ["10.0.0.0/8", "not-a-cidr"]

[source]
kind = "admin"
url = "ftp://admin"
token_file = "token"
cache_path = "cache.json"

[redis]
url = "http://user:hunter2@redis"

[upstream]
connect_timeout_ms = 0
circuit_failures = 0
"#,
    );
    let out = gateway(&["--check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let text = text(&out);
    for expected in [
        "gateway.region: may only contain lowercase letters",
        "gateway.admin_listen: \"localhost\" is not an IP address and port",
        "gateway.threads: must be from 1 to 1024",
        "gateway.base_domains[1]: \"10.0.0.1\": an IP address is not a hostname",
        "gateway.base_domains[2]: app.example.test is listed twice",
        "gateway.trusted_proxies[1]: \"not-a-cidr\" is not a CIDR",
        "source.url: \"ftp://admin\" is not an http:// or https:// URL",
        "redis.url: must start with redis://",
        "upstream.connect_timeout_ms: must be at least 1",
        "upstream.circuit_failures: must be at least 1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    // HTTPS without [tls] is fine here: the feed brings the certificates.
    assert!(!text.contains("gateway.https_listen"), "{text}");
    assert!(text.contains("has 10 problems"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "a password leaked into the output:\n{text}"
    );
}

#[test]
fn certificates_in_a_snapshot_file_are_a_problem_naming_each() {
    let dir = tempfile::tempdir().unwrap();
    let sample = std::fs::read_to_string(repo().join("deploy/snapshots/sample.toml")).unwrap();
    let domain = sample
        .lines()
        .find_map(|l| l.trim().strip_prefix("domains = [\""))
        .and_then(|rest| rest.split('"').next())
        .expect("the sample has a custom domain")
        .to_owned();
    let snapshot = format!(
        "{sample}\n[[certificates]]\nhostname = \"{domain}\"\nid = 7\nnot_after = 1790000000\n\n\
         [[challenges]]\nkind = \"acme-http01\"\nhostname = \"{domain}\"\ntoken = \"tok\"\nresponse = \"tok.key\"\n"
    );
    write(dir.path(), "routing.toml", &snapshot);
    let config = write(
        dir.path(),
        "gateway.toml",
        "[gateway]\nregion = \"eu-west\"\nhttp_listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:2\"\nbase_domains = [\"app.example.test\"]\n\n[source]\nkind = \"file\"\npath = \"routing.toml\"\n",
    );
    let out = gateway(&["--check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    let text = text(&out);
    assert!(text.contains("gateway: 1 problem(s):"), "{text}");
    assert!(
        text.contains(
            "certificates[0]: certificates in a snapshot file need [source] kind = \"admin\"; put PEM files in tls.cert_dir instead"
        ),
        "{text}"
    );

    // Challenges alone are fine in a file.
    let without = snapshot
        .split("[[certificates]]")
        .next()
        .unwrap()
        .to_owned()
        + &snapshot[snapshot.find("[[challenges]]").unwrap()..];
    write(dir.path(), "routing.toml", &without);
    let out = gateway(&["--check", "--config", config.to_str().unwrap()]);
    let text = self::text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("0 certificate references, 1 challenges"),
        "{text}"
    );
}

#[test]
fn an_admin_source_serves_https_without_tls_and_reports_its_kept_certificates() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "token", "gw-token\n");
    let config = write(
        dir.path(),
        "gateway.toml",
        "[gateway]\nregion = \"eu-west\"\nhttps_listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:2\"\n\n[source]\nkind = \"admin\"\nurl = \"http://127.0.0.1:3\"\ntoken_file = \"token\"\ncache_path = \"cache/snapshot.json\"\n",
    );
    let out = gateway(&["--check", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    // A cached snapshot referring to a certificate: how many are kept.
    let sample = std::fs::read_to_string(repo().join("deploy/snapshots/sample.toml")).unwrap();
    let mut json: serde_json::Value = toml::from_str(&sample).unwrap();
    let domain = json["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|t| t["domains"].get(0))
        .expect("the sample has a custom domain")
        .clone();
    json["certificates"] =
        serde_json::json!([{"hostname": domain, "id": 7, "not_after": 1790000000}]);
    std::fs::create_dir(dir.path().join("cache")).unwrap();
    write(dir.path(), "cache/snapshot.json", &json.to_string());
    let out = gateway(&["--check", "--config", config.to_str().unwrap()]);
    let text = text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("cache/snapshot.json.certs: 0 of the 1 certificate(s) the last-known-good snapshot refers to are kept"),
        "{text}"
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "gateway.toml",
        "[gateway]\nregion = \"eu-west\"\nhttp_listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:2\"\nthread = 4\n\n[source]\nkind = \"file\"\npath = \"s.toml\"\n",
    );
    let out = gateway(&["--check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let text = text(&out);
    assert!(
        text.contains("unknown field `thread`") && text.contains("line 5"),
        "{text}"
    );
}

#[test]
fn a_broken_snapshot_lists_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let broken = repo().join("deploy/snapshots/examples/broken.toml");
    let config = write(
        dir.path(),
        "gateway.toml",
        &format!(
            "[gateway]\nregion = \"eu-west\"\nhttp_listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:2\"\nbase_domains = [\"app.example.test\"]\n\n[source]\nkind = \"file\"\npath = {:?}\n",
            broken.to_str().unwrap()
        ),
    );
    let out = gateway(&["--check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let text = text(&out);
    assert!(text.contains("gateway: 21 problem(s):"), "{text}");
    assert!(
        text.contains("tenants[1] (id \"t-0001\").id: duplicate tenant id (also tenants[0])"),
        "{text}"
    );
}

#[test]
fn a_snapshot_without_the_gateways_region_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sample = repo().join("deploy/snapshots/sample.toml");
    let config = write(
        dir.path(),
        "gateway.toml",
        &format!(
            "[gateway]\nregion = \"ap-south\"\nhttp_listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:2\"\n\n[source]\nkind = \"file\"\npath = {:?}\n",
            sample.to_str().unwrap()
        ),
    );
    let out = gateway(&["--check", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let text = text(&out);
    assert!(
        text.contains("the gateway's region \"ap-south\"")
            && text.contains("[\"eu-west\", \"us-east\"]"),
        "{text}"
    );
}

#[test]
fn relative_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("snap")).unwrap();
    std::fs::copy(
        repo().join("deploy/snapshots/sample.toml"),
        dir.path().join("snap/routing.toml"),
    )
    .unwrap();
    let config = write(
        dir.path(),
        "gateway.toml",
        "[gateway]\nregion = \"us-east\"\nhttp_listen = \"127.0.0.1:1\"\nadmin_listen = \"127.0.0.1:2\"\n\n[source]\nkind = \"file\"\npath = \"snap/routing.toml\"\n",
    );
    // Run from elsewhere: the path must not depend on the working directory.
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--check", "--config", config.to_str().unwrap()])
        .current_dir("/")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn bad_flags_exit_64_and_a_missing_config_exits_78() {
    let out = gateway(&["--check", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let out = gateway(&["--check"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let out = gateway(&["--check", "--config", "/nonexistent/gateway.toml"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out).contains("/nonexistent/gateway.toml"));
    let out = gateway(&["--help"]);
    assert!(out.status.success());
    assert!(text(&out).contains("--check"));
}
