-- +goose Up
-- Deleting a tenant cascades to its events, whose delete trigger removes
-- their deliveries rows: events locked before deliveries, the reverse of
-- the order every other writer of both keeps (package event), so a delete
-- could deadlock with an outcome being recorded. This trigger removes the
-- tenant's queue rows first, in the same statement, whoever deletes the
-- tenant; the tenant package no longer writes the queue itself.
-- +goose StatementBegin
CREATE FUNCTION tenants_forget_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deliveries WHERE tenant_id = OLD.id;
    RETURN OLD;
END $$;
-- +goose StatementEnd
CREATE TRIGGER tenants_forget_queue BEFORE DELETE ON tenants
    FOR EACH ROW EXECUTE FUNCTION tenants_forget_queue();

-- +goose Down
DROP TRIGGER tenants_forget_queue ON tenants;
DROP FUNCTION tenants_forget_queue();
