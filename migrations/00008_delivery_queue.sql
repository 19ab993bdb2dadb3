-- +goose Up
-- The delivery queue moves out of events into a narrow table of its own.
--
-- Why: while the queue lived in events, every claim and every outcome
-- rewrote the whole row, body included, and neither could be a HOT update
-- (the due indexes cover the columns they change): three copies of each
-- event and ten index entries per delivery, 3-6 KB of WAL per delivered
-- event, which capped delivery well below ingest.
--
-- Now an event is written once at acceptance and once more when it settles
-- (delivered, failed, dead: status and attempts, which no index covers, so
-- with the free space fillfactor leaves that update is HOT and logs only
-- the changed bytes). Everything that changes per claim lives in
-- deliveries, a row of about 60 bytes per event that still has work to do:
-- pending, failed (waiting for a retry) or paused behind a disabled
-- endpoint. A delivered or dead event has no deliveries row.
--
-- next_attempt_at is both the schedule and the lease: a claim sets it to
-- the lease's end and leased_until to the same value (the claim's token),
-- so "due" is just next_attempt_at <= now() and the claim's index probe
-- never walks past rows another worker holds. An outcome is written only
-- where leased_until still equals the token it claimed with; a replay or a
-- takeover after the lease ran out replaces the token.
--
-- attempts is the retry count the claim hands the worker (the copy in
-- events is what the API shows): read from the row the claim locks, it
-- cannot be a stale count from before a concurrent replay.
--
-- queued_at is when the work was queued (accepted, replayed, or its
-- endpoint re-enabled): an event of a failing endpoint still queued once
-- the whole retry schedule could have run since then dies even if its
-- attempts were never spent (held behind an open breaker), so a dead
-- endpoint's backlog is bounded.
--
-- Keys that leave the planner no wrong choice. The queue is small when
-- vacuumed and large minutes later, so its statistics are always stale;
-- with a primary key of (tenant_id, event_id) next to the due index
-- (tenant_id, ...), a plan made while the table looked tiny probed the
-- due index by tenant and filtered on event_id, reading the tenant's whole
-- queue per claimed row, and found events through the dedup key the same
-- way (seen with EXPLAIN after a VACUUM of a nearly empty queue; the test
-- TestPlansSurviveStaleStatistics). Event ids are unique on their own, so the key is
-- event_id alone, and every lookup by event uses it and nothing else.
-- For the same reason the events dedup key no longer starts with
-- tenant_id (below): a lookup of an event by (tenant_id, id) can only be
-- the primary key.
--
-- Lock order: every statement that changes both tables locks deliveries
-- rows before events rows (outcomes, expiry, replay, tenant deletion), so
-- they cannot deadlock.
CREATE TABLE deliveries (
    tenant_id        uuid NOT NULL,
    event_id         uuid NOT NULL,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    leased_until     timestamptz,
    attempts         integer NOT NULL DEFAULT 0,
    queued_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id)
);
CREATE INDEX deliveries_due_idx ON deliveries (tenant_id, next_attempt_at);

-- Every event inserted with work to do gets its deliveries row in the same
-- statement, whoever inserts it; and it goes when the event goes (retention,
-- a deleted tenant's cascade). Statement triggers with transition tables:
-- one INSERT or DELETE per statement, not a trigger call per row on the
-- ingest hot path, and no per-row foreign-key check.
-- +goose StatementBegin
CREATE FUNCTION deliveries_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deliveries (tenant_id, event_id)
    SELECT tenant_id, id FROM new_events WHERE status IN ('pending', 'failed');
    RETURN NULL;
END $$;
-- +goose StatementEnd
--
-- The same trigger deletes the event's attempts, in place of the foreign
-- key delivery_attempts had: its per-row check cost a query and a row lock
-- on events for every attempt logged. The workers log an attempt only
-- while its event exists (a guard in the insert, no lock), so the one way
-- to an orphaned attempt is an event deleted in the instant between that
-- guard and the commit.
-- +goose StatementBegin
CREATE FUNCTION deliveries_forget() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM deliveries d USING old_events o
    WHERE d.event_id = o.id;
    DELETE FROM delivery_attempts a USING old_events o
    WHERE a.tenant_id = o.tenant_id AND a.event_id = o.id;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE TRIGGER events_enqueue AFTER INSERT ON events
    REFERENCING NEW TABLE AS new_events FOR EACH STATEMENT EXECUTE FUNCTION deliveries_enqueue();
CREATE TRIGGER events_forget AFTER DELETE ON events
    REFERENCING OLD TABLE AS old_events FOR EACH STATEMENT EXECUTE FUNCTION deliveries_forget();

ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_event_fkey;

-- Work queued before the upgrade: a leased row's lease becomes its
-- next_attempt_at (the new model's lease), so an attempt in flight on an
-- old worker is not claimed again at once; its expiry clock starts now.
-- This and the statements below hold an exclusive lock on events until the
-- migration commits (the backfill reads every pending and dead event): on
-- a large table, migrate in a quiet moment.
INSERT INTO deliveries (tenant_id, event_id, next_attempt_at, leased_until, attempts, queued_at)
SELECT tenant_id, id, greatest(next_attempt_at, leased_until), leased_until, attempts, now()
FROM events WHERE status IN ('pending', 'failed');

-- A dead event keeps when it died (retention counts from it); it was kept
-- in next_attempt_at.
ALTER TABLE events ADD COLUMN dead_at timestamptz;
UPDATE events SET dead_at = next_attempt_at WHERE status = 'dead';

DROP INDEX events_due_idx;
DROP INDEX events_tenant_due_idx;
ALTER TABLE events DROP CONSTRAINT events_dedup_key,
    ADD CONSTRAINT events_dedup_key UNIQUE (page_id, dedup_key, tenant_id);
ALTER TABLE events DROP COLUMN next_attempt_at, DROP COLUMN leased_until;
-- Room on each page for the one settling update of each row, so it stays
-- on its page (HOT).
ALTER TABLE events SET (fillfactor = 60);

-- +goose Down
ALTER TABLE events RESET (fillfactor);
ALTER TABLE events ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN leased_until timestamptz;
UPDATE events e SET next_attempt_at = d.next_attempt_at, leased_until = d.leased_until
FROM deliveries d WHERE d.event_id = e.id;
UPDATE events SET next_attempt_at = dead_at WHERE status = 'dead';
ALTER TABLE events DROP COLUMN dead_at;
ALTER TABLE events DROP CONSTRAINT events_dedup_key,
    ADD CONSTRAINT events_dedup_key UNIQUE (tenant_id, page_id, dedup_key);
CREATE INDEX events_due_idx ON events (next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX events_tenant_due_idx ON events (tenant_id, next_attempt_at) WHERE status IN ('pending', 'failed');
DELETE FROM delivery_attempts a
WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = a.tenant_id AND e.id = a.event_id);
ALTER TABLE delivery_attempts ADD CONSTRAINT delivery_attempts_event_fkey FOREIGN KEY (tenant_id, event_id)
    REFERENCES events (tenant_id, id) ON DELETE CASCADE;
DROP TRIGGER events_forget ON events;
DROP TRIGGER events_enqueue ON events;
DROP FUNCTION deliveries_forget();
DROP FUNCTION deliveries_enqueue();
DROP TABLE deliveries;
