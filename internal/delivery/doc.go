// Package delivery forwards accepted events to their tenants' callback URLs:
// it claims due work from the queue, signs and POSTs each event with the
// Standard Webhooks headers, schedules retries, records every attempt,
// pauses a tenant whose endpoint answers 410 (through the registry), keeps
// a circuit breaker per endpoint (reset when the endpoint is re-enabled),
// expires the backlog of an endpoint that stays down, and purges old
// events.
//
// It writes no SQL: the queue and the attempt log are package event's
// (Claim, Record, Expire, Purge), the tenants table package tenant's. It
// owns the delivery policy (retry schedule, jitter, Retry-After, breaker,
// rate and in-flight limits) and the Redis keys t:<tenant>:rate (under
// Config.KeyPrefix). It reads the tenant's endpoint, limits and signing
// keys from the tenant Registry and never from a query per delivery.
//
// Invariants:
//
//   - At least once. A row is claimed by setting leased_until (the lease)
//     and next_attempt_at to the lease's end in the claiming statement;
//     only an outcome written under that same lease value ends or moves
//     the work. A worker that dies leaves leases that expire after
//     Config.Lease, and the rows are claimed again. An outcome whose lease
//     has been replaced (a replay, an expired lease taken over by another
//     worker) changes nothing but the attempt log. An event leaves the
//     queue only delivered or dead (listed, replayable).
//   - Waiting is not failing. Time spent behind the tenant's rate limit,
//     its in-flight cap or its open circuit breaker never counts as an
//     attempt: such events are not claimed, or are released unchanged
//     except for a later next_attempt_at.
//   - Isolation. A tenant never holds more than its in-flight cap of this
//     worker's slots, every attempt is bounded by Config.Timeout, and one
//     claim statement shares the free slots fairly: every tenant's oldest
//     due event before any tenant's second.
//   - Outbound safety. Unless AllowPrivate, every connection is checked at
//     dial time against private, loopback, link-local and metadata ranges
//     (after DNS, so rebinding is covered); redirects are never followed;
//     responses are read up to a cap; proxies from the environment are
//     ignored.
//   - Nothing secret or tenant-owned in logs: one line per attempt with the
//     tenant id, event id, status and outcome class, never a body, a
//     signature or a callback URL (it may carry a token).
package delivery
