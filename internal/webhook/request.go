package webhook

import "time"

// Request is one webhook POST as the HTTP layer received it.
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

// Outcome is how a POST ended; each maps to one HTTP status.
type Outcome int

// Outcomes, in the order of SPEC's bad-input table.
const (
	OutcomeAccepted     Outcome = iota // 200: events walked and stored
	OutcomeBadSignature                // 401: header missing/malformed, or no candidate's secret matches
	OutcomeNotJSON                     // 400: /webhook body is not JSON (no app can be known)
	OutcomeUnroutable                  // 200: /webhook, no Page in the body is registered
	OutcomeQuarantined                 // 200: /webhook/{app_id}, signed but unparseable; kept
	OutcomeUnavailable                 // 503: Postgres unavailable; Meta retries
)

// Status is the HTTP status of an outcome.
func (o Outcome) Status() int {
	switch o {
	case OutcomeBadSignature:
		return 401
	case OutcomeNotJSON:
		return 400
	case OutcomeUnavailable:
		return 503
	default:
		return 200
	}
}

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
