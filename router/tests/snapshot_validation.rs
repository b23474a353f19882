//! Reading snapshots and reporting every problem with its location.

mod common;

use common::{broken_path, options, sample, sample_table};
use router::{BackendDoc, RoutingTable, Snapshot, SnapshotError, TargetKind};

#[test]
fn shipped_sample_snapshot_is_valid() {
    let table = sample_table();
    assert_eq!(table.version(), 1);
    assert_eq!(table.regions().len(), 2);
    assert_eq!(table.targets().len(), 4);
    assert!(
        table
            .targets()
            .iter()
            .any(|t| t.kind == TargetKind::Dedicated)
    );
    assert_eq!(table.tenant_count(), 12);
    // Deleted tenants' domains do not route; the sample's deleted tenant has none.
    assert_eq!(table.domain_count(), 7);
}

#[test]
fn json_and_toml_forms_are_the_same_snapshot() {
    let from_toml = sample();
    let json = serde_json::to_string_pretty(&from_toml).unwrap();
    let from_json = Snapshot::from_json(&json).unwrap();
    assert_eq!(from_toml, from_json);
    assert_eq!(Snapshot::from_text(&json).unwrap(), from_toml);
}

#[test]
fn broken_copy_lists_every_problem_with_its_location() {
    let snapshot = Snapshot::from_path(&broken_path()).unwrap();
    let problems = RoutingTable::build(&snapshot, &options()).unwrap_err();
    let found: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {}", p.location, p.message))
        .collect();
    let expected = [
        "regions[1].name: duplicate region \"eu-west\"",
        "plans[0] (name \"starter\").rate_per_sec: must be at least 1",
        "targets[0] (id \"shard-eu-1\").pools.ap-south: unknown region \"ap-south\"",
        "targets[0] (id \"shard-eu-1\").pools.eu-west[1]: invalid address \"not an address\"",
        "targets[1] (id \"shard-eu-2\").weight: must be from 1 to 1000",
        "targets[1] (id \"shard-eu-2\").pools.eu-west: pool is empty",
        "targets[2] (id \"dedicated-globex\").region: unknown region \"us-east\"",
        "tenants[0] (id \"t-0001\").plan: unknown plan \"gold\"",
        "tenants[1] (id \"t-0001\").id: duplicate tenant id (also tenants[0])",
        "tenants[1] (id \"t-0001\").slug: slug \"acme\" is already used by tenants[0]",
        "tenants[1] (id \"t-0001\").target: unknown target \"shard-eu-9\"",
        "tenants[1] (id \"t-0001\").domains[0]: domain erp.acme.example is also claimed by tenants[0]",
        "tenants[2] (id \"t-0003\").slug: invalid slug \"Umbrella\"",
        "tenants[2] (id \"t-0003\").domains[0]: invalid domain \"10.0.0.1\": an IP address is not a hostname",
        "tenants[2] (id \"t-0003\").domains[1]: domain shop.app.example.test is within the platform's base domain",
        "tenants[2] (id \"t-0003\").domains[2]: invalid domain \"a..b\": hostname has an empty label",
    ];
    for e in expected {
        assert!(
            found.iter().any(|f| f.starts_with(e)),
            "missing problem {e:?} in:\n{}",
            found.join("\n")
        );
    }
    let text = problems.to_string();
    assert!(text.starts_with(&format!(
        "routing snapshot has {} problems:",
        problems.len()
    )));
}

fn problems_of(snapshot: &Snapshot) -> Vec<String> {
    RoutingTable::build(snapshot, &options())
        .map(|_| Vec::new())
        .unwrap_or_else(|p| {
            p.iter()
                .map(|p| format!("{}: {}", p.location, p.message))
                .collect()
        })
}

#[test]
fn dedicated_target_serves_exactly_one_tenant() {
    let mut s = sample();
    let mut second = s.tenants[0].clone();
    second.id = "t-9999".into();
    second.slug = "globex-two".into();
    second.domains.clear();
    second.target = "dedicated-globex".into();
    s.tenants.push(second);
    let problems = problems_of(&s);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains(
            "dedicated target \"dedicated-globex\" is already used by tenants[4] (id \"t-0005\")"
        ),
        "{problems:?}"
    );
}

