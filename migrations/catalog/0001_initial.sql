-- The tenant-admin catalog: what the platform is made of (regions, plans,
-- shards and dedicated clusters with their pools), who runs on it (tenants
-- and their domains), who may change it (API tokens), what it is doing
-- (jobs), what it did (audit log), and what the gateways follow (snapshot
-- versions, gateway heartbeats).
--
-- Identifiers follow the router's rules (router/src/ids.rs); the API
-- validates them first, the checks here are the last line.

-- A tenant's slug: one DNS label.
CREATE DOMAIN dns_label AS text
    CHECK (VALUE ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$');
-- A region name, such as eu-west.
CREATE DOMAIN region_name AS text
    CHECK (VALUE ~ '^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$');
-- A plan name or target id: lowercase letters, digits, '-', '_', '.'.
CREATE DOMAIN lower_token AS text
    CHECK (VALUE ~ '^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$');
-- A tenant id: opaque, safe in a header value and a log line.
CREATE DOMAIN tenant_id AS text
    CHECK (VALUE ~ '^[A-Za-z0-9]([A-Za-z0-9._:-]{0,62}[A-Za-z0-9])?$');

CREATE TABLE regions (
    name        region_name PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plans (
    name                    lower_token PRIMARY KEY,
    -- Sustained requests per second for the whole tenant, and the burst.
    rate_per_sec            integer NOT NULL CHECK (rate_per_sec >= 1),
    burst                   integer NOT NULL CHECK (burst >= 1),
    -- Per client IP within the tenant; NULL: no per-IP limit.
    ip_rate_per_sec         integer CHECK (ip_rate_per_sec IS NULL OR ip_rate_per_sec >= 1),
    cache                   boolean NOT NULL DEFAULT false,
    -- Default freshness when the origin says nothing; 0: not cached then.
    cache_ttl_secs          integer NOT NULL DEFAULT 0 CHECK (cache_ttl_secs >= 0),
    cache_max_object_bytes  bigint NOT NULL DEFAULT 1048576 CHECK (cache_max_object_bytes > 0),
    max_body_bytes          bigint NOT NULL CHECK (max_body_bytes > 0),
    -- Custom domains a tenant on this plan may add.
    max_domains             integer NOT NULL DEFAULT 5 CHECK (max_domains >= 0),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);

CREATE TYPE target_kind AS ENUM ('shard', 'dedicated');
CREATE TYPE target_status AS ENUM ('active', 'draining', 'offline');

-- Shards (shared databases) and dedicated clusters (one tenant each).
CREATE TABLE targets (
    id                  lower_token PRIMARY KEY,
    kind                target_kind NOT NULL,
    -- Where the database lives; writes go there.
    region              region_name NOT NULL REFERENCES regions (name),
    -- Placement weight of a shard on the consistent-hash ring.
    weight              integer NOT NULL DEFAULT 100 CHECK (weight >= 0),
    status              target_status NOT NULL DEFAULT 'active',
    -- The database's connection string without its password
    -- (postgres://user@host:port/db); the password is kept apart, encrypted.
    dsn                 text NOT NULL,
    -- The password, encrypted under SECRETS_KEY (nonce || ciphertext);
    -- NULL when the database needs none.
    dsn_password_enc    bytea,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- The app servers of a target, per region (local reads, cross-region writes).
CREATE TABLE target_pools (
    target_id   lower_token NOT NULL REFERENCES targets (id) ON DELETE CASCADE,
    region      region_name NOT NULL REFERENCES regions (name),
    -- host:port, validated by the API.
    address     text NOT NULL CHECK (length(address) BETWEEN 3 AND 300),
    weight      integer NOT NULL DEFAULT 1 CHECK (weight >= 1),
    PRIMARY KEY (target_id, region, address)
);

-- PostgreSQL servers on which dedicated databases can be created.
CREATE TABLE cluster_servers (
    id                  lower_token PRIMARY KEY,
    region              region_name NOT NULL REFERENCES regions (name),
    -- An administrative connection string without its password.
    admin_dsn           text NOT NULL,
    admin_password_enc  bytea,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TYPE tenant_status AS ENUM ('provisioning', 'active', 'suspended', 'deleted');

CREATE TABLE tenants (
    id          tenant_id PRIMARY KEY,
    slug        dns_label NOT NULL UNIQUE,
    plan        lower_token NOT NULL REFERENCES plans (name),
    -- The tenant's home region.
    region      region_name NOT NULL REFERENCES regions (name),
    -- The persisted placement: NULL only while provisioning chooses it.
    target_id   lower_token REFERENCES targets (id),
    status      tenant_status NOT NULL DEFAULT 'provisioning',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    CHECK (status = 'provisioning' OR target_id IS NOT NULL),
    CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))
);
CREATE INDEX tenants_target ON tenants (target_id);

CREATE TYPE domain_state AS ENUM (
    'pending_verification', 'verified', 'issuing', 'active',
    'failed', 'renewing', 'expired', 'removed'
);

CREATE TABLE domains (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Normalised by the router's Hostname (lowercase, ASCII, no port or
    -- trailing dot).
    hostname            text NOT NULL CHECK (length(hostname) BETWEEN 1 AND 253),
    tenant_id           tenant_id NOT NULL REFERENCES tenants (id),
    state               domain_state NOT NULL DEFAULT 'pending_verification',
    -- The proof asked of the customer (DNS TXT record or HTTP token).
    verification_token  text NOT NULL,
    -- Why the last verification or issuance failed.
    last_error          text,
    verified_at         timestamptz,
    -- The current certificate's expiry.
    not_after           timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- A hostname belongs to one tenant at a time; a removed one may be claimed again.
CREATE UNIQUE INDEX domains_hostname_claimed ON domains (hostname) WHERE state <> 'removed';
CREATE INDEX domains_tenant ON domains (tenant_id);

CREATE TYPE token_role AS ENUM ('operator', 'viewer', 'gateway');

CREATE TABLE api_tokens (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role            token_role NOT NULL,
    -- SHA-256 of the token; the token itself is shown once and never stored.
    token_hash      bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz
);

-- A POST replayed with the same Idempotency-Key gets the stored response.
CREATE TABLE idempotency_keys (
    token_id        bigint NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    -- SHA-256 of method, path and body: the same key with another body is a 422.
    request_hash    bytea NOT NULL,
    status          smallint NOT NULL,
    response        jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (token_id, key)
);

CREATE TYPE job_state AS ENUM ('pending', 'running', 'succeeded', 'failed');

-- Long-running work (provisioning, migrations, moves, purges), resumable:
-- a worker claims a job with FOR UPDATE SKIP LOCKED and a lease.
CREATE TABLE jobs (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL,
    state           job_state NOT NULL DEFAULT 'pending',
    params          jsonb NOT NULL DEFAULT '{}',
    result          jsonb,
    error           text,
    attempts        integer NOT NULL DEFAULT 0,
    -- A running job whose lease ran out is taken over by another worker.
    lease_until     timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_open ON jobs (state, created_at) WHERE state IN ('pending', 'running');

CREATE TYPE job_target_state AS ENUM ('pending', 'running', 'applied', 'failed');

-- Per-database progress of a job that touches many (tenant-schema migrations).
CREATE TABLE job_targets (
    job_id      bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    target_id   lower_token NOT NULL REFERENCES targets (id),
    state       job_target_state NOT NULL DEFAULT 'pending',
    error       text,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, target_id)
);

-- Every mutation: who, what, before and after, under which request.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    -- The token's name and role, e.g. "ci-bot (operator)".
    actor       text NOT NULL,
    action      text NOT NULL,
    -- The resource's path, e.g. /v1/tenants/acme.
    resource    text NOT NULL,
    before      jsonb,
    after       jsonb,
    request_id  text
);
CREATE INDEX audit_log_resource ON audit_log (resource, at);

-- The routing snapshot's version: one row per bump, so the feed can say
-- when and why routing changed.
CREATE TABLE snapshot_versions (
    version     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Gateways following the feed, as they last reported.
CREATE TABLE gateways (
    id                  text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 200),
    region              region_name NOT NULL,
    applied_version     bigint NOT NULL,
    last_seen_at        timestamptz NOT NULL DEFAULT now()
);
