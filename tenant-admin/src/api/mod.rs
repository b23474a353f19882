//! The operator REST API under `/v1`.
//!
//! Every route is declared with `utoipa`, so `/v1/openapi.json` is generated
//! from the handlers themselves. Middleware, outermost first: request id,
//! metrics, authentication and role check, `Idempotency-Key` on POST.
//! Mutations validate first, then run in one catalog transaction that also
//! writes the audit row and, when routing changes, bumps the snapshot
//! version (see [`crate::feed::bump`]).

pub mod catalog;
pub mod domains;
pub mod moves;
pub mod ops;
pub mod problem;
pub mod request;
pub mod tenants;
pub mod validate;

use std::sync::Arc;

use axum::Router;
use axum::middleware;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard tenant-admin",
        description = "The operator API of Switchyard's control plane. Authenticate with `Authorization: Bearer <token>`. Every POST honours `Idempotency-Key`. Errors are RFC 9457 problem documents.",
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "catalog", description = "Regions, plans, shards, dedicated clusters, cluster servers, tokens"),
        (name = "tenants", description = "Tenants and their lifecycle"),
        (name = "domains", description = "Tenants' custom domains: ownership proofs, certificates"),
        (name = "operations", description = "Jobs, tenant-schema migrations, audit log, cache purges"),
        (name = "feed", description = "The routing snapshot gateways follow, and the gateways"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The `/v1` routes with their middleware, and the OpenAPI document.
pub fn routes(state: Arc<AppState>) -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(catalog::routes())
        .merge(tenants::routes())
        .merge(moves::routes())
        .merge(domains::routes())
        .merge(ops::routes())
        .split_for_parts();
    let router = router
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request::idempotency,
        ))
        .layer(middleware::from_fn_with_state(state, request::authenticate));
    (router, doc)
}
