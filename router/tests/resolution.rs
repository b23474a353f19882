//! The routing decision: host → tenant → target → pool, for a gateway region.

mod common;

use common::{options, sample, sample_table};
use router::{
    HostError, Locality, MatchedBy, RouteError, RouteRequest, RoutingTable, TenantStatus,
};

fn get(host: &str) -> RouteRequest<'_> {
    RouteRequest {
        host: Some(host),
        method: "GET",
        trusted_tenant: None,
    }
}

fn tenant_at(
    table: &RoutingTable,
    region: &str,
    req: RouteRequest<'_>,
) -> Result<String, RouteError> {
    let region = table.region(region).unwrap();
    table
        .resolve(&req, region)
        .map(|d| d.tenant.id().to_owned())
}

#[test]
fn subdomain_of_a_base_domain_routes_to_the_slug() {
    let table = sample_table();
    let eu = table.region("eu-west").unwrap();
    let d = table.resolve(&get("acme.app.example.test"), eu).unwrap();
    assert_eq!(d.tenant.id(), "t-0001");
    assert_eq!(d.tenant.slug(), "acme");
    assert_eq!(d.matched_by, MatchedBy::Subdomain);
    assert_eq!(d.target.id.as_str(), "shard-eu-1");
    assert_eq!(d.pool.region.as_str(), "eu-west");
    assert_eq!(d.locality, Locality::Local);
    let addrs: Vec<&str> = d.pool.backends.iter().map(|b| &*b.addr).collect();
    assert_eq!(addrs, ["127.0.0.1:9101", "127.0.0.1:9102"]);
}

#[test]
fn custom_domain_routes_to_its_tenant() {
    let table = sample_table();
    let eu = table.region("eu-west").unwrap();
    let d = table.resolve(&get("erp.globex.example"), eu).unwrap();
    assert_eq!(d.tenant.slug(), "globex");
    assert_eq!(d.matched_by, MatchedBy::CustomDomain);
    assert_eq!(d.target.id.as_str(), "dedicated-globex");
}

#[test]
fn hosts_are_normalised_before_lookup() {
    let table = sample_table();
    for host in [
        "ERP.Globex.Example",
        "erp.globex.example.",
        "erp.globex.example:8443",
        "Erp.Globex.Example.:443",
    ] {
        assert_eq!(
            tenant_at(&table, "eu-west", get(host)).unwrap(),
            "t-0005",
            "{host}"
        );
    }
    // Unicode in, punycode in the snapshot.
    assert_eq!(
        tenant_at(&table, "us-east", get("BÜCHER.example")).unwrap(),
        "t-0008"
    );
}

#[test]
fn exact_domain_beats_subdomain() {
    // A custom domain can only lie outside the base domains (see the next
    // test), so a host below a base domain goes straight to the slug index.
    let table = sample_table();
    let eu = table.region("eu-west").unwrap();
    let e = table.explain(&get("acme.app.example.test"), eu);
    assert_eq!(
        e.steps[1],
        "\"acme.app.example.test\" is under base domain app.example.test, where no custom domain may be"
    );
    // With no base domain configured, a name that looks like a subdomain is
    // simply a custom domain, and it wins.
    let mut s = sample();
    s.tenants[1].domains.push("acme.app.example.test".into());
    let table = RoutingTable::build(&s, &router::BuildOptions::default()).unwrap();
    let d = table.resolve(&get("acme.app.example.test"), eu).unwrap();
    assert_eq!(d.tenant.slug(), "initech");
    assert_eq!(d.matched_by, MatchedBy::CustomDomain);
}

#[test]
fn a_custom_domain_cannot_shadow_another_tenants_subdomain() {
    // Because exact domains win, a custom domain inside a base domain would
    // steal that slug's traffic: validation refuses it.
    let mut s = sample();
    s.tenants[1].domains.push("acme.app.example.test".into());
    let problems = RoutingTable::build(&s, &options()).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(
        problems.0[0]
            .message
            .contains("within the platform's base domain app.example.test"),
        "{problems}"
    );
}

#[test]
fn subdomain_beats_the_trusted_header() {
    let table = sample_table();
    let req = RouteRequest {
        host: Some("acme.app.example.test"),
        method: "GET",
        trusted_tenant: Some("t-0002"),
    };
    assert_eq!(tenant_at(&table, "eu-west", req).unwrap(), "t-0001");
}

