package webhook

import "time"

// Request is one webhook POST as the HTTP layer received it. Its strings
// and Body may point into the HTTP layer's buffers: they are valid only
// until Ingest returns, and Ingest copies nothing of them that it keeps
// (labels and log attributes come from the registry's own copies).
type Request struct {
	// AppID is the app named in the path (/webhook/{app_id}); empty on
	// /webhook.
	AppID string
	// Body is the raw request body. Ingest does not keep it after it
	// returns.
	Body []byte
	// Signature256 is X-Hub-Signature-256; Signature1 the legacy
	// X-Hub-Signature (used only when the app allows it and 256 is absent).
	Signature256 string
	Signature1   string
	ReceivedAt   time.Time
}

// Outcome is how a POST ended; the HTTP layer maps each to one status
// (SPEC's bad-input table).
type Outcome int

// Outcomes, in the order of SPEC's bad-input table.
const (
	OutcomeAccepted     Outcome = iota // events walked and stored
	OutcomeBadSignature                // header missing/malformed, or no candidate's secret matches
	OutcomeNotJSON                     // /webhook body is not JSON (no app can be known)
	OutcomeUnroutable                  // /webhook, no Page in the body is registered
	OutcomeQuarantined                 // /webhook/{app_id}, signed but unparseable; kept
	OutcomeUnavailable                 // Postgres unavailable; Meta retries
)

// Result is what Ingest did with a request.
type Result struct {
	Outcome Outcome
	// Message is a short, safe explanation for the response body.
	Message string
	// AppID is the app that signed the request, when known.
	AppID string
	// Counts of events by what happened to them.
	Accepted, Duplicates, Unroutable, Inconsistent, Filtered, Invalid int
}
