//! Provisioning tenants onto shards and dedicated clusters, and resuming
//! it when a database was unreachable.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::PgCluster;

use http::Method;

use crate::support::{Admin, ShardSpec, connect, count, eventually};
use crate::{catalog_tables_holding, snapshot_tenant, snapshot_tenants, tenant, tenant_with_id};

#[tokio::test]
async fn tenants_are_provisioned_onto_shards_of_their_region_and_routed() {
    let clusters = PgCluster::start_many(3).unwrap();
    let admin = Admin::start();
    let db = admin.catalog().await;
    let op = admin.token();
    admin.add_region("eu-west").await;
    admin.add_region("us-east").await;
    admin.add_plan("starter").await;
    let password = "pw-Zq8vN3-never-stored";
    let a = admin
        .add_shard(&ShardSpec::new("shard-a", "eu-west", &clusters[0]))
        .await;
    let b = admin
        .add_shard(&ShardSpec::new("shard-b", "eu-west", &clusters[1]).password(password))
        .await;
    let c = admin
        .add_shard(
            &ShardSpec::new("shard-c", "us-east", &clusters[2])
                .pool("us-east", "10.2.0.1:8080")
                .pool("eu-west", "10.1.0.1:8080"),
        )
        .await;
    let shards = [&a, &b, &c];

    // The password is sealed, never shown, never stored in the clear.
    assert_eq!(b.target["has_password"], json!(true));
    assert_eq!(a.target["has_password"], json!(false));
    let shown = admin.get("/v1/shards/shard-b", op).await.expect_status(200);
    assert_eq!(shown.json["has_password"], json!(true));
    assert_eq!(
        shown.json["dsn"],
        json!(format!(
            "postgres://postgres@127.0.0.1:{}/shard_b",
            clusters[1].port()
        ))
    );
    let listed = admin.get("/v1/shards", op).await.expect_status(200);
    for text in [shown.text(), listed.text(), b.target.to_string()] {
        assert!(
            !text.contains(password),
            "the API shows the password: {text}"
        );
    }
    let (dsn, sealed): (String, Vec<u8>) =
        sqlx::query_as("SELECT dsn, dsn_password_enc FROM targets WHERE id = 'shard-b'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(!dsn.contains(password));
    assert!(
        !sealed
            .windows(password.len())
            .any(|w| w == password.as_bytes())
    );
    assert!(
        sealed.len() > password.len(),
        "nonce and tag are stored with it"
    );
    assert!(catalog_tables_holding(&db, password).await.is_empty());

    // Placed by the ring on a shard of the tenant's region, active, and
    // present in that shard's database only.
    let mut placed: BTreeMap<String, String> = BTreeMap::new();
    for i in 1..=12 {
        let region = if i % 3 == 0 { "us-east" } else { "eu-west" };
        let id = format!("t-{i:02}");
        let t = admin
            .create_tenant(&tenant_with_id(
                &id,
                &format!("company-{i:02}"),
                "starter",
                region,
            ))
            .await;
        assert_eq!(t["status"], "active", "{t}");
        assert_eq!(t["placement"], "shard");
        assert!(t["job"].is_null(), "{t}");
        let target = t["target"].as_str().unwrap().to_owned();
        let expected: &[&str] = if region == "eu-west" {
            &["shard-a", "shard-b"]
        } else {
            &["shard-c"]
        };
        assert!(
            expected.contains(&target.as_str()),
            "{id} in {region} on {target}"
        );
        placed.insert(id, target);
    }
    let on_a = placed.values().filter(|t| *t == "shard-a").count();
    let on_b = placed.values().filter(|t| *t == "shard-b").count();
    assert!(
        on_a > 0 && on_b > 0,
        "the ring used one shard only: {placed:?}"
    );
    // Tenants without an id get one.
    let generated = admin
        .create_tenant(&tenant("company-13", "starter", "us-east"))
        .await;
    let generated_id = generated["id"].as_str().unwrap().to_owned();
    assert!(generated_id.starts_with("tn_"), "{generated}");
    placed.insert(generated_id, "shard-c".to_owned());
    // An explicit shard is honoured.
    for i in 14..=16 {
        let id = format!("t-{i:02}");
        let mut body = tenant_with_id(&id, &format!("company-{i:02}"), "starter", "eu-west");
        body["placement"] = json!({"kind": "shared", "shard": "shard-b"});
        let t = admin.create_tenant(&body).await;
        assert_eq!(t["target"], "shard-b");
        placed.insert(id, "shard-b".to_owned());
    }
    // A draining shard takes no new tenant, by the ring or by name.
    let drained = admin
        .patch("/v1/shards/shard-b", op, &json!({"status": "draining"}))
        .await
        .expect_status(200);
    assert_eq!(drained.json["status"], "draining");
    assert_eq!(
        drained.json["has_password"],
        json!(true),
        "a PATCH keeps the password"
    );
    for i in 17..=22 {
        let id = format!("t-{i:02}");
        let t = admin
            .create_tenant(&tenant_with_id(
                &id,
                &format!("company-{i:02}"),
                "starter",
                "eu-west",
            ))
            .await;
        assert_eq!(t["target"], "shard-a", "placed on a draining shard: {t}");
        placed.insert(id, "shard-a".to_owned());
    }
    let mut body = tenant("company-23", "starter", "eu-west");
    body["placement"] = json!({"kind": "shared", "shard": "shard-b"});
    admin
        .post("/v1/tenants", op, &body)
        .await
        .expect_problem(422, Some("placement.shard"));
    // The only active shard drained too: nowhere to go.
    admin
        .patch("/v1/shards/shard-c", op, &json!({"status": "draining"}))
        .await
        .expect_status(200);
    admin
        .post(
            "/v1/tenants",
            op,
            &tenant("company-24", "starter", "us-east"),
        )
        .await
        .expect_problem(409, Some("region"));

    // Each tenant's row is in its shard's database and in no other.
    for shard in shards {
        let expected: Vec<String> = placed
            .iter()
            .filter(|(_, t)| **t == shard.id)
            .map(|(id, _)| id.clone())
            .collect();
        assert_eq!(
            shard.tenant_ids().await,
            expected,
            "tenants in {}",
            shard.id
        );
    }
    let shard_b = admin.get("/v1/shards/shard-b", op).await.expect_status(200);
    assert_eq!(shard_b.json["tenants"], json!(on_b + 3));

    // The routing snapshot lists exactly the active tenants, on their targets.
    let snapshot = admin.snapshot().await;
    let expected: BTreeSet<_> = placed
        .iter()
        .map(|(id, t)| {
            (
                id.clone(),
                t.clone(),
                "active".to_owned(),
                "starter".to_owned(),
            )
        })
        .collect();
    assert_eq!(snapshot_tenants(&snapshot), expected);
    let targets: BTreeMap<&str, &Value> = snapshot["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t))
        .collect();
    assert_eq!(
        targets.keys().copied().collect::<Vec<_>>(),
        ["shard-a", "shard-b", "shard-c"]
    );
    assert_eq!(targets["shard-b"]["status"], "draining");
    assert_eq!(targets["shard-a"]["kind"], "shard");
    assert_eq!(
        targets["shard-c"]["pools"]["eu-west"],
        json!(["10.1.0.1:8080"])
    );
    assert_eq!(
        targets["shard-c"]["pools"]["us-east"],
        json!(["10.2.0.1:8080"])
    );
    assert_eq!(
        targets["shard-a"]["pools"],
        json!({"eu-west": ["127.0.0.1:9"]})
    );
    assert!(!snapshot.to_string().contains(password));
    assert!(
        !snapshot.to_string().contains("postgres://"),
        "the snapshot carries DSNs"
    );
    let listed = admin
        .get("/v1/tenants?target=shard-a&status=active&limit=500", op)
        .await
        .expect_status(200);
    assert_eq!(
        listed.json["items"].as_array().unwrap().len(),
        placed.values().filter(|t| *t == "shard-a").count()
    );
}

#[tokio::test]
async fn dedicated_tenants_get_a_database_of_their_own() {
    let server = PgCluster::start().unwrap();
    let admin = Admin::start();
    let db = admin.catalog().await;
    let op = admin.token();
    admin.add_region("eu-west").await;
    admin.add_plan("enterprise").await;

    let admin_password = "adm1n-Pw-9f3k";
    let registered = admin
        .post(
            "/v1/cluster-servers",
            op,
            &json!({"id": "pg-eu-1", "region": "eu-west",
                    "admin_dsn": format!("postgres://postgres:{admin_password}@127.0.0.1:{}/postgres", server.port())}),
        )
        .await
        .expect_status(201);
    assert_eq!(
        registered.json["admin_dsn"],
        json!(format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            server.port()
        ))
    );
    admin
        .post(
            "/v1/cluster-servers",
            op,
            &json!({"id": "pg-eu-1", "region": "eu-west", "admin_dsn": server.url()}),
        )
        .await
        .expect_problem(409, Some("id"));

    // A new database on the cluster server, migrated, holding the tenant.
    let mut body = tenant_with_id("t-globex", "globex-corp", "enterprise", "eu-west");
    body["placement"] = json!({"kind": "dedicated", "server": "pg-eu-1",
                               "pools": {"eu-west": ["127.0.0.1:9999"]}});
    let t = admin.create_tenant(&body).await;
    assert_eq!(t["status"], "active");
    assert_eq!(t["target"], "ded-globex-corp");
    assert_eq!(t["placement"], "dedicated");
    let exists = server
        .execute(
            "postgres",
            "SELECT datname FROM pg_database WHERE datname = 't_globex_corp'",
        )
        .unwrap();
    assert_eq!(exists.trim(), "t_globex_corp");
    let dedicated = connect(&server.database_url("t_globex_corp")).await;
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT tenant_id, slug FROM tenants")
        .fetch_all(&dedicated)
        .await
        .unwrap();
    assert_eq!(rows, [("t-globex".to_owned(), "globex-corp".to_owned())]);
    let migrated: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&dedicated)
            .await
            .unwrap();
    let all: Vec<i64> = tenant_admin::migrations::Schema::Tenant
        .migrations()
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    assert_eq!(migrated, all);
    let products: i64 = sqlx::query_scalar("SELECT count(*) FROM products")
        .fetch_one(&dedicated)
        .await
        .unwrap();
    assert_eq!(products, 0, "the application schema is there");
    dedicated.close().await;
    let cluster = admin
        .get("/v1/clusters/ded-globex-corp", op)
        .await
        .expect_status(200);
    assert_eq!(cluster.json["kind"], "dedicated");
    assert_eq!(
        cluster.json["has_password"],
        json!(true),
        "the admin password went with it"
    );
    assert!(!cluster.text().contains(admin_password));
    assert!(catalog_tables_holding(&db, admin_password).await.is_empty());

    // A registered, existing dedicated cluster.
    let existing = server.create_database("initech_prod").unwrap();
    admin
        .post(
            "/v1/clusters",
            op,
            &json!({"id": "ded-initech", "region": "eu-west", "dsn": existing,
                    "pools": {"eu-west": ["10.2.0.1:8080", {"addr": "10.2.0.2:8080", "weight": 3}]}}),
        )
        .await
        .expect_status(201);
    let mut body = tenant_with_id("t-initech", "initech", "enterprise", "eu-west");
    body["placement"] = json!({"kind": "dedicated", "cluster": "ded-initech"});
    let t = admin.create_tenant(&body).await;
    assert_eq!(t["target"], "ded-initech");
    let initech = connect(&existing).await;
    let ids: Vec<String> = sqlx::query_scalar("SELECT tenant_id FROM tenants")
        .fetch_all(&initech)
        .await
        .unwrap();
    assert_eq!(ids, ["t-initech"]);
    initech.close().await;

    // One tenant per dedicated cluster.
    for cluster in ["ded-initech", "ded-globex-corp"] {
        let mut body = tenant("hooli", "enterprise", "eu-west");
        body["placement"] = json!({"kind": "dedicated", "cluster": cluster});
        admin
            .post("/v1/tenants", op, &body)
            .await
            .expect_problem(409, Some("placement.cluster"));
    }
    // A dedicated cluster is not a shard, and a shard placement cannot name it.
    let mut body = tenant("hooli", "enterprise", "eu-west");
    body["placement"] = json!({"kind": "shared", "shard": "ded-initech"});
    admin
        .post("/v1/tenants", op, &body)
        .await
        .expect_problem(422, Some("placement.shard"));
    // The same slug's cluster already exists.
    let mut body = tenant("globex-corp", "enterprise", "eu-west");
    body["placement"] =
        json!({"kind": "dedicated", "server": "pg-eu-1", "pools": {"eu-west": ["127.0.0.1:9999"]}});
    admin
        .post("/v1/tenants", op, &body)
        .await
        .expect_problem(409, Some("slug"));
    // A slug too long to name a cluster and a database after it.
    let mut body = tenant(&"g".repeat(61), "enterprise", "eu-west");
    body["placement"] =
        json!({"kind": "dedicated", "server": "pg-eu-1", "pools": {"eu-west": ["127.0.0.1:9999"]}});
    let targets_before = count(&db, "targets").await;
    admin
        .post("/v1/tenants", op, &body)
        .await
        .expect_problem(422, Some("slug"));
    assert_eq!(count(&db, "targets").await, targets_before);

    let snapshot = admin.snapshot().await;
    let targets: BTreeMap<&str, &Value> = snapshot["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t))
        .collect();
    assert_eq!(targets["ded-globex-corp"]["kind"], "dedicated");
    assert_eq!(
        targets["ded-globex-corp"]["pools"],
        json!({"eu-west": ["127.0.0.1:9999"]})
    );
    assert_eq!(
        targets["ded-initech"]["pools"],
        json!({"eu-west": ["10.2.0.1:8080", {"addr": "10.2.0.2:8080", "weight": 3}]})
    );
    assert_eq!(
        snapshot_tenants(&snapshot),
        BTreeSet::from([
            (
                "t-globex".into(),
                "ded-globex-corp".into(),
                "active".into(),
                "enterprise".into()
            ),
            (
                "t-initech".into(),
                "ded-initech".into(),
                "active".into(),
                "enterprise".into()
            ),
        ])
    );
}

#[tokio::test]
async fn provisioning_onto_an_unreachable_shard_resumes_when_it_returns() {
    let mut clusters = PgCluster::start_many(2).unwrap();
    let admin = Admin::start();
    let op = admin.token();
    let seeded = admin.seed("eu-west", "starter", &clusters).await;
    // Something on shard-2 first, so its schema exists before the outage.
    let mut body = tenant_with_id("t-early", "early", "starter", "eu-west");
    body["placement"] = json!({"kind": "shared", "shard": "shard-2"});
    admin.create_tenant(&body).await;
    let version = admin.snapshot_version().await;

    // The shard hangs (its postmaster stopped with SIGSTOP): connecting
    // takes tenant-admin's whole connect timeout, so the first request is
    // still running when the second arrives.
    signal(clusters[1].pid(), "-STOP");
    let mut late = tenant_with_id("t-late", "late", "starter", "eu-west");
    late["placement"] = json!({"kind": "shared", "shard": "shard-2"});
    // Sent under an Idempotency-Key; the same key while it runs is a 409.
    let first = {
        let client = admin.client();
        let late = late.clone();
        let op = op.to_owned();
        tokio::spawn(async move {
            client
                .request(Method::POST, "/v1/tenants")
                .bearer(&op)
                .header("idempotency-key", "late-1")
                .json(&late)
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    admin
        .post_idempotent("/v1/tenants", op, "late-1", &late)
        .await
        .expect_problem(409, None);
    let accepted = first.await.unwrap().expect_status(202);
    // From here on the shard is simply down.
    signal(clusters[1].pid(), "-CONT");
    clusters[1].stop();
    assert_eq!(accepted.json["status"], "provisioning");
    assert_eq!(accepted.json["target"], "shard-2", "the placement is kept");
    assert_eq!(accepted.header("location"), Some("/v1/tenants/t-late"));
    let job = accepted.json["job"].as_i64().expect("a job");

    // Not routed while provisioning; the snapshot did not move.
    let snapshot = admin.snapshot().await;
    assert!(snapshot_tenant(&snapshot, "t-late").is_none());
    assert_eq!(snapshot["version"], json!(version));
    let progress = admin
        .get(&format!("/v1/jobs/{job}"), op)
        .await
        .expect_status(200);
    assert_eq!(progress.json["kind"], "provision_tenant");
    assert!(
        matches!(
            progress.json["state"].as_str(),
            Some("failed" | "pending" | "running")
        ),
        "{}",
        progress.text()
    );
    let error = progress.json["error"].as_str().expect("an error");
    assert!(error.contains("cannot reach"), "{error}");
    assert!(!error.contains("password"), "{error}");
    // Gateways never hear of it; the region still takes other tenants.
    let other = admin
        .create_tenant(&{
            let mut b = tenant_with_id("t-other", "other", "starter", "eu-west");
            b["placement"] = json!({"kind": "shared", "shard": "shard-1"});
            b
        })
        .await;
    assert_eq!(other["status"], "active");

    // The same request again resumes it rather than conflicting.
    let again = admin
        .post("/v1/tenants", op, &late)
        .await
        .expect_status(202);
    assert_eq!(again.json["id"], "t-late");
    assert_eq!(again.json["job"], json!(job));
    // A request without an id for the same tenant resumes it too.
    let mut same = tenant("late", "starter", "eu-west");
    same["placement"] = json!({"kind": "shared", "shard": "shard-2"});
    let again = admin
        .post("/v1/tenants", op, &same)
        .await
        .expect_status(202);
    assert_eq!(again.json["id"], "t-late");
    // Another request for the slug is still a conflict.
    let mut other_plan = same.clone();
    other_plan["plan"] = json!("gold");
    admin
        .post("/v1/tenants", op, &other_plan)
        .await
        .expect_problem(409, Some("slug"));
    assert!(
        seeded
            .shard("shard-1")
            .tenant_ids()
            .await
            .iter()
            .all(|t| t != "t-late")
    );

    clusters[1].start_again().unwrap();
    let t = eventually(
        "t-late to become active",
        Duration::from_secs(40),
        || async {
            let t = admin.get("/v1/tenants/t-late", op).await.expect_status(200);
            (t.json["status"] == "active").then_some(t.json)
        },
    )
    .await;
    assert!(t["job"].is_null());
    let snapshot = admin.snapshot().await;
    let routed = snapshot_tenant(&snapshot, "t-late").expect("t-late routed");
    assert_eq!(routed["target"], "shard-2");
    assert!(snapshot["version"].as_u64().unwrap() > version);
    assert_eq!(
        seeded.shard("shard-2").tenant_ids().await,
        ["t-early", "t-late"]
    );
    let done = admin
        .get(&format!("/v1/jobs/{job}"), op)
        .await
        .expect_status(200);
    assert_eq!(done.json["state"], "succeeded");
    assert!(done.json["attempts"].as_i64().unwrap() >= 2);
    // Provisioned once: the same POST now conflicts.
    admin
        .post("/v1/tenants", op, &late)
        .await
        .expect_problem(409, Some("id"));
}

/// Sends `sig` (e.g. `-STOP`) to process `pid`.
fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig} {pid} failed");
}
