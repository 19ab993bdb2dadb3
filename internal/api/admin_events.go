package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"time"
	"unicode/utf8"

	"github.com/postgate/postgate/internal/event"
)

// Event is an event in a list of the admin API.
type Event struct {
	ID            string     `json:"id" doc:"evt_ and 32 hex digits; also the webhook-id of its deliveries."`
	Type          string     `json:"type"`
	Test          bool       `json:"test"`
	Status        string     `json:"status" enum:"pending,failed,delivered,dead"`
	PageID        string     `json:"page_id"`
	AppID         string     `json:"app_id"`
	Sender        string     `json:"sender,omitempty" doc:"The person of the conversation: the sender's PSID or user_ref (for an echo, the recipient's)."`
	AttemptCount  int        `json:"attempt_count" doc:"Delivery attempts since the event was accepted or last replayed, summed over its endpoints: with one endpoint, the position in the retry schedule."`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty" doc:"When the next attempt is due (pending and failed events)."`
	ReceivedAt    time.Time  `json:"received_at"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty" doc:"The successful delivery (absent again after a replay, until the replay is delivered)."`
	DeadAt        *time.Time `json:"dead_at,omitempty" doc:"When the last retry failed (dead events)."`
}

func eventOf(e event.Event) Event {
	out := Event{
		ID:           event.FormatID(e.ID),
		Type:         e.Type,
		Test:         e.Test,
		Status:       string(e.Status),
		PageID:       e.PageID,
		AppID:        e.AppID,
		Sender:       e.Sender,
		AttemptCount: e.Attempts,
		ReceivedAt:   e.ReceivedAt,
		DeliveredAt:  e.DeliveredAt,
		DeadAt:       e.DeadAt,
	}
	if !e.Status.Settled() && !e.NextAttemptAt.IsZero() {
		next := e.NextAttemptAt
		out.NextAttemptAt = &next
	}
	return out
}

// EventParams names an event of a tenant in the path.
type EventParams struct {
	TenantParams
	EventID string `path:"event_id" pattern:"^evt_[0-9a-f]{32}$"`
}

type listEventsIn struct {
	TenantParams
	ListParams
	Status string `query:"status" enum:"pending,failed,delivered,dead"`
	Type   string `query:"type" enum:"messaging_postbacks,messages,message_echoes,message_deliveries,message_reads,messaging_referrals,messaging_optins,message_reactions,messaging_handovers,standby,messaging_policy_enforcement,messaging_account_linking,other" doc:"Only events of this type."`
	PageID string `query:"page_id" pattern:"^[0-9]{1,20}$"`
	Mid    string `query:"mid" minLength:"1" maxLength:"512" doc:"The event with this message id (a postback's or message's mid), among the tenant's registered Pages, or in page_id when given."`
	Sender string `query:"sender" minLength:"1" maxLength:"512" doc:"The events of one person: a PSID or user_ref (echoes count as the conversation of their recipient)."`
	// The pattern is checked by the service: huma's would echo the value.
	EndpointID string    `query:"endpoint_id" maxLength:"64" doc:"Only events delivered to this endpoint (ep_...); the status filter, and each event's status, attempt_count, next_attempt_at, delivered_at and dead_at, are then that delivery's."`
	Since      time.Time `query:"since" doc:"Received at or after (RFC 3339)."`
	Until      time.Time `query:"until" doc:"Received before (RFC 3339)."`
}

func (h *adminAPI) listEvents(ctx context.Context, in *listEventsIn) (*listOut[Event], error) {
	f := event.Filter{Status: event.Status(in.Status), Type: in.Type, PageID: in.PageID, Mid: in.Mid, Sender: in.Sender,
		Since: in.Since, Until: in.Until}
	if in.EndpointID != "" {
		id, err := event.ParseEndpointID(in.EndpointID)
		if err != nil {
			return nil, problem(ctx, h.log, err, "query")
		}
		f.EndpointID = id
	}
	r, err := h.events.List(ctx, in.TenantID, f, in.options())
	if err != nil {
		return nil, problem(ctx, h.log, err, "query")
	}
	return listOf(r, eventOf), nil
}

// Attempt is one delivery attempt of an event.
type Attempt struct {
	EndpointID string    `json:"endpoint_id" doc:"The endpoint it was made to."`
	Attempt    int       `json:"attempt" doc:"The attempt's number over the delivery's whole life, replays included (1, 2, 3, ...)."`
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code,omitempty" doc:"The endpoint's HTTP status; absent when no answer came."`
	LatencyMS  int64     `json:"latency_ms"`
	Class      string    `json:"class" enum:"ok,http_3xx,http_4xx,http_410,http_429,http_5xx,timeout,dns,refused,tls,blocked,connection" doc:"The outcome: ok (2xx), the status class, or why no answer came (blocked: the address is private and CALLBACK_ALLOW_PRIVATE is off)."`
	Error      string    `json:"error,omitempty" doc:"What went wrong, when the attempt failed."`
	Response   string    `json:"response,omitempty" doc:"The first KiB of the endpoint's answer."`
}

