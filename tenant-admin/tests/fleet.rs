//! The tenant schema across a fleet of real PostgreSQL clusters, through the
//! real `tenant-admin migrate tenants` and through the library the REST layer
//! calls: an unreachable shard fails alone, a re-run resumes where the last
//! one stopped, dry runs change nothing, and version skew is visible.

use std::process::{Command, Output};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tenant_admin::fleet::{self, FleetError, FleetOptions, JobState, Outcome, TargetKind};
use tenant_admin::migrations::{self, Schema};
use tenant_admin::secrets::{Dsn, Purpose, SecretsKey};
use testkit::PgCluster;

const KEY: &str = "5f0b3c2a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a";

/// A password sealed into the catalog. Trust authentication ignores it, so
/// connecting proves the round trip, and no message may ever show it.
const PASSWORD: &str = "hunter2-never-shown";

/// What `migrate tenants` prints for `target` applying every tenant migration.
fn applied_all(target: &str) -> String {
    Schema::Tenant
        .migrations()
        .iter()
        .map(|(v, _)| format!("{target}: applied {v:04}\n"))
        .collect()
}

/// What a dry run prints for `target` with every tenant migration pending.
fn would_apply_all(target: &str) -> String {
    Schema::Tenant
        .migrations()
        .iter()
        .map(|(v, d)| format!("{target}: would apply {v:04} {d}\n"))
        .collect()
}

/// The tenant schema's versions, oldest first.
fn all_versions() -> Vec<i64> {
    Schema::Tenant
        .migrations()
        .iter()
        .map(|(v, _)| *v)
        .collect()
}

/// A migrated catalog and shard clusters registered in it as `shard-1`…;
/// every shard's database is `app`. Shards listed in `sealed` have
/// [`PASSWORD`] in their DSN, sealed under [`KEY`].
struct Fleet {
    catalog: PgPool,
    catalog_url: String,
    shards: Vec<PgCluster>,
    _catalog_cluster: PgCluster,
}

impl Fleet {
    async fn start(shards: usize, sealed: &[usize]) -> Self {
        let catalog_cluster = PgCluster::start().unwrap();
        let catalog_url = catalog_cluster.create_database("catalog").unwrap();
        let catalog = PgPoolOptions::new()
            .max_connections(2)
            .connect(&catalog_url)
            .await
            .unwrap();
        migrations::apply(&catalog, Schema::Catalog).await.unwrap();
        sqlx::query("INSERT INTO regions (name) VALUES ('eu-west')")
            .execute(&catalog)
            .await
            .unwrap();
        let key = SecretsKey::parse(KEY).unwrap();
        let shards = PgCluster::start_many(shards).unwrap();
        for (index, shard) in shards.iter().enumerate() {
            let number = index + 1;
            let mut url = shard.create_database("app").unwrap();
            if sealed.contains(&number) {
                url = url.replace("postgres@", &format!("postgres:{PASSWORD}@"));
            }
            let dsn = Dsn::parse(&url).unwrap();
            sqlx::query(
                "INSERT INTO targets (id, kind, region, dsn, dsn_password_enc) \
                 VALUES ($1, 'shard', 'eu-west', $2, $3)",
            )
            .bind(format!("shard-{number}"))
            .bind(&dsn.public)
            .bind(dsn.sealed_password(&key, Purpose::DsnPassword))
            .execute(&catalog)
            .await
            .unwrap();
        }
        Self {
            catalog,
            catalog_url,
            shards,
            _catalog_cluster: catalog_cluster,
        }
    }

    /// Shard `number` (1-based).
    fn shard(&mut self, number: usize) -> &mut PgCluster {
        &mut self.shards[number - 1]
    }

