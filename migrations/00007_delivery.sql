-- +goose Up
-- Every delivery attempt of an event: when, what the endpoint answered (or
-- why no answer came), how long it took, and the first KiB of the response.
-- Written in batches by the delivery workers; read by the admin API's event
-- detail. Attempts go with their event (ON DELETE CASCADE: retention, a
-- deleted tenant). attempt counts from 1 since the event was accepted or
-- last replayed; id orders attempts and keeps a replayed event's new
-- attempts apart from its old ones.
CREATE TABLE delivery_attempts (
    tenant_id         uuid NOT NULL,
    event_id          uuid NOT NULL,
    id                bigint GENERATED ALWAYS AS IDENTITY,
    attempt           integer NOT NULL,
    attempted_at      timestamptz NOT NULL,
    status_code       integer,
    latency_us        bigint NOT NULL,
    error_class       text NOT NULL,
    error_message     text,
    response_snippet  text,
    PRIMARY KEY (tenant_id, event_id, id),
    CONSTRAINT delivery_attempts_event_fkey FOREIGN KEY (tenant_id, event_id)
        REFERENCES events (tenant_id, id) ON DELETE CASCADE
);

-- The claim takes, per tenant, its oldest due events: this index serves that
-- per-tenant probe (the global events_due_idx cannot).
CREATE INDEX events_tenant_due_idx ON events (tenant_id, next_attempt_at) WHERE status IN ('pending', 'failed');

-- +goose Down
DROP INDEX events_tenant_due_idx;
DROP TABLE delivery_attempts;
