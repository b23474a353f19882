use super::*;

const MINIMAL: &str = r#"
name = "minimal"
duration_secs = 2
[tenants]
count = 10
[rate]
rps = 100
[[requests]]
path = "/"
"#;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(text, "test.toml", Path::new("/scenarios"))
}

/// The problems of an invalid scenario.
fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Err(ScenarioError::Invalid { problems, .. }) => problems,
        other => panic!("expected problems, got {other:?}"),
    }
}

#[test]
fn a_minimal_scenario_takes_the_defaults() {
    let scenario = parse(MINIMAL).unwrap();
    assert_eq!(scenario.tenants.population, Population::new(10));
    assert_eq!(scenario.tenants.zipf, 1.0);
    assert_eq!(scenario.rate.shape, RateShape::Constant { rps: 100.0 });
    assert_eq!(scenario.rate.arrivals, Arrivals::Uniform);
    assert_eq!(scenario.connections.max, 1_000);
    assert_eq!(scenario.timeout_ms, 10_000);
    assert_eq!(scenario.requests[0].method, Method::GET);
    assert_eq!(scenario.slo, Slo::default());
}

#[test]
fn every_section_is_read() {
    let scenario = parse(
        r#"
name = "full"
description = "all keys"
duration_secs = 30
warmup_secs = 5
timeout_ms = 2000
seed = 7
[tenants]
count = 500
zipf = 1.2
hot_share = 0.3
slug_prefix = "acme-"
base_domain = "app.example.test"
custom_domains = 50
domain_suffix = "shops.example.test"
custom_domain_share = 0.5
[rate]
kind = "spike"
rps = 100
spike_rps = 1000
spike_at_secs = 10
spike_secs = 3
arrivals = "poisson"
[connections]
max = 64
new_share = 0.25
[[requests]]
weight = 3
path = "/items/{rand:100}?cache=60"
[[requests]]
method = "POST"
path = "/orders/{tenant}/{seq}"
body_bytes = [100, 200]
headers = { "content-type" = "application/json" }
[tls]
ca = "certs/ca.pem"
[resolve]
"*.shops.example.test" = "127.0.0.2:8443"
[slo]
p95_ms = 200
p99_ms = 500
max_error_rate = 0.01
min_throughput_rps = 90
[slo.classes.small]
p99_ms = 300
"#,
    )
    .unwrap();
    assert_eq!(scenario.warmup_secs, 5.0);
    assert_eq!(scenario.total_secs(), 35.0);
    assert_eq!(scenario.tenants.population.slug(4), "acme-4");
    assert_eq!(
        scenario.tenants.population.custom_domain(3).as_deref(),
        Some("acme-3.shops.example.test")
    );
    assert_eq!(scenario.rate.at(0.0), 100.0);
    assert_eq!(scenario.rate.at(11.0), 1000.0);
    assert_eq!(scenario.rate.at(13.0), 100.0);
    assert_eq!(scenario.rate.arrivals, Arrivals::Poisson);
    assert_eq!(scenario.connections.new_share, 0.25);
    assert_eq!(scenario.requests[1].body, BodySize::Between(100, 200));
    assert_eq!(scenario.requests[1].headers.len(), 1);
    assert_eq!(
        scenario.tls.ca.as_deref(),
        Some(Path::new("/scenarios/certs/ca.pem"))
    );
    assert_eq!(scenario.slo.all.p95_ms, Some(200.0));
    assert_eq!(scenario.slo.classes["small"].p99_ms, Some(300.0));

    let target: SocketAddr = "127.0.0.1:8443".parse().unwrap();
    assert_eq!(
        scenario.resolve("acme-1.shops.example.test", target),
        "127.0.0.2:8443".parse().unwrap()
    );
    // The pattern's own name and look-alikes are not below it.
    assert_eq!(scenario.resolve("shops.example.test", target), target);
    assert_eq!(scenario.resolve("xshops.example.test", target), target);
    assert_eq!(scenario.resolve("acme-1.app.example.test", target), target);
}

#[test]
fn stepped_rates_hold_each_step_until_the_next() {
    let scenario = parse(&MINIMAL.replace(
        "rps = 100",
        "kind = \"stepped\"\nsteps = [{ at_secs = 0, rps = 10 }, { at_secs = 1, rps = 50 }]",
    ))
    .unwrap();
    assert_eq!(scenario.rate.at(0.5), 10.0);
    assert_eq!(scenario.rate.at(1.0), 50.0);
    assert_eq!(scenario.rate.at(100.0), 50.0);
}