    /// Runs `tenant-admin migrate tenants ARGS` against the catalog.
    fn migrate(&self, args: &[&str], key: Option<&str>) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tenant-admin"));
        command
            .args(["migrate", "tenants"])
            .args(args)
            .env("DATABASE_URL", &self.catalog_url)
            .env_remove("SECRETS_KEY");
        if let Some(key) = key {
            command.env("SECRETS_KEY", key);
        }
        command.output().unwrap()
    }

    /// Whether shard `number`'s database has the tenant schema's tables.
    fn has_tenant_schema(&self, number: usize) -> bool {
        let found = self.shards[number - 1]
            .execute(
                "app",
                "SELECT count(*) FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_name IN ('tenants', 'products', 'invoices')",
            )
            .unwrap();
        found.trim() == "3"
    }

    /// When shard `number`'s migrations were installed, as text.
    fn installed_on(&self, number: usize) -> String {
        self.shards[number - 1]
            .execute(
                "app",
                "SELECT string_agg(version || '@' || installed_on, ',') FROM _sqlx_migrations",
            )
            .unwrap()
            .trim()
            .to_owned()
    }

    async fn job_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&self.catalog)
            .await
            .unwrap()
    }

    /// The latest job: id, state, attempts.
    async fn latest_job(&self) -> (i64, String, i32) {
        sqlx::query_as("SELECT id, state::text, attempts FROM jobs ORDER BY id DESC LIMIT 1")
            .fetch_one(&self.catalog)
            .await
            .unwrap()
    }

    /// A job's targets: id, state, error.
    async fn job_targets(&self, job: i64) -> Vec<(String, String, Option<String>)> {
        sqlx::query_as(
            "SELECT target_id::text, state::text, error FROM job_targets \
             WHERE job_id = $1 ORDER BY target_id",
        )
        .bind(job)
        .fetch_all(&self.catalog)
        .await
        .unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "current_thread")]
async fn an_unreachable_shard_fails_alone_and_a_rerun_finishes_only_it() {
    let mut fleet = Fleet::start(3, &[2, 3]).await;
    fleet.shard(2).stop();

    let first = fleet.migrate(&[], Some(KEY));
    let stdout = text(&first.stdout);
    assert_eq!(
        first.status.code(),
        Some(1),
        "{stdout}{}",
        text(&first.stderr)
    );
    assert!(stdout.starts_with(&applied_all("shard-1")), "{stdout}");
    let lines: Vec<&str> = stdout[applied_all("shard-1").len()..].lines().collect();
    // The server's own reason, not the pool's "timed out".
    assert!(
        lines[0].starts_with("shard-2: failed: cannot connect: ")
            && lines[0].contains("Connection refused"),
        "{stdout}"
    );
    let rest = lines[1..].join("\n");
    assert!(
        rest.starts_with(applied_all("shard-3").trim_end()),
        "{stdout}"
    );
    assert!(
        rest.contains("failed: 3 targets, 2 applied, 0 earlier, 0 up to date, 1 failed"),
        "{stdout}"
    );
    assert!(!stdout.contains(PASSWORD), "{stdout}");
    assert!(fleet.has_tenant_schema(1) && fleet.has_tenant_schema(3));

    let (job, state, attempts) = fleet.latest_job().await;
    assert_eq!((state.as_str(), attempts), ("failed", 1));
    let targets = fleet.job_targets(job).await;
    assert_eq!(targets[0].1, "applied");
    assert_eq!(targets[2].1, "applied");
    let (id, state, error) = &targets[1];
    assert_eq!((id.as_str(), state.as_str()), ("shard-2", "failed"));
    let error = error.as_deref().unwrap();
    assert!(error.contains("cannot connect"), "{error}");
    assert!(!error.contains(PASSWORD), "{error}");
    let installed = (fleet.installed_on(1), fleet.installed_on(3));

    // Back up: the re-run resumes the same job, migrates only shard-2 and
    // leaves the others alone.
    fleet.shard(2).start_again().unwrap();
    let second = fleet.migrate(&[], Some(KEY));
    let stdout = text(&second.stdout);
    assert_eq!(
        second.status.code(),
        Some(0),
        "{stdout}{}",
        text(&second.stderr)
    );
    assert_eq!(
        stdout,
        format!(
            "shard-1: applied by an earlier run, not redone\n\
             {}\
             shard-3: applied by an earlier run, not redone\n\
             migrate tenants: job {job} succeeded: 3 targets, 1 applied, 2 earlier, 0 up to date, 0 failed\n",
            applied_all("shard-2")
        )
    );
    assert!(fleet.has_tenant_schema(2));
    assert_eq!((fleet.installed_on(1), fleet.installed_on(3)), installed);
    assert_eq!(fleet.latest_job().await, (job, "succeeded".into(), 2));
    assert!(
        fleet
            .job_targets(job)
            .await
            .iter()
            .all(|(_, state, error)| state == "applied" && error.is_none())
    );
    let result: serde_json::Value = sqlx::query_scalar("SELECT result FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&fleet.catalog)
        .await
        .unwrap();
    assert_eq!(result["counts"]["earlier"], 2);
    assert_eq!(
        result["targets"][1]["applied"],
        serde_json::json!(all_versions())
    );

    // Finished: the next run is a new job that finds everything up to date.
    let third = fleet.migrate(&["--concurrency", "1"], Some(KEY));
    assert_eq!(third.status.code(), Some(0));
    let stdout = text(&third.stdout);
    let latest = Schema::Tenant.latest();
    assert!(
        stdout.starts_with(&format!("shard-1: up to date at version {latest}\n")),
        "{stdout}"
    );
    assert_eq!(fleet.latest_job().await.0, job + 1);
}

#[tokio::test(flavor = "current_thread")]
async fn dry_run_and_target_choose_and_change_only_what_they_say() {
    let fleet = Fleet::start(2, &[2]).await;

    let dry = fleet.migrate(&["--dry-run"], Some(KEY));
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));
    let (job, state, _) = fleet.latest_job().await;
    assert_eq!(
        text(&dry.stdout),
        format!(
            "{}{}migrate tenants: job {job} succeeded (dry run): 2 targets, 2 would apply, 0 up to date, 0 failed\n",
            would_apply_all("shard-1"),
            would_apply_all("shard-2")
        )
    );
    assert_eq!(state, "succeeded");
    assert!(!fleet.has_tenant_schema(1) && !fleet.has_tenant_schema(2));
    let result: serde_json::Value = sqlx::query_scalar("SELECT result FROM jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&fleet.catalog)
        .await
        .unwrap();
    assert_eq!(
        result["targets"][0]["would_apply"],
        serde_json::json!(
            Schema::Tenant
                .migrations()
                .iter()
                .map(|(v, d)| serde_json::json!({"version": v, "description": d}))
                .collect::<Vec<_>>()
        )
    );

    let one = fleet.migrate(&["--target", "shard-1"], Some(KEY));
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stderr));
    assert!(
        text(&one.stdout).starts_with(&format!("{}migrate tenants: job ", applied_all("shard-1")))
    );
    assert!(fleet.has_tenant_schema(1) && !fleet.has_tenant_schema(2));
    let (job, _, _) = fleet.latest_job().await;
    assert_eq!(fleet.job_targets(job).await.len(), 1);

    let dry = fleet.migrate(&["--dry-run"], Some(KEY));
    let stdout = text(&dry.stdout);
    assert!(
        stdout.starts_with(&format!(
            "shard-1: up to date at version {}\n{}",
            Schema::Tenant.latest(),
            would_apply_all("shard-2")
        )),
        "{stdout}"
    );

    // An unknown target is refused before anything is written.
    let jobs = fleet.job_count().await;
    let unknown = fleet.migrate(&["--target", "shard-1", "--target", "shard-9"], Some(KEY));
    assert_eq!(unknown.status.code(), Some(64));
    let stderr = text(&unknown.stderr);
    assert!(stderr.contains("unknown target: shard-9"), "{stderr}");
    assert_eq!(fleet.job_count().await, jobs);
    let bad = fleet.migrate(&["--concurrency", "0"], Some(KEY));
    assert_eq!(bad.status.code(), Some(64));
    let bad_key = fleet.migrate(&[], Some("not-a-key"));
    assert_eq!(bad_key.status.code(), Some(78));
    assert_eq!(fleet.job_count().await, jobs);

    // A sealed password without the key: that target fails, and says why.
    let no_key = fleet.migrate(&["--target", "shard-2"], None);
    assert_eq!(no_key.status.code(), Some(1));
    let stdout = text(&no_key.stdout);
    assert!(
        stdout
            .starts_with("shard-2: failed: its DSN password is sealed and SECRETS_KEY is not set"),
        "{stdout}"
    );
    assert!(!fleet.has_tenant_schema(2));
}

