-- +goose Up
-- Circuit breakers live in each worker process's memory; every worker
-- reports the endpoints whose breaker it holds open (or half-open) here,
-- every StatsEvery, so the console can show them from Postgres. A report
-- older than a minute is a worker that stopped: it is ignored.
CREATE TABLE breaker_reports (
    worker_id    uuid PRIMARY KEY,
    open         uuid[] NOT NULL,
    reported_at  timestamptz NOT NULL
);

-- +goose Down
DROP TABLE breaker_reports;
