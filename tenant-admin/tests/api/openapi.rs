//! The OpenAPI document against the routes served, and the operations endpoints.

use std::collections::BTreeSet;

use http::Method;
use serde_json::{Value, json};

use crate::support::Admin;

/// How many GET operations answer with a page (and so must document `limit` and `cursor`).
fn documented_lists(doc: &Value) -> usize {
    doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .filter(|item| {
            item["get"]["responses"]["200"]
                .to_string()
                .contains("/schemas/Page_")
        })
        .count()
}

/// Every route the API serves: method and path template.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/regions"),
    ("POST", "/v1/regions"),
    ("GET", "/v1/regions/{name}"),
    ("DELETE", "/v1/regions/{name}"),
    ("GET", "/v1/plans"),
    ("POST", "/v1/plans"),
    ("GET", "/v1/plans/{name}"),
    ("PATCH", "/v1/plans/{name}"),
    ("GET", "/v1/shards"),
    ("POST", "/v1/shards"),
    ("GET", "/v1/shards/{id}"),
    ("PATCH", "/v1/shards/{id}"),
    ("GET", "/v1/clusters"),
    ("POST", "/v1/clusters"),
    ("GET", "/v1/clusters/{id}"),
    ("PATCH", "/v1/clusters/{id}"),
    ("GET", "/v1/cluster-servers"),
    ("POST", "/v1/cluster-servers"),
    ("GET", "/v1/tokens"),
    ("POST", "/v1/tokens"),
    ("DELETE", "/v1/tokens/{id}"),
    ("GET", "/v1/tenants"),
    ("POST", "/v1/tenants"),
    ("GET", "/v1/tenants/{id}"),
    ("PATCH", "/v1/tenants/{id}"),
    ("DELETE", "/v1/tenants/{id}"),
    ("POST", "/v1/tenants/{id}/suspend"),
    ("POST", "/v1/tenants/{id}/resume"),
    ("POST", "/v1/tenants/{id}/move"),
    ("DELETE", "/v1/tenants/{id}/move"),
    ("GET", "/v1/tenants/{id}/domains"),
    ("POST", "/v1/tenants/{id}/domains"),
    ("GET", "/v1/tenants/{id}/domains/{hostname}"),
    ("DELETE", "/v1/tenants/{id}/domains/{hostname}"),
    ("POST", "/v1/tenants/{id}/domains/{hostname}/verify"),
    ("POST", "/v1/tenants/{id}/domains/{hostname}/renew"),
    ("POST", "/v1/tenants/{id}/cache/purge"),
    ("GET", "/v1/jobs"),
    ("GET", "/v1/jobs/{id}"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/routing/snapshot"),
    ("GET", "/v1/routing/certificates"),
    ("GET", "/v1/gateways"),
    ("GET", "/v1/migrations"),
    ("POST", "/v1/migrations/apply"),
];

#[tokio::test]
async fn openapi_documents_every_route_and_operations_endpoints_answer() {
    let admin = Admin::start();
    let op = admin.token();

    let doc = admin
        .request(Method::GET, "/v1/openapi.json")
        .send()
        .await
        .expect_status(200);
    assert!(doc.json.is_object(), "not JSON: {}", doc.text());
    assert!(doc.json["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc.json["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            if !["get", "post", "patch", "delete", "put"].contains(&method.as_str()) {
                continue;
            }
            documented.insert((method.to_uppercase(), path.clone()));
            // Every `{param}` of the path is a documented path parameter.
            let params: Vec<&Value> = item["parameters"]
                .as_array()
                .into_iter()
                .chain(operation["parameters"].as_array())
                .flatten()
                .collect();
            for name in path.split('{').skip(1).filter_map(|p| p.split('}').next()) {
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == json!(name) && p["in"] == "path"),
                    "{method} {path} does not document its path parameter {name}"
                );
            }
            if method == "get"
                && operation["responses"]["200"]
                    .to_string()
                    .contains("/schemas/Page_")
            {
                for name in ["limit", "cursor"] {
                    assert!(
                        params
                            .iter()
                            .any(|p| p["name"] == json!(name) && p["in"] == "query"),
                        "{method} {path} does not document ?{name}"
                    );
                }
            }
            let problems = operation["responses"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(status, response)| {
                    status.starts_with('4')
                        && response
                            .to_string()
                            .contains("#/components/schemas/Problem")
                })
                .count();
            assert!(
                problems > 0,
                "{method} {path} documents no problem response"
            );
        }
    }
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);
    assert!(doc.json["components"]["schemas"]["Problem"].is_object());
    // Every schema reference resolves.
    let text = doc.json.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let target = reference.split('"').next().unwrap();
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("an unexpected reference {target}"));
        assert!(
            doc.json["components"]["schemas"][name].is_object(),
            "{target} does not resolve"
        );
    }
    let lists = documented_lists(&doc.json);
    assert!(lists >= 10, "only {lists} paginated lists documented");
    assert!(doc.json["components"]["securitySchemes"]["bearer"].is_object());

    // Every listed route is served: authenticated, it answers with something
    // other than the router's own 404 or 405.
    for (method, path) in ROUTES {
        let concrete = path.replace("{name}", "zz-none").replace("{id}", "424242");
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let unauthenticated = admin.request(method.clone(), &concrete).send().await;
        assert_eq!(unauthenticated.status.as_u16(), 401, "{method} {concrete}");
        let mut request = admin.request(method.clone(), &concrete).bearer(op);
        if method == Method::POST || method == Method::PATCH {
            request = request.json(&json!({}));
        }
        let reply = request.send().await;
        assert_ne!(reply.status.as_u16(), 405, "{method} {concrete}");
        assert!(
            reply.status.as_u16() < 500,
            "{method} {concrete}: {}",
            reply.text()
        );
        assert!(
            !reply.text().contains("this path does not exist"),
            "{method} {concrete} is not served"
        );
    }
    admin
        .get("/v1/not-a-route", op)
        .await
        .expect_problem(404, None);

    let health = admin
        .request(Method::GET, "/healthz")
        .send()
        .await
        .expect_status(200);
    assert_eq!(health.text(), "ok\n");
    admin
        .request(Method::GET, "/readyz")
        .send()
        .await
        .expect_status(200);
    let metrics = admin
        .request(Method::GET, "/metrics")
        .send()
        .await
        .expect_status(200);
    let text = metrics.text();
    assert!(text.contains("switchyard_admin_responses_total"), "{text}");
    let counted = |route: &str, class: &str| {
        text.lines().any(|l| {
            l.starts_with("switchyard_admin_responses_total{")
                && l.contains(&format!("route=\"{route}\""))
                && l.contains(&format!("class=\"{class}\""))
        })
    };
    assert!(counted("/readyz", "2xx"), "{text}");
    assert!(counted("/v1/openapi.json", "2xx"), "{text}");
    // Labelled by route template, not by path.
    assert!(counted("/v1/regions/{name}", "4xx"), "{text}");
    assert!(!text.contains("zz-none"), "{text}");
}
