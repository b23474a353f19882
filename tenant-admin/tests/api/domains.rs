//! Custom domains through the API without a CA: claiming a name, the
//! proofs asked for, the rules a name must pass (each refusal names the
//! field and writes nothing), removal, and what gateways are told.

use serde_json::{Value, json};

use crate::support::{Admin, ShardSpec};
use crate::written;

/// tenant-admin with the platform's base domain and a deny list, two
/// tenants on one shard, and a plan allowing two custom domains.
async fn two_tenants() -> Admin {
    let admin = Admin::builder()
        .env("BASE_DOMAINS", "app.example.test,example.net")
        .env("DOMAIN_DENY", "forbidden.example")
        .start();
    let host = admin.catalog_cluster().expect("the catalog's own cluster");
    admin.add_region("eu-west").await;
    admin
        .post(
            "/v1/plans",
            admin.token(),
            &json!({"name": "starter", "rate_per_sec": 100, "burst": 50,
                    "max_body_bytes": 65536, "max_domains": 2}),
        )
        .await
        .expect_status(201);
    admin
        .add_shard(&ShardSpec::new("shard-1", "eu-west", host))
        .await;
    for (id, slug) in [("t-acme", "acme"), ("t-globex", "globex")] {
        admin
            .create_tenant(&json!({"id": id, "slug": slug, "plan": "starter", "region": "eu-west"}))
            .await;
    }
    admin
}

async fn domains_written(admin: &Admin) -> (std::collections::BTreeMap<&'static str, i64>, i64) {
    let db = admin.catalog().await;
    (
        written(&db).await,
        crate::support::count(&db, "domains").await,
    )
}

