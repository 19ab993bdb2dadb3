-- +goose Up
-- Endpoints: a tenant sends its events to one or more of them (fan-out).
--
-- Everything the first version kept on the tenant about its one callback
-- (URL, type filter, limits, test events, the paused state, the signing
-- secrets) moves to an endpoints row, the tenant's default endpoint
-- (is_default); the tenant's first-version fields read and write it.
-- The migrated default endpoint keeps the tenant's id as its own, so its
-- sealed secrets (bound to that id, package secrets) open unchanged and
-- the queue rows of events pending at the upgrade point at it with no
-- copy of anything else.
--
-- events lists the types the endpoint takes; '*' is every Meta type
-- (not the gateway's own postgate.*, which is taken only when named, as in
-- '{*,postgate.health}'). pages restricts it to some of the
-- tenant's Pages ('{}': all). signing_secret is a sealed "whsec_" secret
-- (signature hmac) or "whsk_" private key (ed25519); public_key is the
-- "whpk_" key a tenant verifies ed25519 signatures with.
CREATE TABLE endpoints (
    id                                  uuid PRIMARY KEY,
    tenant_id                           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    is_default                          boolean NOT NULL DEFAULT false,
    url                                 text NOT NULL,
    description                         text NOT NULL DEFAULT '',
    events                              text[] NOT NULL DEFAULT '{messaging_postbacks}',
    pages                               text[] NOT NULL DEFAULT '{}',
    format                              text NOT NULL DEFAULT 'standard' CHECK (format IN ('standard', 'meta')),
    signature                           text NOT NULL DEFAULT 'hmac' CHECK (signature IN ('hmac', 'ed25519')),
    ordering                            text NOT NULL DEFAULT 'none' CHECK (ordering IN ('none', 'conversation')),
    rate                                integer CHECK (rate > 0),
    burst                               integer CHECK (burst > 0),
    concurrency                         integer CHECK (concurrency > 0),
    deliver_test_events                 boolean NOT NULL DEFAULT true,
    disabled_at                         timestamptz,
    disabled_reason                     text,
    enabled_at                          timestamptz,
    signing_secret                      bytea NOT NULL,
    previous_signing_secret             bytea,
    previous_signing_secret_expires_at  timestamptz,
    public_key                          text,
    previous_public_key                 text,
    created_at                          timestamptz NOT NULL DEFAULT now(),
    updated_at                          timestamptz NOT NULL DEFAULT now(),
    deleted_at                          timestamptz
);
CREATE INDEX endpoints_tenant_idx ON endpoints (tenant_id, id);
CREATE UNIQUE INDEX endpoints_default_key ON endpoints (tenant_id) WHERE is_default AND deleted_at IS NULL;
CREATE TRIGGER endpoints_registry_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION postgate_registry_notify();

-- The first version always delivered postbacks; its events listed the
-- other types.
INSERT INTO endpoints (id, tenant_id, is_default, url, events, rate, burst, concurrency, deliver_test_events,
    disabled_at, disabled_reason, enabled_at, signing_secret, previous_signing_secret,
    previous_signing_secret_expires_at, created_at, updated_at)
SELECT id, id, true, callback_url, '{messaging_postbacks}' || array_remove(events, 'messaging_postbacks'),
    rate, burst, concurrency, deliver_test_events, endpoint_disabled_at, endpoint_disabled_reason,
    endpoint_enabled_at, signing_secret, previous_signing_secret, previous_signing_secret_expires_at,
    created_at, updated_at
FROM tenants;

ALTER TABLE tenants DROP COLUMN callback_url, DROP COLUMN events, DROP COLUMN rate, DROP COLUMN burst,
    DROP COLUMN concurrency, DROP COLUMN deliver_test_events, DROP COLUMN endpoint_disabled_at,
    DROP COLUMN endpoint_disabled_reason, DROP COLUMN endpoint_enabled_at, DROP COLUMN signing_secret,
    DROP COLUMN previous_signing_secret, DROP COLUMN previous_signing_secret_expires_at;

