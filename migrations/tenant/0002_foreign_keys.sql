-- Every foreign key becomes DEFERRABLE INITIALLY IMMEDIATE: the app sees no
-- change (each statement is still checked at once), while tenant-admin,
-- copying a tenant's rows into another database during a move, defers the
-- checks to its commit. Rows then arrive in any order, including a category
-- stored before the parent category it points at.
DO $$
DECLARE
    fk record;
BEGIN
    FOR fk IN
        SELECT c.conrelid::regclass AS tbl, c.conname
        FROM pg_constraint c
        JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE c.contype = 'f' AND n.nspname = current_schema() AND NOT c.condeferrable
    LOOP
        EXECUTE format('ALTER TABLE %s ALTER CONSTRAINT %I DEFERRABLE INITIALLY IMMEDIATE',
                       fk.tbl, fk.conname);
    END LOOP;
END
$$;

-- The referencing side of every foreign key is indexed: deleting a
-- tenant's products or sales (a purge, or the clean-up after a move) then
-- finds the rows pointing at them by index instead of scanning every
-- tenant's rows of the referencing table for each row deleted.
CREATE INDEX IF NOT EXISTS categories_parent ON categories (tenant_id, parent_id);
CREATE INDEX IF NOT EXISTS sale_items_product ON sale_items (tenant_id, product_id);
CREATE INDEX IF NOT EXISTS invoices_sale ON invoices (tenant_id, sale_id);
