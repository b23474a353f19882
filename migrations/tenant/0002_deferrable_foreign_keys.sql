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