#[test]
fn trusted_header_routes_when_the_host_names_no_tenant() {
    let table = sample_table();
    let eu = table.region("eu-west").unwrap();
    let req = RouteRequest {
        host: Some("internal-lb.svc.cluster.local"),
        method: "POST",
        trusted_tenant: Some("t-0002"),
    };
    let d = table.resolve(&req, eu).unwrap();
    assert_eq!(d.tenant.slug(), "initech");
    assert_eq!(d.matched_by, MatchedBy::TrustedHeader);

    let no_host = RouteRequest {
        host: None,
        method: "GET",
        trusted_tenant: Some("t-0003"),
    };
    assert_eq!(tenant_at(&table, "eu-west", no_host).unwrap(), "t-0003");
    let unknown = RouteRequest {
        host: None,
        method: "GET",
        trusted_tenant: Some("t-nope"),
    };
    assert_eq!(
        tenant_at(&table, "eu-west", unknown),
        Err(RouteError::UnknownTenant)
    );
}

#[test]
fn unknown_hosts_and_deeper_subdomains_are_404() {
    let table = sample_table();
    for host in [
        "nobody.app.example.test",
        "app.example.test",
        "x.acme.app.example.test",
        "acme.app.example.test.evil.example",
        "acmeapp.example.test",
        "localhost",
    ] {
        let err = tenant_at(&table, "eu-west", get(host)).unwrap_err();
        assert_eq!(err, RouteError::UnknownHost, "{host}");
        assert_eq!(err.status(), 404);
    }
    let no_host = RouteRequest {
        host: None,
        method: "GET",
        trusted_tenant: None,
    };
    assert_eq!(
        tenant_at(&table, "eu-west", no_host),
        Err(RouteError::UnknownTenant)
    );
}

#[test]
fn malformed_hosts_are_400() {
    let table = sample_table();
    for (host, expected) in [
        ("10.0.0.1", HostError::IpLiteral),
        ("[::1]:443", HostError::IpLiteral),
        ("acme.app.example.test:99999", HostError::InvalidPort),
        ("acme..app.example.test", HostError::EmptyLabel),
        ("ac me.app.example.test", HostError::InvalidCharacter),
    ] {
        let err = tenant_at(&table, "eu-west", get(host)).unwrap_err();
        assert_eq!(err, RouteError::MalformedHost(expected), "{host}");
        assert_eq!(err.status(), 400);
    }
    let long = format!("{}.app.example.test", "a".repeat(300));
    let err = tenant_at(&table, "eu-west", get(&long)).unwrap_err();
    assert_eq!(err.status(), 400);
}

#[test]
fn suspended_tenant_is_403_and_deleted_tenant_is_404() {
    let table = sample_table();
    let err = tenant_at(&table, "eu-west", get("cyberdyne.app.example.test")).unwrap_err();
    assert!(matches!(err, RouteError::Suspended { .. }));
    assert_eq!(err.status(), 403);
    // Deleted: its slug is not indexed at all.
    assert_eq!(
        tenant_at(&table, "us-east", get("oscorp.app.example.test")),
        Err(RouteError::UnknownHost)
    );
    // ... and naming it by id through a trusted proxy is no better.
    let by_id = RouteRequest {
        host: None,
        method: "GET",
        trusted_tenant: Some("t-0011"),
    };
    assert_eq!(
        tenant_at(&table, "us-east", by_id),
        Err(RouteError::UnknownTenant)
    );
}

#[test]
fn moving_tenant_is_still_served() {
    let table = sample_table();
    let eu = table.region("eu-west").unwrap();
    let d = table.resolve(&get("tyrell.app.example.test"), eu).unwrap();
    assert_eq!(d.tenant.status(), TenantStatus::Moving);
}

#[test]
fn offline_target_is_503() {
    let mut s = sample();
    s.targets[0].status = router::TargetStatus::Offline;
    let table = RoutingTable::build(&s, &options()).unwrap();
    let err = tenant_at(&table, "eu-west", get("acme.app.example.test")).unwrap_err();
    assert!(matches!(err, RouteError::TargetOffline { .. }));
    assert_eq!(err.status(), 503);
}

#[test]
fn home_region_gateway_always_uses_the_home_pool() {
    let table = sample_table();
    let eu = table.region("eu-west").unwrap();
    for method in ["GET", "POST", "DELETE"] {
        let req = RouteRequest {
            host: Some("acme.app.example.test"),
            method,
            trusted_tenant: None,
        };
        let d = table.resolve(&req, eu).unwrap();
        assert_eq!(d.pool.region.as_str(), "eu-west");
        assert_eq!(d.locality, Locality::Local);
    }
}

#[test]
fn safe_methods_use_a_local_pool_in_another_region() {
    let table = sample_table();
    let us = table.region("us-east").unwrap();
    for method in ["GET", "HEAD", "OPTIONS"] {
        let req = RouteRequest {
            host: Some("acme.app.example.test"),
            method,
            trusted_tenant: None,
        };
        let d = table.resolve(&req, us).unwrap();
        assert_eq!(d.pool.region.as_str(), "us-east", "{method}");
        assert_eq!(d.locality, Locality::Local);
        assert_eq!(&*d.pool.backends[0].addr, "127.0.0.1:9201");
    }
}

