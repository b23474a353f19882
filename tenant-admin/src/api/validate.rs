//! Input checks shared by the resources, using the router's own rules so
//! the API never accepts a name a gateway would refuse. Each error names
//! the field.

use std::collections::BTreeMap;

use router::{Hostname, PlanName, RegionName, Slug, TargetId, TenantId};
use serde::Deserialize;
use utoipa::ToSchema;

use super::problem::{ApiError, ApiResult};
use crate::secrets::{Dsn, Purpose, SecretsKey};

/// Checks an identifier with the router's rule for its kind.
macro_rules! id_check {
    ($fn:ident, $ty:ty) => {
        /// Checks `value` for `field`.
        ///
        /// # Errors
        ///
        /// 422 naming the field.
        pub fn $fn(field: &str, value: &str) -> ApiResult<String> {
            <$ty>::new(value)
                .map(|v| v.to_string())
                .map_err(|e| ApiError::invalid(field, e.to_string()))
        }
    };
}

id_check!(region, RegionName);
id_check!(plan, PlanName);
id_check!(target, TargetId);
id_check!(slug, Slug);
id_check!(tenant_id, TenantId);

/// Checks that `value` is within `range`.
///
/// # Errors
///
/// 422 naming the field.
pub fn range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> ApiResult<T> {
    if value < min || value > max {
        return Err(ApiError::invalid(
            field,
            format!("must be from {min} to {max}, not {value}"),
        ));
    }
    Ok(value)
}

/// A hostname, normalised by the router (lowercase, IDNA, no trailing dot).
///
/// # Errors
///
/// 422 naming the field.
pub fn hostname(field: &str, value: &str) -> ApiResult<String> {
    if value.contains(':') || value.contains('/') {
        return Err(ApiError::invalid(
            field,
            "must be a bare hostname, without port, scheme or path",
        ));
    }
    let host = Hostname::parse(value).map_err(|e| ApiError::invalid(field, e.to_string()))?;
    if host.as_str().parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(ApiError::invalid(
            field,
            "must be a DNS name, not an IP address",
        ));
    }
    Ok(host.to_string())
}

/// One app server of a pool: `"host:port"` or `{ "addr": "host:port", "weight": 2 }`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, ToSchema)]
#[serde(untagged)]
pub enum BackendInput {
    /// Weight 1.
    Addr(String),
    /// With a weight, 1 to 1000.
    Weighted {
        /// `host:port`.
        addr: String,
        /// Relative share.
        weight: u32,
    },
}

/// Pools by region.
pub type PoolsInput = BTreeMap<String, Vec<BackendInput>>;

/// Checked pools: (region, address, weight) rows.
///
/// # Errors
///
/// 422 naming the pool entry at fault.
pub fn pools(field: &str, pools: &PoolsInput, home: &str) -> ApiResult<Vec<(String, String, i32)>> {
    if pools.is_empty() {
        return Err(ApiError::invalid(
            field,
            "needs at least one pool (app servers) in the home region",
        ));
    }
    if !pools.contains_key(home) {
        return Err(ApiError::invalid(
            field,
            format!("needs a pool in the home region {home:?}: writes would have nowhere to go"),
        ));
    }
    let mut rows = Vec::new();
    for (pool_region, backends) in pools {
        let loc = format!("{field}.{pool_region}");
        region(&loc, pool_region)?;
        if backends.is_empty() || backends.len() > 1000 {
            return Err(ApiError::invalid(&loc, "must list 1 to 1000 app servers"));
        }
        for (i, b) in backends.iter().enumerate() {
            let loc = format!("{loc}[{i}]");
            let (addr, weight) = match b {
                BackendInput::Addr(a) => (a.as_str(), 1),
                BackendInput::Weighted { addr, weight } => (addr.as_str(), *weight),
            };
            address(&loc, addr)?;
            let weight = range(&format!("{loc}.weight"), weight, 1, 1000)?;
            rows.push((
                pool_region.clone(),
                addr.to_owned(),
                i32::try_from(weight).unwrap_or(1),
            ));
        }
    }
    Ok(rows)
}

/// `host:port` with a numeric port; the host a DNS name or an IP literal.
///
/// # Errors
///
/// 422 naming the field.
pub fn address(field: &str, addr: &str) -> ApiResult<()> {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || ApiError::invalid(field, format!("{addr:?} is not host:port"));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(bad)?;
    Hostname::parse(host).map_err(|e| ApiError::invalid(field, format!("{addr:?}: {e}")))?;
    Ok(())
}

/// A connection string split for storage, its password sealed.
///
/// # Errors
///
/// 422 naming the field, also when it has a password and no `SECRETS_KEY`
/// is configured.
pub fn dsn(
    field: &str,
    value: &str,
    key: Option<&SecretsKey>,
    purpose: Purpose,
) -> ApiResult<(String, Option<Vec<u8>>)> {
    let dsn = Dsn::parse(value).map_err(|e| ApiError::invalid(field, e.to_string()))?;
    let sealed = match (&dsn.password, key) {
        (None, _) => None,
        (Some(_), Some(key)) => dsn.sealed_password(key, purpose),
        (Some(_), None) => {
            return Err(ApiError::invalid(
                field,
                "has a password, and tenant-admin has no SECRETS_KEY to encrypt it with; set SECRETS_KEY",
            ));
        }
    };
    Ok((dsn.public, sealed))
}
