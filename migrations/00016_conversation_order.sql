-- +goose Up
-- Ordering per conversation (SPEC "Ordering", guarantee 7). A delivery to
-- an endpoint with ordering 'conversation' of an event with a person
-- carries its conversation and its place in it, (seq, event_id). The
-- conversation is the endpoint, the Page and the person (events.sender:
-- the sender's PSID or user_ref, for an echo the recipient), as a 64-bit
-- hash: a key no other index of deliveries has, so a plan made on stale
-- statistics cannot look a conversation up through the endpoint's whole
-- queue instead; and a small one. Two conversations that collided would
-- only be ordered together (one order, less parallelism), never out of
-- order. hashtextextended is the hash of Postgres's hash partitioning,
-- kept stable across versions for that reason. The claim hands out only a conversation's head: a
-- delivery with no open (pending or failed, leased or not) delivery
-- before it in its conversation. Deliveries of unordered endpoints, and
-- of events without a person, have no conversation and pay nothing.
--
-- Order is commit order. Event ids are made when a request is read, but
-- concurrent requests commit in either order, so an id-ordered queue
-- could hand out a later event while an earlier one, of a transaction not
-- yet committed, was still to appear. So every transaction that queues
-- ordered deliveries first locks its conversations, one row each in
-- conversation_locks (in key order: no deadlock between two batches), and
-- only then draws seq from a sequence: a transaction that queues into a
-- conversation draws after every earlier one into it has committed.
-- Row locks, not advisory locks: they live in the tuple, not in the
-- shared lock table, whatever the batch size. A row is only a lock: seq
-- is global, so a row may be deleted once idle (package event sweeps
-- those untouched for a day) and made again.
--
-- behind is the delivery ahead of this one in its conversation when it was
-- queued (the latest one still open then), for the event's detail: what
-- it waited behind, and, with its first attempt, for how long.
CREATE SEQUENCE deliveries_seq;
ALTER TABLE deliveries ADD COLUMN conversation bigint,
    ADD COLUMN seq bigint,
    ADD COLUMN behind uuid;
-- The open deliveries of each conversation in order: the claim's "is
-- anything before this one?" and the head lookups read it. Only ordered
-- deliveries are in it.
CREATE INDEX deliveries_conversation_idx ON deliveries (conversation, seq, event_id)
    WHERE status IN ('pending', 'failed') AND conversation IS NOT NULL;
CREATE TABLE conversation_locks (
    conversation  bigint PRIMARY KEY,
    touched_at    timestamptz NOT NULL
);

-- deliveries_conversation is the conversation of a delivery to endpoint
-- ep of an event of Page page with person person.
CREATE FUNCTION deliveries_conversation(ep uuid, page text, person text) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN hashtextextended(ep::text || '/' || page || '/' || person, 0);

-- deliveries_order locks the conversations for the rest of the
-- transaction, in key order, and returns the seq to queue behind
-- everything committed into them so far; NULL when it was given none.
-- +goose StatementBegin
CREATE FUNCTION deliveries_order(conversations bigint[]) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO conversation_locks (conversation, touched_at)
    SELECT DISTINCT c, now() FROM unnest(conversations) AS u(c)
    WHERE c IS NOT NULL
    ORDER BY 1
    ON CONFLICT (conversation) DO UPDATE SET touched_at = excluded.touched_at;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN nextval('deliveries_seq');
END $$;
-- +goose StatementEnd

-- The fan-out (migration 12) now queues ordered deliveries apart: locked,
-- numbered, and behind the open delivery before them. The endpoints are
-- matched once, in one statement (one snapshot: an endpoint whose ordering
-- changes meanwhile is taken one way or the other, never both or
-- neither), which queues the unordered deliveries and collects the
-- ordered ones.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION deliveries_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    tids uuid[];
    ids uuid[];
    eps uuid[];
    convs bigint[];
    s bigint;
BEGIN
    WITH m AS (
        SELECT n.tenant_id, n.id, ep.id AS endpoint_id,
            CASE WHEN ep.ordering = 'conversation' AND n.sender IS NOT NULL
                THEN deliveries_conversation(ep.id, n.page_id, n.sender) END AS conversation
        FROM new_events n JOIN endpoints ep ON ep.tenant_id = n.tenant_id
        WHERE n.status IN ('pending', 'failed') AND ep.deleted_at IS NULL
          AND (n.type = ANY (ep.events) OR ('*' = ANY (ep.events) AND n.type NOT LIKE 'postgate.%'))
          AND (ep.pages = '{}' OR n.page_id = ANY (ep.pages))
          AND (NOT n.test OR ep.deliver_test_events)
    ), unordered AS (
        INSERT INTO deliveries (tenant_id, event_id, endpoint_id)
        SELECT tenant_id, id, endpoint_id FROM m WHERE conversation IS NULL
    )
    SELECT array_agg(tenant_id), array_agg(id), array_agg(endpoint_id), array_agg(conversation)
    INTO tids, ids, eps, convs
    FROM m WHERE conversation IS NOT NULL;
    IF ids IS NULL THEN
        RETURN NULL;
    END IF;
    s := deliveries_order(convs);
    -- Within one statement, the order Meta listed them in: their ids.
    INSERT INTO deliveries (tenant_id, event_id, endpoint_id, conversation, seq, behind)
    SELECT u.tenant_id, u.id, u.endpoint_id, u.conversation, s,
        coalesce(lag(u.id) OVER w, (SELECT h.event_id FROM deliveries h
            WHERE h.conversation = u.conversation AND h.status IN ('pending', 'failed')
            ORDER BY h.seq DESC, h.event_id DESC LIMIT 1))
    FROM unnest(tids, ids, eps, convs) AS u(tenant_id, id, endpoint_id, conversation)
    WINDOW w AS (PARTITION BY u.conversation ORDER BY u.id);
    RETURN NULL;
END $$;
-- +goose StatementEnd

-- +goose Down
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
DROP FUNCTION deliveries_order(bigint[]);
DROP FUNCTION deliveries_conversation(uuid, text, text);
DROP TABLE conversation_locks;
DROP INDEX deliveries_conversation_idx;
ALTER TABLE deliveries DROP COLUMN conversation, DROP COLUMN seq, DROP COLUMN behind;
DROP SEQUENCE deliveries_seq;
UPDATE endpoints SET ordering = 'none' WHERE ordering = 'conversation';
