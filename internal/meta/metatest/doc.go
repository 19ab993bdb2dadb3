// Package metatest is a fake Meta Graph API for tests: an httptest server
// that checks access tokens and appsecret_proof, runs the webhook
// verification handshake against the callback URL, keeps apps' and Pages'
// subscriptions, and answers with Meta's error JSON (codes, subcodes,
// messages, a random fbtrace_id) where Meta would refuse.
//
// It models an app with "Require App Secret" on: every call with a Page
// token must carry appsecret_proof. It serves the endpoints package meta's
// Client uses; anything else is refused as Meta refuses an unsupported
// request.
//
// Invariants: it never reaches beyond the addresses tests give it (the
// handshake GET goes to the callback URL, nowhere else), it is safe for
// concurrent use, and it closes itself when the test ends.
package metatest