#[test]
fn syntax_errors_and_unknown_keys_name_the_line() {
    let err = parse("name = \"x\"\nduration_secs = \n").unwrap_err();
    assert!(matches!(err, ScenarioError::Syntax { .. }), "{err}");
    assert!(err.to_string().contains("line 2"), "{err}");

    let err = parse(&MINIMAL.replace("count = 10", "count = 10\nsize = 3")).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("unknown field `size`"), "{message}");
    assert!(message.contains("test.toml"), "{message}");

    let err = parse(&MINIMAL.replace("rps = 100", "rps = \"fast\"")).unwrap_err();
    assert!(err.to_string().contains("rps"), "{err}");
}

#[test]
fn every_problem_is_listed_with_its_key() {
    let found = problems(
        r#"
name = ""
duration_secs = -1
timeout_ms = 0
[tenants]
count = 0
zipf = -2
hot_share = 1.5
base_domain = "App.Example.Test."
custom_domains = 5
[rate]
kind = "stepped"
rps = 10
steps = [{ at_secs = 1, rps = 0 }]
[connections]
max = 0
new_share = 2
[[requests]]
weight = 0
method = "get"
path = "items"
body_bytes = [10, 1]
headers = { "host" = "evil.example", "bad header" = "x" }
[resolve]
"*.x.example.test" = "nowhere"
[slo]
max_error_rate = 3
[slo.classes.huge]
p99_ms = 1
"#,
    );
    let expected = [
        "name: ",
        "duration_secs: -1 is not between",
        "timeout_ms: ",
        "tenants.count: 0 is not 1 to",
        "tenants.zipf: -2 is not between",
        "tenants.hot_share: 1.5 is not between",
        "tenants.custom_domains: 5 is more than tenants.count",
        "tenants.base_domain: write it as \"app.example.test\"",
        "rate.rps: not used when kind = \"stepped\"",
        "rate.steps[0].at_secs: the first step starts at 0",
        "rate.steps[0].rps: 0 is not a rate",
        "connections.max: 0 is not 1 to",
        "connections.new_share: 2 is not between 0 and 1",
        "requests[0].weight: must be at least 1",
        "requests[0].method: \"get\" is not an uppercase HTTP method",
        "requests[0].path: \"items\" must start with '/'",
        "requests[0].body_bytes: a size, or [min, max]",
        "requests[0].headers.\"host\": set by the harness itself",
        "requests[0].headers.\"bad header\": not a header name",
        "resolve.\"*.x.example.test\": \"nowhere\" is not IP:PORT",
        "slo.max_error_rate: 3 is not between 0 and 1",
        "slo.classes.huge: unknown class",
    ];
    for want in expected {
        assert!(
            found.iter().any(|problem| problem.starts_with(want)),
            "no problem starting with {want:?} in {found:#?}"
        );
    }
}

#[test]
fn bad_hostnames_and_templates_are_refused() {
    let found = problems(&MINIMAL.replace(
        "count = 10",
        "count = 10\nbase_domain = \"127.0.0.1\"\nslug_prefix = \"Bad_\"\ncustom_domains = 1\ndomain_suffix = \"x.app.example.test\"",
    ));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("tenants.base_domain: \"127.0.0.1\" is not a hostname")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("tenants.slug_prefix: makes slugs like \"Bad_9\"")),
        "{found:#?}"
    );

    let found = problems(&MINIMAL.replace(
        "count = 10",
        "count = 10\ncustom_domains = 1\ndomain_suffix = \"x.app.example.test\"",
    ));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("tenants.domain_suffix: must not be")),
        "{found:#?}"
    );

    for (path, want) in [
        ("/a/{rand:0}", "N must be 1 to"),
        ("/a/{rand:x}", "N must be 1 to"),
        ("/a/{user}", "unknown placeholder {user}"),
        ("/a/{seq", "unclosed '{'"),
        ("/a b", "cannot be in a request path"),
        ("/a#frag", "cannot be in a request path"),
        ("/é", "cannot be in a request path"),
    ] {
        let found = problems(&MINIMAL.replace("path = \"/\"", &format!("path = \"{path}\"")));
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("requests[0].path:") && p.contains(want)),
            "{path}: {found:#?}"
        );
    }
}

#[test]
fn a_hot_class_objective_needs_a_hot_tenant() {
    let found = problems(&format!("{MINIMAL}\n[slo.classes.hot]\np99_ms = 5\n"));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("slo.classes.hot: there is no hot tenant")),
        "{found:#?}"
    );
}

#[test]
fn the_error_lists_every_problem_on_its_own_line() {
    let err = parse(&MINIMAL.replace("count = 10", "count = 0\nzipf = -1")).unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("scenario test.toml has 2 problem(s):\n"),
        "{message}"
    );
    assert!(message.contains("\n  - tenants.count:"), "{message}");
    assert!(message.contains("\n  - tenants.zipf:"), "{message}");
}