#[test]
fn unsafe_methods_cross_to_the_home_region() {
    let table = sample_table();
    let us = table.region("us-east").unwrap();
    for method in ["POST", "PUT", "PATCH", "DELETE", "get"] {
        let req = RouteRequest {
            host: Some("acme.app.example.test"),
            method,
            trusted_tenant: None,
        };
        let d = table.resolve(&req, us).unwrap();
        assert_eq!(d.pool.region.as_str(), "eu-west", "{method}");
        assert_eq!(d.locality, Locality::CrossRegion);
    }
}

#[test]
fn targets_without_a_local_pool_cross_even_for_reads() {
    let table = sample_table();
    let us = table.region("us-east").unwrap();
    let d = table.resolve(&get("erp.globex.example"), us).unwrap();
    assert_eq!(d.pool.region.as_str(), "eu-west");
    assert_eq!(d.locality, Locality::CrossRegion);
}

#[test]
fn sni_and_host_can_be_compared_by_tenant() {
    let table = sample_table();
    let by_sni = table.tenant_for_host("erp.acme.example").unwrap().unwrap();
    let by_host = table
        .tenant_for_host("acme.app.example.test")
        .unwrap()
        .unwrap();
    assert_eq!(by_sni.index(), by_host.index());
    let other = table
        .tenant_for_host("initech.app.example.test")
        .unwrap()
        .unwrap();
    assert_ne!(by_sni.index(), other.index());
    assert!(table.tenant_for_host("nobody.example").unwrap().is_none());
    assert!(table.tenant_for_host("1.2.3.4").is_err());
}

#[test]
fn explain_says_why_a_read_is_served_locally() {
    let table = sample_table();
    let us = table.region("us-east").unwrap();
    let e = table.explain(&get("ACME.app.example.test:443"), us);
    assert!(e.routed);
    assert_eq!(e.normalized_host.as_deref(), Some("acme.app.example.test"));
    assert_eq!(e.matched_by, Some(MatchedBy::Subdomain));
    assert_eq!(e.tenant.as_ref().unwrap().id, "t-0001");
    assert_eq!(e.pool_region.as_deref(), Some("us-east"));
    assert_eq!(e.locality, Some(Locality::Local));
    assert_eq!(e.backends, ["127.0.0.1:9201"]);
    let steps = e.steps.join("\n");
    assert!(
        steps.contains("is under base domain app.example.test"),
        "{steps}"
    );
    assert!(
        steps.contains("\"acme\" is a tenant slug under base domain app.example.test"),
        "{steps}"
    );
    assert!(
        steps.contains("GET is a safe method and the target has a pool in us-east: local pool"),
        "{steps}"
    );
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["locality"], "local");
    assert_eq!(json["matched_by"], "subdomain");
}

#[test]
fn explain_says_why_a_request_is_refused() {
    let table = sample_table();
    let eu = table.region("eu-west").unwrap();
    let e = table.explain(&get("cyberdyne.app.example.test"), eu);
    assert!(!e.routed);
    assert_eq!(e.status, Some(403));
    assert_eq!(e.error, Some("suspended"));
    assert_eq!(e.tenant.as_ref().unwrap().slug, "cyberdyne");
    assert!(
        e.steps.iter().any(|s| s == "tenant is suspended"),
        "{:?}",
        e.steps
    );

    let e = table.explain(&get("bad host"), eu);
    assert_eq!(e.status, Some(400));
    assert!(e.steps[0].starts_with("host is malformed"), "{:?}", e.steps);

    let us = table.region("us-east").unwrap();
    let post = RouteRequest {
        host: Some("acme.app.example.test"),
        method: "POST",
        trusted_tenant: None,
    };
    let e = table.explain(&post, us);
    assert!(
        e.steps
            .iter()
            .any(|s| s == "POST is not a safe method: cross-region to the home pool in eu-west"),
        "{:?}",
        e.steps
    );
}

#[test]
fn stored_placement_is_the_truth_when_a_shard_is_added() {
    let before = sample_table();
    let mut s = sample();
    let mut new_shard = s.targets[0].clone();
    new_shard.id = "shard-eu-3".into();
    new_shard.weight = 1000;
    s.targets.insert(0, new_shard);
    let after = RoutingTable::build(&s, &options()).unwrap();
    for t in before.tenants() {
        let moved = after.tenant_by_id(t.id()).unwrap();
        assert_eq!(
            t.target().id,
            moved.target().id,
            "tenant {} was re-homed",
            t.id()
        );
    }
}
