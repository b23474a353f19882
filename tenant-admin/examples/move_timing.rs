//! How long moving a tenant to another shard takes, and how long its
//! writes are held meanwhile.
//!
//! Starts a catalog and two shards (PostgreSQL clusters from the test
//! support) and the real `tenant-admin serve`, all on loopback, registers
//! a region, a plan and `shard-1`/`shard-2` through the API, then for each
//! size: creates two tenants on shard-1, gives each about that many rows
//! spread over the application tables like an ERP's (products, stock
//! movements, customers, sales and their items, invoices and their items;
//! the two tenants' rows interleaved), moves one to shard-2 with
//! `POST /v1/tenants/{id}/move` and checks that its rows arrived as they
//! were, left shard-1, and that the other tenant's rows did not change.
//!
//! Prints per size: the rows copied, the size of those rows (the sum of
//! `pg_column_size`, without indexes), `writes_held_ms` from the move job's
//! result, the copy time (that minus the fixed in-flight grace: fencing
//! the source, the copy, the catalog switch, and waiting for gateways, of
//! which none run here), the request's wall time, and the rest of it
//! (preparing the destination before the hold, deleting the rows from the
//! source after the switch). A request that outlasts the HTTP client's
//! 10 s timeout (or answers 202) is followed by polling the move job in
//! the catalog; its total then ends when the job is seen done.
//!
//!     cargo build -p tenant-admin
//!     cargo run -p tenant-admin --example move_timing
//!     ROWS=20000 cargo run -p tenant-admin --example move_timing
//!     SIZES=1000,10000,100000 cargo run -p tenant-admin --example move_timing
//!
//! `SIZES` wins over `ROWS` (default 100000). Earlier sizes' tenants stay
//! where they ended up, so later moves run on fuller databases. The
//! `tenant-admin` binary is taken from the same target directory as this
//! example.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::Admin;
use serde_json::Value;
use tenant_admin::moves::IN_FLIGHT_GRACE;
use testkit::PgCluster;

const TOKEN: &str = "move-timing-operator-token";

/// Every table holding tenant rows.
const TABLES: [&str; 9] = [
    "tenants",
    "categories",
    "products",
    "stock_movements",
    "customers",
    "sales",
    "sale_items",
    "invoices",
    "invoice_items",
];

