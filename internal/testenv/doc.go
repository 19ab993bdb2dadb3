// Package testenv gives tests real Postgres and Redis, isolated so that
// `go test ./...` can run every package in parallel.
//
// Postgres: each call to Postgres creates a fresh database cloned from a
// template that holds the migrated schema. The template's name carries a
// hash of the migrations, so it is built once per schema version (under an
// advisory lock, by whichever package gets there first) and cloning it takes
// milliseconds. The database is dropped when the test ends.
//
// Redis: each call to Redis returns a client and a key prefix of its own;
// the keys under it are deleted when the test ends.
//
// TEST_DATABASE_URL (a maintenance database, default the local "postgres")
// and TEST_REDIS_URL (default redis://127.0.0.1:6379/0) point at the
// services. If one is unreachable the test fails with the command that
// starts it; it never skips.
package testenv