#[tokio::test]
async fn a_domain_is_claimed_normalised_with_both_proofs_and_not_routed_until_verified() {
    let admin = two_tenants().await;
    let op = admin.token();
    let added = admin
        .post(
            "/v1/tenants/t-acme/domains",
            op,
            &json!({"hostname": "ERP.Customer.Example."}),
        )
        .await
        .expect_status(201);
    assert_eq!(
        added.header("location"),
        Some("/v1/tenants/t-acme/domains/erp.customer.example")
    );
    let d = &added.json;
    assert_eq!(d["hostname"], "erp.customer.example");
    assert_eq!(d["tenant"], "t-acme");
    assert_eq!(d["state"], "pending_verification");
    let token = d["verification"]["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 32, "{token}");
    assert_eq!(
        d["verification"]["dns"],
        json!({"type": "TXT", "name": "_switchyard-challenge.erp.customer.example", "value": token})
    );
    assert_eq!(
        d["verification"]["http"]["url"],
        format!("http://erp.customer.example/.well-known/switchyard-challenge/{token}")
    );
    assert_eq!(d["certificate"], Value::Null);

    // Unicode names are stored in punycode, found again by either form.
    admin
        .post(
            "/v1/tenants/t-acme/domains",
            op,
            &json!({"hostname": "bücher.example"}),
        )
        .await
        .expect_status(201);
    let found = admin
        .get("/v1/tenants/t-acme/domains/xn--bcher-kva.example", op)
        .await
        .expect_status(200);
    assert_eq!(found.json["hostname"], "xn--bcher-kva.example");

    // Not routed yet, but gateways answer its HTTP proof.
    let snapshot = admin.snapshot().await;
    let acme = snapshot["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "t-acme")
        .unwrap();
    assert_eq!(acme["domains"], json!([]));
    assert!(
        snapshot["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "ownership"
                && c["hostname"] == "erp.customer.example"
                && c["token"] == token.as_str()),
        "{snapshot}"
    );

    let listed = admin
        .get("/v1/tenants/t-acme/domains", op)
        .await
        .expect_status(200);
    let names: Vec<&str> = listed.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["hostname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["erp.customer.example", "xn--bcher-kva.example"]);

    // Removed: gone from the list and the proofs; the name may be claimed again.
    let removed = admin
        .delete("/v1/tenants/t-acme/domains/erp.customer.example", op)
        .await
        .expect_status(200);
    assert_eq!(removed.json["state"], "removed");
    assert!(removed.json["removed_at"].is_string());
    admin
        .get("/v1/tenants/t-acme/domains/erp.customer.example", op)
        .await
        .expect_problem(404, None);
    let snapshot = admin.snapshot().await;
    assert!(!snapshot.to_string().contains(&token), "{snapshot}");
    admin
        .post(
            "/v1/tenants/t-globex/domains",
            op,
            &json!({"hostname": "erp.customer.example"}),
        )
        .await
        .expect_status(201);
    let audit = admin
        .get(
            "/v1/audit?resource=/v1/tenants/t-acme/domains/erp.customer.example",
            op,
        )
        .await
        .expect_status(200);
    let actions: Vec<&str> = audit.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"domain.add") && actions.contains(&"domain.remove"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn names_that_may_not_be_claimed_are_refused_naming_the_field_and_nothing_is_written() {
    let admin = two_tenants().await;
    let op = admin.token();
    admin
        .post(
            "/v1/tenants/t-acme/domains",
            op,
            &json!({"hostname": "erp.customer.example"}),
        )
        .await
        .expect_status(201);
    let (_, viewer) = admin.create_token("auditor", "viewer").await;
    let before = domains_written(&admin).await;

    let long_label = format!("{}.example", "a".repeat(64));
    let too_long = format!("{}example", "abcdefghi.".repeat(26));
    let cases: Vec<(&str, Value, u16, Option<&str>, &str)> = vec![
        // Another tenant's name: refused without saying whose it is.
        (
            "t-globex",
            json!({"hostname": "erp.customer.example"}),
            409,
            Some("hostname"),
            "another tenant",
        ),
        (
            "t-globex",
            json!({"hostname": "ERP.customer.example."}),
            409,
            Some("hostname"),
            "another tenant",
        ),
        // Already this tenant's.
        (
            "t-acme",
            json!({"hostname": "erp.customer.example"}),
            409,
            Some("hostname"),
            "already has",
        ),
        (
            "t-acme",
            json!({"hostname": "shop.app.example.test"}),
            422,
            Some("hostname"),
            "platform",
        ),
        (
            "t-acme",
            json!({"hostname": "app.example.test"}),
            422,
            Some("hostname"),
            "platform",
        ),
        (
            "t-acme",
            json!({"hostname": "www.example.net"}),
            422,
            Some("hostname"),
            "platform",
        ),
        (
            "t-acme",
            json!({"hostname": "a.forbidden.example"}),
            422,
            Some("hostname"),
            "cannot be claimed",
        ),
        (
            "t-acme",
            json!({"hostname": "printer.local"}),
            422,
            Some("hostname"),
            "cannot be claimed",
        ),
        (
            "t-acme",
            json!({"hostname": "localhost"}),
            422,
            Some("hostname"),
            "single label",
        ),
        (
            "t-acme",
            json!({"hostname": "intranet"}),
            422,
            Some("hostname"),
            "single label",
        ),
        (
            "t-acme",
            json!({"hostname": "10.0.0.1"}),
            422,
            Some("hostname"),
            "IP address",
        ),
        (
            "t-acme",
            json!({"hostname": "[::1]"}),
            422,
            Some("hostname"),
            "",
        ),
        (
            "t-acme",
            json!({"hostname": "erp.customer.example:443"}),
            422,
            Some("hostname"),
            "port",
        ),
        (
            "t-acme",
            json!({"hostname": "https://erp.customer.example/"}),
            422,
            Some("hostname"),
            "scheme",
        ),
        (
            "t-acme",
            json!({"hostname": "*.customer.example"}),
            422,
            Some("hostname"),
            "",
        ),
        (
            "t-acme",
            json!({"hostname": long_label}),
            422,
            Some("hostname"),
            "63",
        ),
        (
            "t-acme",
            json!({"hostname": too_long}),
            422,
            Some("hostname"),
            "253",
        ),
        (
            "t-acme",
            json!({"hostname": ""}),
            422,
            Some("hostname"),
            "empty",
        ),
        ("t-acme", json!({"hostname": 42}), 422, Some("hostname"), ""),
        ("t-acme", json!({}), 422, Some("hostname"), ""),
        (
            "t-acme",
            json!({"hostname": "a.example", "tls": true}),
            422,
            Some("tls"),
            "",
        ),
        (
            "t-nobody",
            json!({"hostname": "a.example"}),
            404,
            None,
            "t-nobody",
        ),
    ];
    for (tenant, body, status, field, says) in cases {
        let reply = admin
            .post(&format!("/v1/tenants/{tenant}/domains"), op, &body)
            .await
            .expect_problem(status, field);
        let detail = reply.json["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{body}: {detail}");
        assert!(
            tenant == "t-acme" || !detail.contains("t-acme"),
            "{body}: the owner is revealed: {detail}"
        );
    }
    // Not JSON, and too big.
    admin
        .request(http::Method::POST, "/v1/tenants/t-acme/domains")
        .bearer(op)
        .body("application/json", "{\"hostname\": ")
        .send()
        .await
        .expect_problem(400, None);
    admin
        .request(http::Method::POST, "/v1/tenants/t-acme/domains")
        .bearer(op)
        .body(
            "application/json",
            format!("{{\"hostname\": \"{}\"}}", "a".repeat(2 << 20)),
        )
        .send()
        .await
        .expect_problem(413, None);
    // A viewer may look, not claim.
    admin
        .post(
            "/v1/tenants/t-acme/domains",
            &viewer,
            &json!({"hostname": "b.example"}),
        )
        .await
        .expect_problem(403, None);
    assert_eq!(domains_written(&admin).await, before);

    // The plan allows two: the second fits, the third is refused.
    admin
        .post(
            "/v1/tenants/t-acme/domains",
            op,
            &json!({"hostname": "shop.customer.example"}),
        )
        .await
        .expect_status(201);
    let capped = admin
        .post(
            "/v1/tenants/t-acme/domains",
            op,
            &json!({"hostname": "docs.customer.example"}),
        )
        .await
        .expect_problem(409, Some("hostname"));
    assert!(
        capped.json["detail"].as_str().unwrap().contains("allows 2"),
        "{}",
        capped.text()
    );
}

#[tokio::test]
async fn certificate_keys_go_to_the_gateway_role_only() {
    let admin = two_tenants().await;
    let (_, viewer) = admin.create_token("auditor", "viewer").await;
    let (_, gateway) = admin.create_token("edge", "gateway").await;
    for token in [admin.token(), viewer.as_str()] {
        admin
            .get("/v1/routing/certificates?ids=1", token)
            .await
            .expect_problem(403, None);
    }
    // The gateway role reads the feed and its certificates, nothing else.
    admin
        .get("/v1/routing/certificates?ids=1,2", &gateway)
        .await
        .expect_status(200);
    admin
        .get("/v1/tenants/t-acme/domains", &gateway)
        .await
        .expect_problem(403, None);
    for bad in ["", "?ids=", "?ids=abc", "?ids=0", "?ids=-1"] {
        admin
            .get(&format!("/v1/routing/certificates{bad}"), &gateway)
            .await
            .expect_problem(400, Some("ids"));
    }
    let many: Vec<String> = (1..=101).map(|n| n.to_string()).collect();
    admin
        .get(
            &format!("/v1/routing/certificates?ids={}", many.join(",")),
            &gateway,
        )
        .await
        .expect_problem(400, Some("ids"));
}

#[tokio::test]
async fn without_the_platforms_base_domains_no_custom_domain_is_accepted() {
    // A tenant could otherwise claim a platform name (another tenant's
    // `{slug}.{base}`), which gateways would refuse in every snapshot.
    let admin = Admin::start();
    admin.seed_one_tenant("t-acme", "acme").await;
    let refused = admin
        .post(
            "/v1/tenants/t-acme/domains",
            admin.token(),
            &json!({"hostname": "globex.app.example.test"}),
        )
        .await
        .expect_problem(503, None);
    assert!(
        refused.json["detail"]
            .as_str()
            .unwrap()
            .contains("BASE_DOMAINS"),
        "{}",
        refused.text()
    );
    assert_eq!(
        crate::support::count(&admin.catalog().await, "domains").await,
        0
    );
}
