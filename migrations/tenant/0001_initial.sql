-- The application schema of the inventory/ERP product, applied to every
-- shard (many tenants) and every dedicated cluster (one tenant).
--
-- Isolation: every table carries tenant_id, and row-level security limits
-- every query to the tenant named by the session setting app.tenant_id.
-- The app sets it per transaction:
--
--     SELECT set_config('app.tenant_id', $1, true);
--
-- A session that has not set it sees no row and can write none. FORCE
-- makes the policies apply to the tables' owner too; only superusers and
-- roles with BYPASSRLS (tenant-admin's maintenance role) are exempt.
-- App servers log in with a role that is a member of switchyard_app.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'switchyard_app') THEN
        CREATE ROLE switchyard_app NOLOGIN;
    END IF;
END
$$;

-- The tenant this session acts for, or NULL.
CREATE FUNCTION current_tenant() RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('app.tenant_id', true), '') $$;

-- The tenants living in this database, written by tenant-admin when it
-- provisions one here.
CREATE TABLE tenants (
    tenant_id   text PRIMARY KEY CHECK (length(tenant_id) BETWEEN 1 AND 64),
    slug        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE categories (
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    id          bigint GENERATED ALWAYS AS IDENTITY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    parent_id   bigint,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, parent_id) REFERENCES categories (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE products (
    tenant_id       text NOT NULL REFERENCES tenants (tenant_id),
    id              bigint GENERATED ALWAYS AS IDENTITY,
    sku             text NOT NULL CHECK (length(sku) BETWEEN 1 AND 64),
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 300),
    category_id     bigint,
    -- Prices in the smallest currency unit (cents).
    price_cents     bigint NOT NULL CHECK (price_cents >= 0),
    currency        char(3) NOT NULL DEFAULT 'EUR',
    -- Stock on hand, kept in step with stock_movements by the app.
    stock           numeric(14, 3) NOT NULL DEFAULT 0,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, category_id) REFERENCES categories (tenant_id, id),
    UNIQUE (tenant_id, sku)
);
CREATE INDEX products_category ON products (tenant_id, category_id);

CREATE TABLE stock_movements (
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    id          bigint GENERATED ALWAYS AS IDENTITY,
    product_id  bigint NOT NULL,
    -- Positive in, negative out.
    quantity    numeric(14, 3) NOT NULL CHECK (quantity <> 0),
    reason      text NOT NULL CHECK (reason IN ('purchase', 'sale', 'return', 'adjustment', 'transfer')),
    reference   text,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id)
);
CREATE INDEX stock_movements_product ON stock_movements (tenant_id, product_id, at);

CREATE TABLE customers (
    tenant_id   text NOT NULL REFERENCES tenants (tenant_id),
    id          bigint GENERATED ALWAYS AS IDENTITY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 300),
    email       text,
    tax_id      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX customers_email ON customers (tenant_id, email);

CREATE TABLE sales (
    tenant_id       text NOT NULL REFERENCES tenants (tenant_id),
    id              bigint GENERATED ALWAYS AS IDENTITY,
    customer_id     bigint,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'cancelled')),
    total_cents     bigint NOT NULL DEFAULT 0 CHECK (total_cents >= 0),
    currency        char(3) NOT NULL DEFAULT 'EUR',
    at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id)
);
CREATE INDEX sales_customer ON sales (tenant_id, customer_id, at);

CREATE TABLE sale_items (
    tenant_id           text NOT NULL REFERENCES tenants (tenant_id),
    id                  bigint GENERATED ALWAYS AS IDENTITY,
    sale_id             bigint NOT NULL,
    product_id          bigint NOT NULL,
    quantity            numeric(14, 3) NOT NULL CHECK (quantity > 0),
    unit_price_cents    bigint NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, sale_id) REFERENCES sales (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id)
);
CREATE INDEX sale_items_sale ON sale_items (tenant_id, sale_id);

CREATE TABLE invoices (
    tenant_id       text NOT NULL REFERENCES tenants (tenant_id),
    id              bigint GENERATED ALWAYS AS IDENTITY,
    -- The tenant's own numbering, e.g. 2026-000123.
    number          text NOT NULL,
    sale_id         bigint,
    customer_id     bigint,
    issued_at       timestamptz NOT NULL DEFAULT now(),
    due_at          timestamptz,
    total_cents     bigint NOT NULL CHECK (total_cents >= 0),
    currency        char(3) NOT NULL DEFAULT 'EUR',
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, number),
    FOREIGN KEY (tenant_id, sale_id) REFERENCES sales (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id)
);
CREATE INDEX invoices_customer ON invoices (tenant_id, customer_id, issued_at);

CREATE TABLE invoice_items (
    tenant_id           text NOT NULL REFERENCES tenants (tenant_id),
    id                  bigint GENERATED ALWAYS AS IDENTITY,
    invoice_id          bigint NOT NULL,
    description         text NOT NULL,
    quantity            numeric(14, 3) NOT NULL CHECK (quantity > 0),
    unit_price_cents    bigint NOT NULL CHECK (unit_price_cents >= 0),
    -- Tax rate in basis points (2100 = 21%).
    tax_rate_bp         integer NOT NULL DEFAULT 0 CHECK (tax_rate_bp BETWEEN 0 AND 10000),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX invoice_items_invoice ON invoice_items (tenant_id, invoice_id);

-- One policy per table: rows of the session's tenant only, for reads and writes.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'categories', 'products', 'stock_movements', 'customers',
                             'sales', 'sale_items', 'invoices', 'invoice_items']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_tenant()) '
                       'WITH CHECK (tenant_id = current_tenant())', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO switchyard_app', t);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION current_tenant() TO switchyard_app;