#[tokio::test(flavor = "current_thread")]
async fn target_versions_show_skew_and_unreachable_targets() {
    let mut fleet = Fleet::start(3, &[1]).await;
    sqlx::query(
        "INSERT INTO targets (id, kind, region, status, dsn) \
         VALUES ('dedicated-old', 'dedicated', 'eu-west', 'offline', 'postgres://x@192.0.2.1/x')",
    )
    .execute(&fleet.catalog)
    .await
    .unwrap();
    let key = SecretsKey::parse(KEY).unwrap();
    let opts = FleetOptions {
        targets: Some(vec!["shard-1".into()]),
        ..FleetOptions::default()
    };
    let job = fleet::start_job(&fleet.catalog, &opts).await.unwrap();
    let outcome = fleet::run_job(&fleet.catalog, Some(&key), job, 2)
        .await
        .unwrap();
    assert_eq!(outcome.state, JobState::Succeeded);
    assert_eq!(outcome.targets[0].outcome, Outcome::Applied);
    fleet.shard(3).stop();

    let versions = fleet::target_versions(&fleet.catalog, Some(&key), 4)
        .await
        .unwrap();
    let ids: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["dedicated-old", "shard-1", "shard-2", "shard-3"]);
    let [old, one, two, three] = &versions[..] else {
        unreachable!()
    };
    assert_eq!(old.kind, TargetKind::Dedicated);
    assert_eq!(old.error.as_deref(), Some("offline: not contacted"));
    assert_eq!(
        (one.version, one.pending, &one.applied, &one.error),
        (
            Some(Schema::Tenant.latest()),
            Some(0),
            &all_versions(),
            &None
        )
    );
    assert_eq!(
        (two.version, two.pending, &two.error),
        (None, Some(all_versions().len()), &None)
    );
    assert_eq!((three.version, three.pending), (None, None));
    let error = three.error.as_deref().unwrap();
    assert!(error.contains("Connection refused"), "{error}");
    let json = serde_json::to_value(one).unwrap();
    assert_eq!(json["kind"], "shard");
    assert_eq!(json["region"], "eu-west");
    assert_eq!(json["status"], "active");

    // Without the key, the sealed target cannot be read, and says why.
    let versions = fleet::target_versions(&fleet.catalog, None, 1)
        .await
        .unwrap();
    assert!(
        versions[1]
            .error
            .as_deref()
            .unwrap()
            .contains("SECRETS_KEY is not set")
    );
}