-- What a search and the Meta format need of an event:
-- sender is the person of the conversation (sender.id, else
-- sender.user_ref; for an echo the recipient), for the search by sender
-- and for ordering; entry_time is entry[].time exactly as Meta sent it
-- (the bytes of a JSON number or string), NULL when absent; item is the changes[] item
-- as Meta sent it, NULL when the item is the body's "event" (messaging[],
-- standby[]). Events accepted before this migration have no sender and
-- no entry_time: a search by sender does not find them, and the Meta
-- format sends their received time.
ALTER TABLE events ADD COLUMN sender text COLLATE "C", ADD COLUMN entry_time bytea, ADD COLUMN item bytea;
-- (sender) alone, not (tenant_id, sender, id): a search by sender names
-- the tenant in a way no index serves (package event), so that stale
-- statistics cannot make the planner read the tenant's events along the
-- primary key instead (PSIDs are per Page, so the tenant filters little);
-- and with equal keys B-tree deduplication keeps one entry per person
-- and a list of row pointers, a fraction of the size and the WAL of one
-- (sender, id) entry per event. A person's events are sorted by id after.
CREATE INDEX events_sender_idx ON events (sender) WHERE sender IS NOT NULL;

-- One delivery per (event, endpoint). A delivery's row now stays when it
-- settles (status delivered or dead, settled_at): each endpoint's status
-- and attempts are kept. The due index only holds what is still to do.
-- The key leads with the endpoint: claims, outcomes and a search by
-- endpoint use it; the deliveries of one event are found through its
-- tenant's endpoints (a handful), so no second index is paid for on
-- ingest. The event's own status is its worst delivery's (dead, failed,
-- pending, delivered), kept by whoever changes a delivery (package
-- event), in the same transaction.
ALTER TABLE deliveries ADD COLUMN endpoint_id uuid,
    ADD COLUMN status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'failed', 'delivered', 'dead')),
    ADD COLUMN settled_at timestamptz;
UPDATE deliveries d SET endpoint_id = d.tenant_id, status = e.status
FROM events e WHERE e.id = d.event_id AND e.tenant_id = d.tenant_id;
DELETE FROM deliveries WHERE endpoint_id IS NULL;
ALTER TABLE deliveries ALTER COLUMN endpoint_id SET NOT NULL;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_pkey, ADD PRIMARY KEY (endpoint_id, event_id);
DROP INDEX deliveries_due_idx;
CREATE INDEX deliveries_due_idx ON deliveries (endpoint_id, next_attempt_at) WHERE status IN ('pending', 'failed');
-- Settled events keep their history with the default endpoint.
INSERT INTO deliveries (tenant_id, event_id, endpoint_id, status, attempts, attempted, settled_at, next_attempt_at, queued_at)
SELECT e.tenant_id, e.id, e.tenant_id, e.status, e.attempts,
    (SELECT coalesce(max(a.attempt), 0) FROM delivery_attempts a WHERE a.tenant_id = e.tenant_id AND a.event_id = e.id),
    coalesce(e.delivered_at, e.dead_at, e.received_at), e.received_at, e.received_at
FROM events e WHERE e.status IN ('delivered', 'dead');

ALTER TABLE delivery_attempts ADD COLUMN endpoint_id uuid;
UPDATE delivery_attempts SET endpoint_id = tenant_id;
ALTER TABLE delivery_attempts ALTER COLUMN endpoint_id SET NOT NULL;

