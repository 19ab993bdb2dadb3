// Package tenant owns who a tenant is: its callback endpoint and limits, its
// Meta apps (with their encrypted secrets and verify tokens), its Pages, its
// Standard Webhooks signing secret, and the admin-API tokens that act for
// it: the tenants, apps and pages tables. It knows nothing of events
// beyond the type names a subscription may use (package event); the 410
// path reaches the tenants table through Registry.DisableEndpoint.
//
// The Store keeps this in Postgres (rows are unexported beside the store; the
// domain types here carry no storage or wire tags). The Registry is the
// in-memory copy the ingress and the delivery workers read: Page → (app,
// tenant), app → secrets, and tenant → endpoint, limits and signing keys, rebuilt
// on every change (LISTEN postgate_registry) and periodically as a
// backstop, so resolving a webhook never queries the database.
//
// Invariants: a Page hangs only on an app of its own tenant; plaintext
// secrets exist only in memory (the Registry, a create/rotate response) and
// never in a log line or an error.
package tenant