#[tokio::test(flavor = "current_thread")]
async fn one_worker_at_a_time_and_an_expired_lease_is_taken_over() {
    let fleet = Fleet::start(2, &[]).await;
    let job = fleet::start_job(&fleet.catalog, &FleetOptions::default())
        .await
        .unwrap();
    // The same request again is the same job; another one waits for it.
    assert_eq!(
        fleet::start_job(&fleet.catalog, &FleetOptions::default())
            .await
            .unwrap(),
        job
    );
    let only_one = FleetOptions {
        targets: Some(vec!["shard-1".into()]),
        ..FleetOptions::default()
    };
    assert!(matches!(
        fleet::start_job(&fleet.catalog, &only_one).await,
        Err(FleetError::Busy(id)) if id == job
    ));
    assert!(matches!(
        fleet::start_job(
            &fleet.catalog,
            &FleetOptions {
                targets: Some(vec![]),
                ..FleetOptions::default()
            }
        )
        .await,
        Err(FleetError::NoTargets)
    ));

    // A worker holds it under a live lease: nobody else may run it.
    sqlx::query(
        "UPDATE jobs SET state = 'running', attempts = 1, \
         lease_until = now() + interval '1 minute' WHERE id = $1",
    )
    .bind(job)
    .execute(&fleet.catalog)
    .await
    .unwrap();
    assert!(matches!(
        fleet::run_job(&fleet.catalog, None, job, 2).await,
        Err(FleetError::Leased(id)) if id == job
    ));

    // That worker died: once its lease ran out the job is taken over.
    sqlx::query("UPDATE jobs SET lease_until = now() - interval '1 second' WHERE id = $1")
        .bind(job)
        .execute(&fleet.catalog)
        .await
        .unwrap();
    let outcome = fleet::run_job(&fleet.catalog, None, job, 2).await.unwrap();
    assert_eq!(outcome.state, JobState::Succeeded);
    assert_eq!(outcome.counts.applied, 2);
    assert_eq!(fleet.latest_job().await, (job, "succeeded".into(), 2));
    assert!(matches!(
        fleet::run_job(&fleet.catalog, None, job, 2).await,
        Err(FleetError::Finished {
            state: JobState::Succeeded,
            ..
        })
    ));
    assert!(matches!(
        fleet::run_job(&fleet.catalog, None, job + 100, 2).await,
        Err(FleetError::NoSuchJob(_))
    ));

    // An abandoned pending job for other targets is closed, not waited for.
    let stale = fleet::start_job(&fleet.catalog, &FleetOptions::default())
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET updated_at = now() - interval '1 hour' WHERE id = $1")
        .bind(stale)
        .execute(&fleet.catalog)
        .await
        .unwrap();
    let fresh = fleet::start_job(&fleet.catalog, &only_one).await.unwrap();
    assert_ne!(fresh, stale);
    let (state, error): (String, Option<String>) =
        sqlx::query_as("SELECT state::text, error FROM jobs WHERE id = $1")
            .bind(stale)
            .fetch_one(&fleet.catalog)
            .await
            .unwrap();
    assert_eq!(state, "failed");
    assert!(error.unwrap().starts_with("abandoned"));
}