// Delivery is an event's delivery to one endpoint.
type Delivery struct {
	EndpointID    string     `json:"endpoint_id"`
	Status        string     `json:"status" enum:"pending,failed,delivered,dead"`
	AttemptCount  int        `json:"attempt_count" doc:"Attempts since the event was accepted or last replayed to this endpoint: the position in its retry schedule."`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
	DeadAt        *time.Time `json:"dead_at,omitempty"`
	Held          *Held      `json:"held,omitempty" doc:"For an endpoint with ordering conversation: what this delivery waited behind in its conversation, and for how long. Absent when it was queued at the head."`
	Attempts      []Attempt  `json:"attempts" doc:"This endpoint's attempts, oldest first."`
}

// Held is an ordered delivery's wait behind earlier events of its
// conversation. Waiting is not an attempt.
type Held struct {
	Behind  string     `json:"behind" doc:"The event it was queued behind: the latest of its conversation still to deliver then."`
	Waiting bool       `json:"waiting" doc:"Whether it still waits."`
	Head    string     `json:"head,omitempty" doc:"While it waits: the event at the head of its conversation now, the one holding it back."`
	Since   time.Time  `json:"since" doc:"When it was queued (accepted or replayed)."`
	Until   *time.Time `json:"until,omitempty" doc:"When it was released: its first attempt, or when it settled without one."`
	Seconds float64    `json:"seconds" doc:"How long it waited, or has waited so far."`
}

func heldOf(h *event.Hold, now time.Time) *Held {
	if h == nil {
		return nil
	}
	out := &Held{Behind: event.FormatID(h.Behind), Waiting: h.Waiting(), Since: h.Since, Until: h.Until,
		Seconds: h.Waited(now).Seconds()}
	if h.Waiting() {
		out.Head = event.FormatID(h.Head)
	}
	return out
}

// EventDetail is one event with its payload, deliveries and attempts.
type EventDetail struct {
	Event
	Payload    json.RawMessage `json:"payload,omitempty" doc:"The JSON document POSTed to standard-format endpoints."`
	Original   json.RawMessage `json:"original,omitempty" doc:"The event object exactly as Meta sent it (for a changes[] item, its value)."`
	Deliveries []Delivery      `json:"deliveries" doc:"One per endpoint the event went to, the default endpoint first."`
	Attempts   []Attempt       `json:"attempts" doc:"Every delivery attempt to any endpoint, oldest first (the latest 200)."`
}

type eventOut struct {
	Body EventDetail
}

func (h *adminAPI) getEvent(ctx context.Context, in *EventParams) (*eventOut, error) {
	e, attempts, err := h.events.Get(ctx, in.TenantID, in.EventID)
	if err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	out := &eventOut{Body: EventDetail{Event: eventOf(e), Attempts: make([]Attempt, 0, len(attempts)),
		Deliveries: make([]Delivery, 0, len(e.Deliveries))}}
	if json.Valid(e.Body) {
		out.Body.Payload = e.Body
		var orig struct {
			Event json.RawMessage `json:"event"`
		}
		if json.Unmarshal(e.Body, &orig) == nil {
			out.Body.Original = orig.Event
		}
	}
	at := make(map[string]int, len(e.Deliveries))
	now := time.Now()
	for _, d := range e.Deliveries {
		dl := Delivery{EndpointID: event.FormatEndpointID(d.EndpointID), Status: string(d.Status), AttemptCount: d.Attempts,
			DeliveredAt: d.DeliveredAt, DeadAt: d.DeadAt, Held: heldOf(d.Held, now), Attempts: []Attempt{}}
		if !d.Status.Settled() {
			next := d.NextAttemptAt
			dl.NextAttemptAt = &next
		}
		at[dl.EndpointID] = len(out.Body.Deliveries)
		out.Body.Deliveries = append(out.Body.Deliveries, dl)
	}
	for _, a := range attempts {
		att := Attempt{
			EndpointID: event.FormatEndpointID(a.EndpointID), Attempt: a.Number, At: a.At, StatusCode: a.StatusCode,
			LatencyMS: a.Latency.Milliseconds(), Class: a.Class, Error: a.Error, Response: a.Response,
		}
		out.Body.Attempts = append(out.Body.Attempts, att)
		if i, ok := at[att.EndpointID]; ok {
			out.Body.Deliveries[i].Attempts = append(out.Body.Deliveries[i].Attempts, att)
		}
	}
	return out, nil
}

