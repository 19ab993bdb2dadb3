-- +goose Up
-- Any change to tenants, apps or Pages, through the admin API or by hand,
-- wakes every gateway replica (LISTEN postgate_registry) to reload its
-- in-memory routing table. NOTIFY is sent on commit only.
-- +goose StatementBegin
CREATE FUNCTION postgate_registry_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('postgate_registry', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER tenants_registry_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION postgate_registry_notify();
CREATE TRIGGER apps_registry_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON apps
    FOR EACH STATEMENT EXECUTE FUNCTION postgate_registry_notify();
CREATE TRIGGER pages_registry_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pages
    FOR EACH STATEMENT EXECUTE FUNCTION postgate_registry_notify();

-- +goose Down
DROP TRIGGER pages_registry_notify ON pages;
DROP TRIGGER apps_registry_notify ON apps;
DROP TRIGGER tenants_registry_notify ON tenants;
DROP FUNCTION postgate_registry_notify();
