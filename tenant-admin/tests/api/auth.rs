//! Bearer tokens, roles, and what the catalog keeps of a token.

use http::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::catalog_tables_holding;
use crate::support::{Admin, count};

#[tokio::test]
async fn tokens_authenticate_roles_authorise_and_secrets_are_kept_only_as_hashes() {
    let admin = Admin::start();
    let db = admin.catalog().await;

    // No token, a malformed header, an unknown token: 401 problems.
    admin
        .request(Method::GET, "/v1/regions")
        .send()
        .await
        .expect_problem(401, None);
    admin
        .request(Method::GET, "/v1/regions")
        .header("authorization", "Basic YWxhZGRpbjpvcGVuc2VzYW1l")
        .send()
        .await
        .expect_problem(401, None);
    admin
        .get("/v1/regions", "sy_this-token-was-never-issued-by-anyone")
        .await
        .expect_problem(401, None);

    // A new token's secret is in the creation response, once.
    let created = admin
        .post(
            "/v1/tokens",
            admin.token(),
            &json!({"name": "dashboard", "role": "viewer"}),
        )
        .await
        .expect_status(201);
    assert_eq!(created.header("cache-control"), Some("no-store"));
    let viewer = created.json["secret"].as_str().unwrap().to_owned();
    let viewer_id = created.json["id"].as_i64().unwrap();
    assert_eq!(created.json["role"], "viewer");
    let (gateway_id, gateway) = admin.create_token("gw-eu-1", "gateway").await;
    // The same creation repeated under one Idempotency-Key: the secret is
    // not kept for the replay either.
    let keyed = admin
        .post_idempotent(
            "/v1/tokens",
            admin.token(),
            "token-key-1",
            &json!({"name": "ci", "role": "operator"}),
        )
        .await
        .expect_status(201);
    let keyed_secret = keyed.json["secret"].as_str().unwrap().to_owned();
    let rekeyed = admin
        .post_idempotent(
            "/v1/tokens",
            admin.token(),
            "token-key-1",
            &json!({"name": "ci", "role": "operator"}),
        )
        .await
        .expect_status(201);
    assert_eq!(rekeyed.header("idempotent-replayed"), None);
    assert_ne!(
        rekeyed.json["secret"],
        json!(keyed_secret),
        "a secret was replayed"
    );

    let listed = admin
        .get("/v1/tokens", admin.token())
        .await
        .expect_status(200);
    for item in listed.json["items"].as_array().unwrap() {
        assert!(
            item.get("secret").is_none(),
            "a listed token shows its secret: {item}"
        );
    }
    for secret in [&viewer, &gateway, &keyed_secret] {
        assert!(!listed.text().contains(secret.as_str()));
        // The catalog holds the SHA-256 of the secret, never the secret.
        let hash: Vec<u8> =
            sqlx::query_scalar("SELECT token_hash FROM api_tokens WHERE token_hash = $1")
                .bind(Sha256::digest(secret.as_bytes()).to_vec())
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(hash.len(), 32);
        assert_eq!(
            catalog_tables_holding(&db, secret).await,
            Vec::<String>::new(),
            "the catalog holds a token secret in the clear"
        );
    }
    let bootstrap_hash: Vec<u8> =
        sqlx::query_scalar("SELECT token_hash FROM api_tokens WHERE name = 'bootstrap'")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        bootstrap_hash,
        Sha256::digest(admin.token().as_bytes()).to_vec()
    );
    assert!(catalog_tables_holding(&db, admin.token()).await.is_empty());

    // A viewer reads everything and changes nothing.
    admin.get("/v1/regions", &viewer).await.expect_status(200);
    admin.get("/v1/tenants", &viewer).await.expect_status(200);
    admin
        .get("/v1/routing/snapshot", &viewer)
        .await
        .expect_status(200);
    admin
        .post("/v1/regions", &viewer, &json!({"name": "eu-west"}))
        .await
        .expect_problem(403, None);
    admin
        .delete(&format!("/v1/tokens/{gateway_id}"), &viewer)
        .await
        .expect_problem(403, None);
    assert_eq!(count(&db, "regions").await, 0);

    // A gateway reads the routing feed only.
    admin
        .get("/v1/routing/snapshot", &gateway)
        .await
        .expect_status(200);
    admin
        .get("/v1/tenants", &gateway)
        .await
        .expect_problem(403, None);
    admin
        .get("/v1/regions", &gateway)
        .await
        .expect_problem(403, None);
    admin
        .post("/v1/regions", &gateway, &json!({"name": "eu-west"}))
        .await
        .expect_problem(403, None);

    // Revoked: refused at once.
    admin
        .delete(&format!("/v1/tokens/{viewer_id}"), admin.token())
        .await
        .expect_status(204);
    admin
        .get("/v1/regions", &viewer)
        .await
        .expect_problem(401, None);
    let revoked: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT revoked_at FROM api_tokens WHERE id = $1")
            .bind(viewer_id)
            .fetch_one(&db)
            .await
            .unwrap();
    assert!(revoked.is_some());
    admin
        .delete("/v1/tokens/999999", admin.token())
        .await
        .expect_problem(404, None);
}