type replayedOut struct {
	Body Event
}

type replayEventIn struct {
	EventParams
	Body *struct {
		EndpointID string `json:"endpoint_id,omitempty" maxLength:"64" doc:"Only to this endpoint (ep_...), which may be one the event did not go to; default: every endpoint it went to (or, if none, every endpoint that takes it now)."`
	}
}

func (h *adminAPI) replayEvent(ctx context.Context, in *replayEventIn) (*replayedOut, error) {
	var ep string
	if in.Body != nil {
		ep = in.Body.EndpointID
	}
	e, err := h.events.Replay(ctx, in.TenantID, in.EventID, ep)
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	return &replayedOut{Body: eventOf(e)}, nil
}

type replayEventsIn struct {
	TenantParams
	Body struct {
		Status     string     `json:"status" enum:"failed,dead,delivered,pending" doc:"Requeue the deliveries with this status (with one endpoint per tenant: the events with this status)."`
		EndpointID string     `json:"endpoint_id,omitempty" maxLength:"64" doc:"Only the deliveries to this endpoint (ep_...)."`
		Since      *time.Time `json:"since,omitempty" doc:"Received at or after."`
		Until      *time.Time `json:"until,omitempty" doc:"Received before."`
	}
}

type replayEventsOut struct {
	Body struct {
		Queued int64 `json:"queued" doc:"How many events were queued for delivery again (to one endpoint or more)."`
	}
}

func (h *adminAPI) replayEvents(ctx context.Context, in *replayEventsIn) (*replayEventsOut, error) {
	f := event.ReplayFilter{Status: event.Status(in.Body.Status)}
	if in.Body.EndpointID != "" {
		id, err := event.ParseEndpointID(in.Body.EndpointID)
		if err != nil {
			return nil, problem(ctx, h.log, err, "body")
		}
		f.EndpointID = id
	}
	if in.Body.Since != nil {
		f.Since = *in.Body.Since
	}
	if in.Body.Until != nil {
		f.Until = *in.Body.Until
	}
	n, err := h.events.ReplayMany(ctx, in.TenantID, f)
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	out := &replayEventsOut{}
	out.Body.Queued = n
	return out, nil
}

// Quarantined is a signed body that could not be parsed, as listed: its
// size and its first 4 KiB (GET .../quarantine/{id} has all of it).
type Quarantined struct {
	ID         string    `json:"id" doc:"qrn_ and 32 hex digits."`
	AppID      string    `json:"app_id"`
	Reason     string    `json:"reason"`
	ReceivedAt time.Time `json:"received_at"`
	Size       int       `json:"size" doc:"The body's length in bytes."`
	Truncated  bool      `json:"truncated" doc:"In a list: true when body and body_base64 hold only the first 4 KiB of a longer body; the detail route has it all."`
	Body       string    `json:"body,omitempty" doc:"The body (in a list, its first 4 KiB, less a character the cut split) as text, when that is valid UTF-8."`
	BodyBase64 string    `json:"body_base64" doc:"The exact bytes Meta signed (in a list, the first 4 KiB), base64."`
}

func quarantineOf(q event.Quarantined) Quarantined {
	out := Quarantined{
		ID: event.FormatQuarantineID(q.ID), AppID: q.AppID, Reason: q.Reason, ReceivedAt: q.ReceivedAt,
		Size: q.Size, Truncated: len(q.Body) < q.Size, BodyBase64: base64.StdEncoding.EncodeToString(q.Body),
	}
	text := q.Body
	if out.Truncated {
		// The cut may fall inside a character: show the text before it.
		for i := 0; i < utf8.UTFMax-1 && len(text) > 0 && !utf8.Valid(text); i++ {
			text = text[:len(text)-1]
		}
	}
	if utf8.Valid(text) {
		out.Body = string(text)
	}
	return out
}

type listQuarantineIn struct {
	TenantParams
	ListParams
}

func (h *adminAPI) listQuarantine(ctx context.Context, in *listQuarantineIn) (*listOut[Quarantined], error) {
	r, err := h.events.ListQuarantine(ctx, in.TenantID, in.options())
	if err != nil {
		return nil, problem(ctx, h.log, err, "query")
	}
	return listOf(r, quarantineOf), nil
}

type getQuarantinedIn struct {
	TenantParams
	QuarantineID string `path:"quarantine_id" pattern:"^qrn_[0-9a-f]{32}$"`
}

type quarantinedOut struct {
	Body Quarantined
}

func (h *adminAPI) getQuarantined(ctx context.Context, in *getQuarantinedIn) (*quarantinedOut, error) {
	q, err := h.events.GetQuarantined(ctx, in.TenantID, in.QuarantineID)
	if err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	return &quarantinedOut{Body: quarantineOf(q)}, nil
}
