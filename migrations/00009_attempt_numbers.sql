-- +goose Up
-- Attempt numbers count over an event's whole life: a replay used to start
-- them again at 1, so an event's attempt log read 1, 2, 3, 1, 2.
--
-- attempted is the number of attempts the event has had, replays
-- included, as far as the queue knows: a claim counts it up (the claimed
-- attempt's number is the new value, known before the POST, so it can be
-- sent in a header), a release that was not an attempt counts it down
-- again, and a replay of a settled event starts its new queue row from the
-- highest attempt number logged. attempts stays the retry count, which a replay resets.
ALTER TABLE deliveries ADD COLUMN attempted integer NOT NULL DEFAULT 0;
UPDATE deliveries d SET attempted = (
    SELECT count(*) FROM delivery_attempts a WHERE a.tenant_id = d.tenant_id AND a.event_id = d.event_id);
-- (Before this migration every event's log restarted at 1 with each
-- replay, so the count, not the highest number, is how many it had.)

-- +goose Down
ALTER TABLE deliveries DROP COLUMN attempted;
