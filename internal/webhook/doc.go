// Package webhook owns Meta's webhook envelopes and the ingest use case:
// checking the signature over the raw bytes, walking a batch into events,
// resolving each event's tenant through the tenant Registry, de-duplicating
// (Redis as a fast path, Postgres as the durable key), and storing the
// accepted events, each with its delivery work, before the caller answers
// Meta. It writes no SQL: the group commit hands each batch to
// event.Store.Insert.
//
// It must never acknowledge an event that is not committed, never let one
// bad event sink its siblings, never keep the caller's body buffer after
// Ingest returns, and never import Fiber (HTTP lives in package api).
package webhook
