// Package event owns what an accepted event is and everything stored about
// it: the events, deliveries, delivery_attempts and quarantine tables
// (their SQL, the triggers' contract, the lock order), the vocabulary
// (types, statuses, evt_ and qrn_ ids) and the payload builder of the body
// a tenant receives.
//
// Its callers use a small API and never write SQL against these tables:
//
//   - the ingress (package webhook) stores accepted events with Insert, in
//     one group-committed statement, quarantines unparseable bodies with
//     Quarantine, and wakes the workers with Wake;
//   - the delivery workers claim due work with Claim, report what came of
//     it with Record, and run Expire and Purge; Listen tells them when the
//     ingress has committed new work;
//   - the admin API lists, reads and replays through the Service.
//
// Contracts it keeps:
//
//   - Trigger contract (migrations 00008): inserting an events row with
//     status pending or failed inserts its deliveries row in the same
//     statement; deleting an events row deletes its deliveries row and its
//     attempts. So an accepted event is never without its delivery work,
//     whoever inserts it.
//   - Lock order: every statement that changes both deliveries and events
//     locks the deliveries rows first (Record, Expire, the replays; and
//     deleting a tenant, whose BEFORE DELETE trigger of migration 11 clears
//     its queue before the cascade reaches its events). Writers retry once
//     or twice on a deadlock all the same.
//   - A deliveries row exists only while its event has work to do
//     (pending, failed, or waiting behind a disabled endpoint); its
//     leased_until is the token an outcome must match.
//   - Attempt numbers count across the event's whole life: a replay does
//     not start them again at 1 (the retry count that the schedule uses
//     does restart).
//
// It never imports the tenant package (tenant uses this vocabulary to
// validate subscriptions) and never logs a body.
package event
