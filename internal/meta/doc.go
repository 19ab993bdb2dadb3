// Package meta owns the gateway's conversation with Meta's Graph API: a
// small Client that reads an app, subscribes the app to webhooks (which
// makes Meta run its verification handshake against our callback URL),
// subscribes Pages to the app, and reads both subscriptions back. The
// health checker that compares those subscriptions with what the gateway
// expects will live here too.
//
// Package metatest holds a fake Graph API that behaves like Meta (token and
// appsecret_proof checks, the handshake, Meta's error JSON) for tests.
//
// Invariants:
//
//   - Nothing secret leaves this package in an error: no access token, app
//     secret, appsecret_proof or verify token. Errors from net/http carry
//     the request URL (and with it the access_token query parameter); the
//     Client unwraps and rephrases them, and it redacts every secret of the
//     call from any text it puts in an error (Meta's message, a body
//     excerpt).
//   - Every call made with a Page access token carries appsecret_proof.
//   - Only rate limits, HTTP 5xx and transport failures are retried; any
//     other Meta error (a wrong secret, a revoked token) is final.
//   - Answers are read up to 1 MiB; redirects are not followed.
//   - The package never logs.
package meta
