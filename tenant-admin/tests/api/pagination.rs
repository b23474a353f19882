//! Cursor pagination of lists.

use serde_json::Value;

use crate::support::Admin;

#[tokio::test]
async fn cursor_pagination_visits_every_item_once_in_order() {
    let admin = Admin::start();
    let op = admin.token();
    let names = [
        "us-west",
        "eu-west",
        "ap-south",
        "eu-north",
        "sa-east",
        "af-south",
        "me-central",
    ];
    for name in names {
        admin.add_region(name).await;
    }
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut path = "/v1/regions?limit=3".to_owned();
    loop {
        let page = admin.get(&path, op).await.expect_status(200);
        let items = page.json["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|r| r["name"].as_str().unwrap().to_owned()));
        pages += 1;
        match page.json.get("next_cursor").and_then(Value::as_str) {
            Some(cursor) => {
                assert_eq!(items.len(), 3, "only the last page is short");
                path = format!("/v1/regions?limit=3&cursor={cursor}");
            }
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    let mut expected: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    expected.sort();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);

    // A page size of exactly the total: one page, no cursor.
    let all = admin
        .get("/v1/regions?limit=7", op)
        .await
        .expect_status(200);
    assert_eq!(all.json["items"].as_array().unwrap().len(), 7);
    assert!(all.json.get("next_cursor").is_none());

    // Newest-first lists page too (the audit log holds the 7 creations).
    let first = admin.get("/v1/audit?limit=4", op).await.expect_status(200);
    let cursor = first.json["next_cursor"].as_str().unwrap();
    let second = admin
        .get(&format!("/v1/audit?limit=4&cursor={cursor}"), op)
        .await
        .expect_status(200);
    let ids: Vec<i64> = first.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.json["items"].as_array().unwrap())
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 7);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");

    for bad in ["limit=0", "limit=501"] {
        admin
            .get(&format!("/v1/regions?{bad}"), op)
            .await
            .expect_problem(400, Some("limit"));
    }
    admin
        .get("/v1/regions?cursor=not*a*cursor", op)
        .await
        .expect_problem(400, Some("cursor"));
    // Lists keyed by number refuse a cursor that is not one ("not-a-number").
    for list in ["/v1/audit", "/v1/jobs", "/v1/tokens"] {
        admin
            .get(&format!("{list}?cursor=bm90LWEtbnVtYmVy"), op)
            .await
            .expect_problem(400, Some("cursor"));
    }
    admin
        .get("/v1/regions?limit=500", op)
        .await
        .expect_status(200);
}
