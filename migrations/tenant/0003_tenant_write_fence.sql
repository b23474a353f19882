-- A tenant being moved out of this database is fenced here: from just
-- before its rows are copied, every write of its rows fails, whoever sends
-- it (the app through a gateway that has not heard of the move yet, a
-- background worker, a script), with SQLSTATE SY503 "tenant is being
-- moved". The fence stays after the move (the tenant lives elsewhere; a
-- late write here would be lost) and is lifted when the tenant is moved
-- back in, or when a move gives up.
--
-- tenant-admin's own clean-up sets switchyard.fence_bypass = 'on' for its
-- transaction. The app role can read nothing of the fences.

CREATE TABLE tenant_fences (
    tenant_id   text PRIMARY KEY,
    reason      text NOT NULL,
    since       timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION refuse_fenced_writes() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public
    AS $$
DECLARE
    written text := CASE WHEN TG_OP = 'DELETE' THEN OLD.tenant_id ELSE NEW.tenant_id END;
BEGIN
    IF current_setting('switchyard.fence_bypass', true) IS DISTINCT FROM 'on'
        AND EXISTS (SELECT 1 FROM tenant_fences f
                    WHERE f.tenant_id = written
                       OR (TG_OP = 'UPDATE' AND f.tenant_id = OLD.tenant_id)) THEN
        RAISE EXCEPTION 'tenant % is being moved to another database; retry shortly', written
            USING ERRCODE = 'SY503';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'categories', 'products', 'stock_movements', 'customers',
                             'sales', 'sale_items', 'invoices', 'invoice_items']
    LOOP
        EXECUTE format('CREATE TRIGGER refuse_fenced_writes BEFORE INSERT OR UPDATE OR DELETE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION refuse_fenced_writes()', t);
    END LOOP;
END
$$;
