//! The tenants a scenario addresses, and their names.
//!
//! A load test has to send requests to hosts the target actually routes, so the
//! tenants are not random: tenant `i` (0-based rank, 0 the largest) is always
//! `{slug_prefix}{i}` at `{slug}.{base_domain}`, and, when it is among the first
//! `custom_domains` ranks, also at `{slug}.{domain_suffix}`. `loadtest seed` writes
//! a routing snapshot (and certificates) with exactly these names, so a seeded
//! gateway and a scenario agree without sharing a file.

use serde::{Deserialize, Serialize};

/// The default `slug_prefix`.
pub const DEFAULT_SLUG_PREFIX: &str = "load-";
/// The default `base_domain`.
pub const DEFAULT_BASE_DOMAIN: &str = "app.example.test";
/// The default `domain_suffix`.
pub const DEFAULT_DOMAIN_SUFFIX: &str = "customers.example.test";

/// How many tenants there are and what they are called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Population {
    /// Number of tenants.
    pub count: u32,
    /// Slug of tenant `i`: this prefix then `i`.
    pub slug_prefix: String,
    /// The platform domain every tenant has a subdomain of.
    pub base_domain: String,
    /// How many tenants (the largest first) also have a custom domain.
    pub custom_domains: u32,
    /// Parent of the custom domains: tenant `i`'s is `{slug}.{domain_suffix}`.
    pub domain_suffix: String,
}

impl Population {
    /// `count` tenants with the default names and no custom domains.
    pub fn new(count: u32) -> Self {
        Self {
            count,
            slug_prefix: DEFAULT_SLUG_PREFIX.to_owned(),
            base_domain: DEFAULT_BASE_DOMAIN.to_owned(),
            custom_domains: 0,
            domain_suffix: DEFAULT_DOMAIN_SUFFIX.to_owned(),
        }
    }

    /// Tenant `i`'s slug.
    pub fn slug(&self, i: u32) -> String {
        format!("{}{i}", self.slug_prefix)
    }

    /// Tenant `i`'s id as `loadtest seed` writes it.
    pub fn tenant_id(&self, i: u32) -> String {
        format!("tenant-{i}")
    }

    /// Tenant `i`'s platform subdomain.
    pub fn subdomain(&self, i: u32) -> String {
        format!("{}{i}.{}", self.slug_prefix, self.base_domain)
    }

    /// Tenant `i`'s custom domain, if it has one.
    pub fn custom_domain(&self, i: u32) -> Option<String> {
        (i < self.custom_domains.min(self.count))
            .then(|| format!("{}{i}.{}", self.slug_prefix, self.domain_suffix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rank() {
        let population = Population {
            custom_domains: 2,
            ..Population::new(5)
        };
        assert_eq!(population.slug(3), "load-3");
        assert_eq!(population.subdomain(0), "load-0.app.example.test");
        assert_eq!(
            population.custom_domain(1).as_deref(),
            Some("load-1.customers.example.test")
        );
        assert_eq!(population.custom_domain(2), None);
    }

    #[test]
    fn no_custom_domain_beyond_the_tenants() {
        let population = Population {
            custom_domains: 10,
            ..Population::new(3)
        };
        assert!(population.custom_domain(2).is_some());
        assert_eq!(population.custom_domain(3), None);
    }
}
