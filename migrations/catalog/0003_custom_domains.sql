-- Custom domains: ownership proofs, ACME certificates and their renewal.
--
-- A domain is added `pending_verification` with a token; once the customer
-- proves control of the name (a DNS TXT record or an HTTP answer through the
-- name) it is `verified` and routes; a certificate is then ordered
-- (`issuing`), and the domain is `active` once one is in force. Renewals
-- run as `renewing` while the current certificate keeps serving.

ALTER TABLE domains
    -- Which proof succeeded: 'dns' or 'http'.
    ADD COLUMN verified_by text CHECK (verified_by IN ('dns', 'http')),
    -- When the background check looks at a pending domain next, and how
    -- many checks have failed (for the backoff).
    ADD COLUMN next_check_at timestamptz,
    ADD COLUMN check_failures integer NOT NULL DEFAULT 0,
    -- Start of the current verification window (NULL: since created_at);
    -- asking to verify a domain that gave up starts a new one.
    ADD COLUMN checks_since timestamptz,
    -- When a certificate is next ordered (first issuance, renewal, or a
    -- retry after a failure), and how many orders in a row have failed.
    ADD COLUMN next_issue_at timestamptz,
    ADD COLUMN issue_failures integer NOT NULL DEFAULT 0,
    -- The order holding the domain (`<replica>/<acme_orders.id>`), until
    -- when: one issuer per domain at a time, whatever the replica count.
    ADD COLUMN lease_owner text,
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN removed_at timestamptz;

CREATE INDEX domains_check_due ON domains (next_check_at)
    WHERE state = 'pending_verification';
CREATE INDEX domains_issue_due ON domains (next_issue_at)
    WHERE next_issue_at IS NOT NULL AND state <> 'removed';

-- Issued certificates. The private key is sealed under SECRETS_KEY (purpose
-- bound); the chain is public. A renewal adds a row; the replaced one is
-- deleted with its key once the new one is in force.
CREATE TABLE certificates (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain_id   bigint NOT NULL REFERENCES domains (id),
    hostname    text NOT NULL,
    chain_pem   text NOT NULL,
    key_sealed  bytea NOT NULL,
    not_before  timestamptz NOT NULL,
    not_after   timestamptz NOT NULL CHECK (not_after > not_before),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX certificates_domain ON certificates (domain_id);

ALTER TABLE domains
    ADD COLUMN certificate_id bigint REFERENCES certificates (id);
-- Expiry sweeps and certificate deletions look domains up by certificate.
CREATE INDEX domains_certificate ON domains (certificate_id) WHERE certificate_id IS NOT NULL;
CREATE INDEX certificates_not_after ON certificates (not_after);

-- The ACME account per CA directory, its credentials (key included) sealed.
CREATE TABLE acme_accounts (
    directory_url       text PRIMARY KEY,
    credentials_sealed  bytea NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);

-- HTTP-01 challenges in flight, published to gateways in the snapshot.
CREATE TABLE acme_challenges (
    token               text PRIMARY KEY CHECK (token ~ '^[A-Za-z0-9_-]{1,128}$'),
    domain_id           bigint NOT NULL REFERENCES domains (id),
    hostname            text NOT NULL,
    key_authorization   text NOT NULL,
    -- The order (acme_orders.id) that published it: only that order
    -- withdraws it.
    order_id            bigint NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX acme_challenges_domain ON acme_challenges (domain_id);
CREATE INDEX acme_challenges_order ON acme_challenges (order_id);

-- Every certificate order: the CA's rate limits are counted from here
-- (globally and per tenant), and it is the issuance history.
CREATE TABLE acme_orders (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    domain_id    bigint NOT NULL REFERENCES domains (id),
    tenant_id    tenant_id NOT NULL REFERENCES tenants (id),
    hostname     text NOT NULL,
    renewal      boolean NOT NULL,
    owner        text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    outcome      text CHECK (outcome IN ('issued', 'failed')),
    error        text
);
CREATE INDEX acme_orders_started ON acme_orders (started_at);
CREATE INDEX acme_orders_tenant ON acme_orders (tenant_id, started_at);
CREATE INDEX acme_orders_domain ON acme_orders (domain_id);
