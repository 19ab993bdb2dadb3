-- +goose Up
-- Meta set-up and health (package meta).
--
-- apps.name is what Meta calls the app, read when its ownership is proved.
-- pages.access_token is the Page access token the gateway subscribes the
-- Page and checks its subscription with: sealed like the app secrets
-- (binding "pages.access_token:<page_id>:<app_id>"), never returned.
ALTER TABLE apps ADD COLUMN name text NOT NULL DEFAULT '';
ALTER TABLE pages ADD COLUMN access_token bytea;

-- The last health check of each app's webhook subscription. problem is
-- NULL while healthy; since is when the current state (healthy, or the
-- first problem) began; announced, whether a postgate.health event said
-- so (the first state of a new app or Page is not a change and is not
-- announced; nor is the end of a problem that never was). A check that
-- could not be made sets error and keeps the state.
CREATE TABLE app_health (
    app_id                text PRIMARY KEY,
    tenant_id             uuid NOT NULL,
    active                boolean NOT NULL DEFAULT false,
    callback_url          text NOT NULL DEFAULT '',
    callback_url_matches  boolean NOT NULL DEFAULT false,
    fields                text[] NOT NULL DEFAULT '{}',
    missing_fields        text[] NOT NULL DEFAULT '{}',
    checked_at            timestamptz,
    error                 text,
    problem               text,
    since                 timestamptz NOT NULL,
    announced             boolean NOT NULL DEFAULT false,
    CONSTRAINT app_health_app_fkey FOREIGN KEY (tenant_id, app_id)
        REFERENCES apps (tenant_id, app_id) ON DELETE CASCADE
);

-- The same for each registered (Page, app): the app's subscription on the
-- Page (checked only with a Page access token) and the Page's silence.
CREATE TABLE page_health (
    page_id            text NOT NULL,
    app_id             text NOT NULL,
    tenant_id          uuid NOT NULL,
    subscribed_fields  text[] NOT NULL DEFAULT '{}',
    missing_fields     text[] NOT NULL DEFAULT '{}',
    checked_at         timestamptz,
    error              text,
    silent             boolean NOT NULL DEFAULT false,
    problem            text,
    since              timestamptz NOT NULL,
    announced          boolean NOT NULL DEFAULT false,
    PRIMARY KEY (page_id, app_id),
    CONSTRAINT page_health_page_fkey FOREIGN KEY (page_id, app_id)
        REFERENCES pages (page_id, app_id) ON DELETE CASCADE
);
CREATE INDEX page_health_tenant_idx ON page_health (tenant_id);

-- What a Page received, summarised per UTC day from the accepted events
-- (not test events, not the gateway's own): events per hour of the day,
-- the gaps between consecutive events as a log-scale histogram (bucket 0:
-- under a second; bucket k: [2^((k-1)/4), 2^(k/4)) seconds), and the
-- first and last event. Silence is computed from these rows, never from
-- the events table.
CREATE TABLE page_activity (
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    page_id    text COLLATE "C" NOT NULL,
    day        date NOT NULL,
    hours      integer[] NOT NULL,
    gaps       integer[] NOT NULL,
    first_at   timestamptz NOT NULL,
    last_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, page_id, day)
);

-- The last accepted event of each app.
CREATE TABLE app_activity (
    tenant_id      uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    app_id         text NOT NULL,
    last_event_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, app_id)
);

-- Webhook POSTs whose signature matched none of the app's secrets, per
-- minute: the ingress adds its counts every few seconds.
CREATE TABLE app_signature_failures (
    app_id    text NOT NULL,
    minute    timestamptz NOT NULL,
    failures  integer NOT NULL,
    PRIMARY KEY (app_id, minute)
);

-- How far the health checker has summarised the events table: events
-- whose id (a UUIDv7) is below scanned_to's are in page_activity.
CREATE TABLE meta_scan (
    id          integer PRIMARY KEY CHECK (id = 1),
    scanned_to  timestamptz NOT NULL
);

-- +goose Down
DROP TABLE meta_scan;
DROP TABLE app_signature_failures;
DROP TABLE app_activity;
DROP TABLE page_activity;
DROP TABLE page_health;
DROP TABLE app_health;
ALTER TABLE pages DROP COLUMN access_token;
ALTER TABLE apps DROP COLUMN name;