-- Fan-out: every event inserted with work to do gets, in the same
-- statement, a delivery for each endpoint of its tenant whose filters
-- take it, as the endpoints are at that moment (a deleted endpoint takes
-- nothing).
--
-- An event's status is not stored with it any more: it is its worst
-- delivery's (dead, failed, pending, delivered), read from its
-- deliveries (package event), so an outcome writes only its delivery,
-- whatever other endpoints the event went to. events.status,
-- attempts, delivered_at and dead_at now describe only an event with no
-- delivery: inserted settled (the first version's history), or taken by
-- no endpoint (the ingress checks its copy of the endpoints first, so
-- only one changed in the instant between): 'pending' there reads as
-- dead, replayable.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION deliveries_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deliveries (tenant_id, event_id, endpoint_id)
    SELECT n.tenant_id, n.id, ep.id
    FROM new_events n JOIN endpoints ep ON ep.tenant_id = n.tenant_id
    WHERE n.status IN ('pending', 'failed') AND ep.deleted_at IS NULL
      AND (n.type = ANY (ep.events) OR ('*' = ANY (ep.events) AND n.type NOT LIKE 'postgate.%'))
      AND (ep.pages = '{}' OR n.page_id = ANY (ep.pages))
      AND (NOT n.test OR ep.deliver_test_events);
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- The deliveries of deleted events are found through their tenant's
-- endpoints (the key), and so are a deleted tenant's.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION deliveries_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deliveries d USING old_events o, endpoints ep
    WHERE ep.tenant_id = o.tenant_id AND d.endpoint_id = ep.id AND d.event_id = o.id;
    DELETE FROM delivery_attempts a USING old_events o
    WHERE a.tenant_id = o.tenant_id AND a.event_id = o.id;
    RETURN NULL;
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenants_forget_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deliveries WHERE endpoint_id IN (SELECT id FROM endpoints WHERE tenant_id = OLD.id);
    RETURN OLD;
END $$;
-- +goose StatementEnd

-- Deleting an endpoint through the API marks it deleted_at: it takes no
-- more events and is gone from the API, but the deliveries it settled
-- stay (each event's history and status keep them). Its deliveries still
-- to make are dropped when it is marked, whoever marks it; an event left
-- with none then reads as dead, replayable. A hard delete (its tenant's)
-- drops every delivery first: deliveries before events, the lock order.
-- +goose StatementBegin
CREATE FUNCTION endpoints_forget_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM deliveries WHERE endpoint_id = OLD.id;
        RETURN OLD;
    END IF;
    DELETE FROM deliveries WHERE endpoint_id = NEW.id AND status IN ('pending', 'failed');
    RETURN NEW;
END $$;
-- +goose StatementEnd
CREATE TRIGGER endpoints_forget_queue BEFORE DELETE ON endpoints
    FOR EACH ROW EXECUTE FUNCTION endpoints_forget_queue();
CREATE TRIGGER endpoints_deleted_forget_queue AFTER UPDATE OF deleted_at ON endpoints
    FOR EACH ROW WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL)
    EXECUTE FUNCTION endpoints_forget_queue();

-- +goose Down
-- Lossy: only the default endpoint survives, as the tenant's fields; a
-- tenant without one gets an empty callback URL and no usable secret.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenants_forget_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deliveries WHERE tenant_id = OLD.id;
    RETURN OLD;
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION deliveries_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deliveries d USING old_events o
    WHERE d.event_id = o.id;
    DELETE FROM delivery_attempts a USING old_events o
    WHERE a.tenant_id = o.tenant_id AND a.event_id = o.id;
    RETURN NULL;
END $$;
-- +goose StatementEnd
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION deliveries_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deliveries (tenant_id, event_id)
    SELECT tenant_id, id FROM new_events WHERE status IN ('pending', 'failed');
    RETURN NULL;
END $$;
-- +goose StatementEnd
-- The first version keeps an event's status on its row, pending or
-- failed exactly while it has a queue row: that of its default endpoint's
-- delivery still to make. An event without one takes its default
-- endpoint's settled status, or the worst of its others', where work
-- left there (which the first version cannot do) counts as dead.
UPDATE events e SET status = x.status, attempts = x.attempts,
    delivered_at = CASE WHEN x.status = 'delivered' THEN x.settled END,
    dead_at = CASE WHEN x.status = 'dead' THEN coalesce(x.settled, now()) END
FROM (
    SELECT d.event_id,
        CASE WHEN count(*) FILTER (WHERE ep.is_default AND ep.deleted_at IS NULL) > 0
            THEN max(d.status) FILTER (WHERE ep.is_default AND ep.deleted_at IS NULL)
            ELSE replace(replace((ARRAY['delivered', 'pending', 'failed', 'dead'])[max(CASE d.status
                WHEN 'delivered' THEN 1 WHEN 'pending' THEN 2 WHEN 'failed' THEN 3 ELSE 4 END)], 'pending', 'dead'), 'failed', 'dead')
        END AS status,
        coalesce(max(d.attempts) FILTER (WHERE ep.is_default AND ep.deleted_at IS NULL), max(d.attempts)) AS attempts,
        coalesce(max(d.settled_at) FILTER (WHERE ep.is_default AND ep.deleted_at IS NULL), max(d.settled_at)) AS settled
    FROM deliveries d JOIN endpoints ep ON ep.id = d.endpoint_id
    GROUP BY d.event_id
) x WHERE e.id = x.event_id;
ALTER TABLE delivery_attempts DROP COLUMN endpoint_id;
DELETE FROM deliveries d WHERE d.status NOT IN ('pending', 'failed')
    OR NOT EXISTS (SELECT 1 FROM endpoints ep WHERE ep.id = d.endpoint_id AND ep.is_default AND ep.deleted_at IS NULL);
UPDATE events SET status = 'dead', dead_at = coalesce(dead_at, now())
WHERE status IN ('pending', 'failed') AND id NOT IN (SELECT event_id FROM deliveries);
DROP INDEX deliveries_due_idx;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_pkey, ADD PRIMARY KEY (event_id);
CREATE INDEX deliveries_due_idx ON deliveries (tenant_id, next_attempt_at);
ALTER TABLE deliveries DROP COLUMN endpoint_id, DROP COLUMN status, DROP COLUMN settled_at;
DROP INDEX events_sender_idx;
ALTER TABLE events DROP COLUMN sender, DROP COLUMN entry_time, DROP COLUMN item;
ALTER TABLE tenants ADD COLUMN callback_url text NOT NULL DEFAULT '',
    ADD COLUMN events text[] NOT NULL DEFAULT '{}',
    ADD COLUMN rate integer CHECK (rate > 0),
    ADD COLUMN burst integer CHECK (burst > 0),
    ADD COLUMN concurrency integer CHECK (concurrency > 0),
    ADD COLUMN deliver_test_events boolean NOT NULL DEFAULT true,
    ADD COLUMN endpoint_disabled_at timestamptz,
    ADD COLUMN endpoint_disabled_reason text,
    ADD COLUMN endpoint_enabled_at timestamptz,
    ADD COLUMN signing_secret bytea NOT NULL DEFAULT '\x',
    ADD COLUMN previous_signing_secret bytea,
    ADD COLUMN previous_signing_secret_expires_at timestamptz;
ALTER TABLE tenants ALTER COLUMN callback_url DROP DEFAULT, ALTER COLUMN signing_secret DROP DEFAULT;
UPDATE tenants t SET callback_url = ep.url, events = array_remove(ep.events, 'messaging_postbacks'),
    rate = ep.rate, burst = ep.burst, concurrency = ep.concurrency, deliver_test_events = ep.deliver_test_events,
    endpoint_disabled_at = ep.disabled_at, endpoint_disabled_reason = ep.disabled_reason,
    endpoint_enabled_at = ep.enabled_at, signing_secret = ep.signing_secret,
    previous_signing_secret = ep.previous_signing_secret,
    previous_signing_secret_expires_at = ep.previous_signing_secret_expires_at
FROM endpoints ep WHERE ep.tenant_id = t.id AND ep.is_default AND ep.deleted_at IS NULL;
DROP TABLE endpoints;
DROP FUNCTION endpoints_forget_queue();