fn main() {
    let sizes: Vec<u64> = std::env::var("SIZES")
        .or_else(|_| std::env::var("ROWS"))
        .unwrap_or_else(|_| "100000".to_owned())
        .split(',')
        .map(|s| s.trim().parse().expect("SIZES/ROWS: numbers"))
        .collect();
    let mut clusters = PgCluster::start_many(3)
        .expect("PostgreSQL clusters")
        .into_iter();
    let (catalog, one, two) = (
        clusters.next().unwrap(),
        clusters.next().unwrap(),
        clusters.next().unwrap(),
    );
    let catalog_url = catalog.create_database("catalog").expect("catalog db");
    let shard_urls = [
        one.create_database("shard_1").expect("shard_1 db"),
        two.create_database("shard_2").expect("shard_2 db"),
    ];

    let api = Admin::start(&catalog_url, TOKEN, Stdio::inherit());
    let call = |method: &str, path: &str, body: &str| {
        api.call(method, path, body);
    };
    call("POST", "/v1/regions", r#"{"name":"eu-west"}"#);
    call(
        "POST",
        "/v1/plans",
        r#"{"name":"starter","rate_per_sec":100,"burst":100,"max_body_bytes":1048576}"#,
    );
    for (n, url) in shard_urls.iter().enumerate() {
        call(
            "POST",
            "/v1/shards",
            &format!(
                r#"{{"id":"shard-{}","region":"eu-west","dsn":"{url}","pools":{{"eu-west":["127.0.0.1:9"]}}}}"#,
                n + 1
            ),
        );
    }

    let grace = IN_FLIGHT_GRACE.as_millis();
    println!("in-flight grace {grace} ms; copy = writes held - grace; rest = total - writes held");
    println!(
        "{:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7}",
        "rows", "data MB", "held ms", "copy ms", "total ms", "rest ms", "status"
    );
    for (i, &rows) in sizes.iter().enumerate() {
        let (mover, stayer) = (format!("t-move-{i}"), format!("t-stay-{i}"));
        for (id, slug) in [
            (&mover, format!("mover-{i}")),
            (&stayer, format!("stayer-{i}")),
        ] {
            call(
                "POST",
                "/v1/tenants",
                &format!(
                    r#"{{"id":"{id}","slug":"{slug}","plan":"starter","region":"eu-west",
                        "placement":{{"kind":"shared","shard":"shard-1"}}}}"#
                ),
            );
        }
        let filling = Instant::now();
        one.execute("shard_1", &fill(&[&stayer, &mover], rows))
            .expect("the tenants' rows");
        eprintln!(
            "size {rows}: two tenants filled in {:.1} s, moving {mover}",
            filling.elapsed().as_secs_f64()
        );
        let moving = census(&one, "shard_1", &mover);
        let staying = census(&one, "shard_1", &stayer);

        let sent = Instant::now();
        let (status, text) = api.request(
            "POST",
            &format!("/v1/tenants/{mover}/move"),
            Some(r#"{"placement":{"kind":"shared","shard":"shard-2"}}"#),
        );
        // 200 once moved; 202 (or no answer within the client's timeout)
        // while the job goes on: then the job is polled until it ends.
        assert!(matches!(status, 0 | 200 | 202), "move: {status} {text}");
        let answered = sent.elapsed();
        let job = loop {
            let job = last_move(&catalog, &mover);
            match job["state"].as_str() {
                Some("succeeded") => break job,
                Some("failed") => panic!("the move failed: {job}"),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let total = if status == 200 {
            answered
        } else {
            sent.elapsed()
        }
        .as_millis();

        let result = &job["result"];
        let copied: u64 = result["rows_copied"]
            .as_object()
            .unwrap_or_else(|| panic!("no rows_copied in the move job: {job}"))
            .values()
            .filter_map(Value::as_u64)
            .sum();
        let held = u128::from(result["writes_held_ms"].as_u64().expect("writes_held_ms"));
        assert_eq!(copied, moving.rows, "rows copied vs rows on shard-1");
        assert_eq!(
            census(&two, "shard_2", &mover),
            moving,
            "{mover} on shard-2"
        );
        assert_eq!(census(&one, "shard_1", &mover).rows, 0, "{mover} left");
        assert_eq!(census(&one, "shard_1", &stayer), staying, "{stayer} kept");
        println!(
            "{copied:>9} {:>9.1} {held:>8} {:>8} {total:>8} {:>8} {:>7}",
            moving.bytes as f64 / 1e6,
            held.saturating_sub(grace),
            total.saturating_sub(held),
            match status {
                0 => "timeout",
                200 => "200",
                _ => "202",
            },
        );
    }
}

/// SQL giving each of `tenants` about `rows` rows over the application
/// tables, interleaved between the tenants, in one transaction.
fn fill(tenants: &[&str], rows: u64) -> String {
    let share = |percent: u64| (rows * percent / 100).max(1);
    let ts = format!("ARRAY['{}']", tenants.join("','"));
    // Each tenant's ids in `table`, to point rows at.
    let ids = |table: &str| {
        format!(
            "(SELECT tenant_id, array_agg(id ORDER BY id) a FROM {table} \
             WHERE tenant_id = ANY({ts}) GROUP BY tenant_id)"
        )
    };
    let pick =
        |alias: &str, salt: u64| format!("{alias}.a[1 + (g * {salt}) % cardinality({alias}.a)]");
    let price = "100 + (g * 7919) % 100000";
    format!(
        "INSERT INTO categories (tenant_id, name)
             SELECT t, 'Category ' || g FROM generate_series(1, {categories}) g, unnest({ts}) t ORDER BY g;
         INSERT INTO products (tenant_id, sku, name, category_id, price_cents, stock)
             SELECT c.tenant_id, 'SKU-' || lpad(g::text, 8, '0'), 'Product ' || g || ' ' || md5(g::text),
                 {category}, {price}, (g * 13) % 500
             FROM generate_series(1, {products}) g, {cats} c ORDER BY g;
         INSERT INTO stock_movements (tenant_id, product_id, quantity, reason, reference, at)
             SELECT p.tenant_id, {product}, CASE WHEN g % 5 = 1 THEN -(1 + g % 9) ELSE 1 + g % 9 END,
                 (ARRAY['purchase', 'sale', 'return', 'adjustment', 'transfer'])[1 + g % 5],
                 'REF-' || g, now() - g * interval '1 minute'
             FROM generate_series(1, {movements}) g, {prods} p ORDER BY g;
         INSERT INTO customers (tenant_id, name, email, tax_id)
             SELECT t, 'Customer ' || g, 'customer' || g || '@example.com', 'VAT' || lpad(g::text, 9, '0')
             FROM generate_series(1, {customers}) g, unnest({ts}) t ORDER BY g;
         INSERT INTO sales (tenant_id, customer_id, status, total_cents, at)
             SELECT c.tenant_id, {customer}, (ARRAY['paid', 'paid', 'paid', 'open', 'cancelled'])[1 + g % 5],
                 {price}, now() - g * interval '5 minutes'
             FROM generate_series(1, {sales}) g, {custs} c ORDER BY g;
         INSERT INTO sale_items (tenant_id, sale_id, product_id, quantity, unit_price_cents)
             SELECT s.tenant_id, {sale}, {product}, 1 + g % 4, {price}
             FROM generate_series(1, {sale_items}) g, {sals} s JOIN {prods} p USING (tenant_id) ORDER BY g;
         INSERT INTO invoices (tenant_id, number, sale_id, customer_id, total_cents, issued_at, due_at)
             SELECT tenant_id, '2026-' || lpad(n::text, 7, '0'), id, customer_id, total_cents, at, at + interval '30 days'
             FROM (SELECT *, row_number() OVER (PARTITION BY tenant_id ORDER BY id) n
                   FROM sales WHERE tenant_id = ANY({ts})) s
             WHERE n <= {invoices} ORDER BY n;
         INSERT INTO invoice_items (tenant_id, invoice_id, description, quantity, unit_price_cents, tax_rate_bp)
             SELECT i.tenant_id, {invoice}, 'Line ' || g, 1 + g % 4, {price}, (ARRAY[0, 1000, 2100])[1 + g % 3]
             FROM generate_series(1, {invoice_items}) g, {invs} i ORDER BY g;
         ANALYZE;",
        categories = (rows / 2000).max(1),
        products = share(10),
        movements = share(30),
        customers = share(5),
        sales = share(15),
        sale_items = share(25),
        invoices = share(5),
        invoice_items = share(10),
        cats = ids("categories"),
        prods = ids("products"),
        custs = ids("customers"),
        sals = ids("sales"),
        invs = ids("invoices"),
        category = pick("c", 1),
        product = pick("p", 31),
        customer = pick("c", 7),
        sale = pick("s", 1),
        invoice = pick("i", 1),
    )
}

/// A tenant's rows in one database: how many, their size, and a digest of
/// them all (ids included).
#[derive(Debug, PartialEq)]
struct Census {
    rows: u64,
    bytes: u64,
    digest: String,
}

fn census(cluster: &PgCluster, db: &str, tenant: &str) -> Census {
    let per_table: Vec<String> = TABLES
        .iter()
        .map(|t| {
            format!(
                "SELECT '{t}' k, count(*) n, coalesce(sum(pg_column_size(x.*)), 0) b, \
                    coalesce(md5(string_agg(x::text, ',' ORDER BY x::text)), '') h \
                 FROM {t} x WHERE tenant_id = '{tenant}'"
            )
        })
        .collect();
    let out = cluster
        .execute(
            db,
            &format!(
                "SELECT sum(n), sum(b), md5(string_agg(h, ',' ORDER BY k)) FROM ({}) s",
                per_table.join(" UNION ALL ")
            ),
        )
        .expect("a census");
    let fields: Vec<&str> = out.trim().split('|').collect();
    let number = |i: usize| fields[i].parse().expect("a number");
    Census {
        rows: number(0),
        bytes: number(1),
        digest: fields[2].to_owned(),
    }
}

/// The tenant's latest move job: `state`, `result`, `error`.
fn last_move(catalog: &PgCluster, tenant: &str) -> Value {
    let out = catalog
        .execute(
            "catalog",
            &format!(
                "SELECT json_build_object('id', id, 'state', state, 'attempts', attempts, 'result', result, 'error', error, 'created_at', created_at, 'updated_at', updated_at) FROM jobs \
                 WHERE kind = 'move_tenant' AND params->>'tenant' = '{tenant}' ORDER BY id DESC LIMIT 1"
            ),
        )
        .expect("the move job");
    serde_json::from_str(out.trim()).unwrap_or(Value::Null)
}