#[test]
fn classes_split_the_ranks() {
    let mut scenario = parse(&MINIMAL.replace("count = 10", "count = 1000")).unwrap();
    assert_eq!(scenario.class_sizes(), [0, 10, 90, 900]);
    assert_eq!(scenario.class_of(0), 1);
    assert_eq!(scenario.class_of(9), 1);
    assert_eq!(scenario.class_of(10), 2);
    assert_eq!(scenario.class_of(99), 2);
    assert_eq!(scenario.class_of(100), 3);
    scenario.tenants.hot_share = 0.3;
    assert_eq!(scenario.class_sizes(), [1, 10, 90, 899]);
    assert_eq!(scenario.class_of(0), 0);
    assert_eq!(scenario.class_of(1), 1);
    assert_eq!(scenario.class_of(11), 2);
    assert_eq!(scenario.class_of(101), 3);

    let tiny = parse(&MINIMAL.replace("count = 10", "count = 1")).unwrap();
    assert_eq!(tiny.class_sizes(), [0, 1, 0, 0]);
}

#[test]
fn templates_render_their_placeholders() {
    let template = PathTemplate::parse("/t/{tenant}/items/{rand:10}?n={seq}").unwrap();
    let mut out = String::new();
    template.render(&mut out, |n| n - 1, 42, "load-3");
    assert_eq!(out, "/t/load-3/items/9?n=42");
    assert_eq!(template.to_string(), "/t/{tenant}/items/{rand:10}?n={seq}");
}

#[test]
fn the_shipped_scenarios_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            let scenario = Scenario::load(&path).unwrap_or_else(|err| panic!("{err}"));
            assert_eq!(
                path.file_stem().unwrap().to_str().unwrap(),
                scenario.name,
                "a scenario's file is named after it"
            );
            names.push(scenario.name);
        }
    }
    names.sort();
    assert_eq!(names, ["cache", "skewed", "spike", "steady", "tls-storm"]);
}

#[test]
fn a_schedule_with_no_request_in_the_window_is_refused() {
    let found = problems(&MINIMAL.replace("rps = 100", "rps = 0.1"));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("rate: less than one request falls in the measured window")),
        "{found:#?}"
    );
}

#[test]
fn weights_that_overflow_and_empty_classes_are_refused() {
    let found = problems(&MINIMAL.replace(
        "[[requests]]\npath = \"/\"",
        "[[requests]]\npath = \"/\"\nweight = 4294967295\n[[requests]]\npath = \"/b\"\nweight = 1",
    ));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("requests: the weights add up to")),
        "{found:#?}"
    );

    let found = problems(&format!(
        "{}\n[slo.classes.medium]\np99_ms = 5\n",
        MINIMAL.replace("count = 10", "count = 5")
    ));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("slo.classes.medium: no tenant is in this class")),
        "{found:#?}"
    );
}

#[test]
fn generated_hostnames_must_fit() {
    // 248 characters: a valid base domain, but "load-9." before it makes 255.
    let long = format!("{}.test", vec!["a".repeat(60); 4].join("."));
    assert_eq!(long.len(), 248);
    let found = problems(&MINIMAL.replace(
        "count = 10",
        &format!("count = 10\nbase_domain = \"{long}\""),
    ));
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("tenants.base_domain: makes hostnames like")),
        "{found:#?}"
    );
}

#[test]
fn work_integrates_the_rate_piece_by_piece() {
    let scenario = parse(&MINIMAL.replace(
        "rps = 100",
        "kind = \"spike\"\nrps = 10\nspike_rps = 1000\nspike_at_secs = 1\nspike_secs = 0.5",
    ))
    .unwrap();
    assert_eq!(
        scenario.rate.segments(),
        [(0.0, 10.0), (1.0, 1000.0), (1.5, 10.0)]
    );
    assert_eq!(scenario.rate.work(1.0), 10.0);
    assert_eq!(scenario.rate.work(1.5), 510.0);
    assert_eq!(scenario.rate.work(2.0), 515.0);
}

#[test]
fn overrides_are_checked_like_the_file() {
    let scenario = parse(MINIMAL).unwrap();
    let changed = scenario
        .clone()
        .with_overrides(Some(5.0), Some(1.0), Some(2.0))
        .unwrap();
    assert_eq!(changed.duration_secs, 5.0);
    assert_eq!(changed.warmup_secs, 1.0);
    assert_eq!(changed.rate.at(0.0), 200.0);
    let err = scenario
        .clone()
        .with_overrides(Some(1e-9), None, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--duration-secs"), "{err}");
    for factor in [f64::NAN, 0.0, -1.0] {
        let err = scenario
            .clone()
            .with_overrides(None, None, Some(factor))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--rate-scale: "), "{factor}: {err}");
    }
    let err = scenario
        .with_overrides(None, None, Some(1e9))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--rate-scale"), "{err}");
}
