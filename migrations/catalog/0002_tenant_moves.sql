-- Tenant moves: a tenant's data is copied from its target to another
-- (shard to shard, or shard to a dedicated cluster), then its placement is
-- switched. The stored status stays what it was (active or suspended);
-- these two columns say how far a move has come.

ALTER TABLE tenants
    -- Where a move in progress takes the tenant; NULL when none is.
    ADD COLUMN moving_to lower_token REFERENCES targets (id),
    -- Set while the move holds the tenant's writes (gateways see the
    -- tenant as `moving`): from just before the copy until the switch.
    ADD COLUMN writes_held_since timestamptz,
    ADD CONSTRAINT tenants_move_elsewhere CHECK (moving_to IS NULL OR moving_to <> target_id),
    ADD CONSTRAINT tenants_hold_needs_move CHECK (writes_held_since IS NULL OR moving_to IS NOT NULL);

CREATE INDEX tenants_moving_to ON tenants (moving_to) WHERE moving_to IS NOT NULL;
