-- +goose Up
-- Every accepted event, and at the same time its delivery work: a row is
-- inserted in the transaction that lets the ingress answer Meta, so an
-- accepted event can never exist without its delivery work. Workers claim
-- due rows (status pending or failed, next_attempt_at <= now()) with
-- FOR UPDATE SKIP LOCKED; a claim is a lease that expires, so rows held by
-- a dead worker come back on their own.
--
-- body is the exact JSON document POSTed to the tenant (bytea: jsonb would
-- reorder keys and rewrite Meta's escapes).
--
-- Ids are UUIDv7, so the primary key (tenant_id, id) also lists a tenant's
-- events in the order they arrived; no separate time index is kept (every
-- index is paid for on the ingest hot path).
--
-- page_id and dedup_key use the "C" collation: the unique index compares
-- them on every insert, and only C (not C.UTF-8 or en_US) compares with
-- memcmp; nobody sorts them for humans.
--
-- (tenant_id, page_id, dedup_key) is the durable de-duplication key: the
-- ingress inserts with ON CONFLICT DO NOTHING, so a redelivery by Meta is
-- caught here even when Redis has forgotten it.
CREATE TABLE events (
    id               uuid NOT NULL,
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    page_id          text COLLATE "C" NOT NULL,
    app_id           text NOT NULL,
    dedup_key        text COLLATE "C" NOT NULL,
    type             text NOT NULL,
    test             boolean NOT NULL DEFAULT false,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'failed', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    leased_until     timestamptz,
    received_at      timestamptz NOT NULL,
    delivered_at     timestamptz,
    body             bytea NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT events_dedup_key UNIQUE (tenant_id, page_id, dedup_key)
);
CREATE INDEX events_due_idx ON events (next_attempt_at) WHERE status IN ('pending', 'failed');

-- +goose Down
DROP TABLE events;