#[test]
fn tenant_region_must_match_its_target() {
    let mut s = sample();
    s.tenants[0].region = "us-east".into();
    let problems = problems_of(&s);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with(
        "tenants[0] (id \"t-0001\").region: tenant's home region \"us-east\" differs"
    ));
}

#[test]
fn target_needs_a_pool_in_its_home_region() {
    let mut s = sample();
    s.targets[0].pools.remove("eu-west");
    let problems = problems_of(&s);
    assert!(
        problems[0].contains("no pool in the target's home region \"eu-west\""),
        "{problems:?}"
    );
}

#[test]
fn backend_addresses_need_a_port_and_a_valid_host() {
    let mut s = sample();
    s.targets[0].pools.insert(
        "eu-west".into(),
        vec![
            BackendDoc::Addr("app-1.internal".into()),
            BackendDoc::Addr("app_2.internal:80".into()),
            BackendDoc::Addr("app-3.internal:0".into()),
            BackendDoc::Weighted {
                addr: "[::1]:8080".into(),
                weight: 0,
            },
            BackendDoc::Addr("app-4.internal:8080".into()),
            BackendDoc::Addr("app-4.internal:8080".into()),
        ],
    );
    let problems = problems_of(&s);
    let loc = "targets[0] (id \"shard-eu-1\").pools.eu-west";
    for expected in [
        format!("{loc}[0]: invalid address \"app-1.internal\": expected host:port"),
        format!("{loc}[1]: invalid address \"app_2.internal:80\": hostname contains a character"),
        format!("{loc}[2]: invalid address \"app-3.internal:0\": port must be"),
        format!("{loc}[3].weight: must be at least 1"),
        format!("{loc}[5]: duplicate backend \"app-4.internal:8080\""),
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(&expected)),
            "missing {expected:?} in {problems:?}"
        );
    }
}

#[test]
fn deleted_tenants_free_their_slug_and_domains_but_keep_their_id() {
    let mut s = sample();
    let deleted = s.tenants.iter().position(|t| t.slug == "oscorp").unwrap();
    s.tenants[deleted].domains = vec!["old.oscorp.example".into()];
    let mut reuse = s.tenants[deleted].clone();
    reuse.id = "t-0100".into();
    reuse.status = router::TenantStatus::Active;
    s.tenants.push(reuse);
    assert_eq!(problems_of(&s), Vec::<String>::new());

    let mut clash = s.tenants[deleted].clone();
    clash.slug = "oscorp-again".into();
    clash.domains.clear();
    s.tenants.push(clash);
    let problems = problems_of(&s);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("duplicate tenant id (also tenants[10])"),
        "{problems:?}"
    );
}

#[test]
fn unknown_fields_and_bad_enums_are_parse_errors_with_a_line() {
    let err =
        Snapshot::from_toml("version = 1\n[[regions]]\nname = \"eu\"\nzone = 3\n").unwrap_err();
    assert!(matches!(err, SnapshotError::Toml(_)));
    let text = err.to_string();
    assert!(text.contains("zone") && text.contains("line 4"), "{text}");

    let err = Snapshot::from_json("{\"version\": 1, \"targets\": [{\"id\": \"a\", \"kind\": \"cluster\", \"region\": \"eu\"}]}")
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("unknown variant `cluster`") && text.contains("line 1"),
        "{text}"
    );
}

#[test]
fn a_missing_file_names_the_path() {
    let err = Snapshot::from_path(std::path::Path::new("/nonexistent/snap.toml")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/snap.toml"), "{err}");
}

#[test]
fn problem_lists_are_capped_when_displayed() {
    let mut s = sample();
    for t in &mut s.tenants {
        t.plan = "missing".into();
    }
    for i in 0..100 {
        let mut t = s.tenants[0].clone();
        t.id = format!("x-{i}");
        t.slug = format!("x-{i}");
        t.domains.clear();
        s.tenants.push(t);
    }
    let problems = RoutingTable::build(&s, &options()).unwrap_err();
    assert_eq!(problems.len(), 112);
    let text = problems.to_string();
    assert_eq!(text.lines().count(), 1 + 50 + 1, "{text}");
    assert!(text.ends_with("… and 62 more"), "{text}");
}
