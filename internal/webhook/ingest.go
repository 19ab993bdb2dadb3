package webhook

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/redisdb"
	"github.com/postgate/postgate/internal/tenant"
)

// Routing is what the ingest needs from the tenant Registry.
type Routing interface {
	App(appID string) (*tenant.AppKeys, bool)
	AppByVerifyToken(token string) (*tenant.AppKeys, bool)
	Routes(pageID string) []tenant.Route
	Route(pageID, appID string) (tenant.Route, bool)
	Tenant(id string) (*tenant.TenantInfo, bool)
}

// Config tunes the Ingestor.
type Config struct {
	// DedupTTL is how long Redis remembers an event key (DEDUP_TTL).
	DedupTTL time.Duration
	// KeyPrefix is put before every Redis key (tests isolate with it).
	KeyPrefix string
	// CommitWorkers is the number of concurrent group commits. Default 4.
	CommitWorkers int
	// MaxBatchEvents caps the events of one group commit. Default 2000.
	MaxBatchEvents int
	// MaxCandidates caps how many apps a /webhook body may make us try.
	MaxCandidates int
	// RedisBackoff is how long Redis is skipped after it fails, so an
	// outage costs one timeout, not one per request. Default 1s.
	RedisBackoff time.Duration
	// SignatureFailed, if set, is told the app of every POST refused for
	// its signature (the app health's signature_failures_1h). It must
	// not block.
	SignatureFailed func(appID string)
	Now             func() time.Time
}

func (c *Config) defaults() {
	if c.DedupTTL == 0 {
		c.DedupTTL = 72 * time.Hour
	}
	if c.CommitWorkers == 0 {
		c.CommitWorkers = 4
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = 2000
	}
	if c.MaxCandidates == 0 {
		c.MaxCandidates = 16
	}
	if c.RedisBackoff == 0 {
		c.RedisBackoff = time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Ingestor is the webhook ingest use case.
type Ingestor struct {
	cfg          Config
	reg          Routing
	events       *event.Store
	rdb          redis.UniversalClient
	log          *slog.Logger
	m            *metrics
	macs         macPools
	commits      chan *commitReq
	marks        chan []*commitReq
	wake         chan struct{}
	redisBackoff redisdb.Backoff
}

// NewIngestor builds the use case; Run must be running for Ingest to
// store anything.
func NewIngestor(cfg Config, reg Routing, events *event.Store, rdb redis.UniversalClient, mreg prometheus.Registerer, log *slog.Logger) (*Ingestor, error) {
	cfg.defaults()
	if reg == nil || events == nil {
		return nil, errors.New("webhook: a registry and an event store are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if mreg == nil {
		mreg = prometheus.NewRegistry()
	}
	in := &Ingestor{
		cfg: cfg, reg: reg, events: events, rdb: rdb, log: log, m: newMetrics(mreg),
		commits: make(chan *commitReq, 1024),
		marks:   make(chan []*commitReq, 256),
		wake:    make(chan struct{}, 1),
	}
	in.redisBackoff.Wait = cfg.RedisBackoff
	return in, nil
}

// signatureFailed counts a POST refused for appID's signature.
func (in *Ingestor) signatureFailed(appID string) {
	in.m.sigFailures.WithLabelValues(appID).Inc()
	if in.cfg.SignatureFailed != nil {
		in.cfg.SignatureFailed(appID)
	}
}

// VerifySubscription answers Meta's GET: mode must be subscribe and the
// token that of a registered app (of appID, when the path names one).
func (in *Ingestor) VerifySubscription(appID, mode, token string) bool {
	if mode != "subscribe" || token == "" {
		return false
	}
	if appID == "" {
		_, ok := in.reg.AppByVerifyToken(token)
		return ok
	}
	app, ok := in.reg.App(appID)
	return ok && subtle.ConstantTimeCompare([]byte(app.VerifyToken), []byte(token)) == 1
}

// Ingest authenticates, walks and stores one webhook POST. It returns only
// after every accepted event is committed, or with OutcomeUnavailable.
func (in *Ingestor) Ingest(ctx context.Context, req Request) Result {
	if req.ReceivedAt.IsZero() {
		req.ReceivedAt = in.cfg.Now()
	}
	res := in.ingest(ctx, req)
	in.m.requests.WithLabelValues(outcomeLabel(res.Outcome)).Inc()
	in.m.ack.Observe(in.cfg.Now().Sub(req.ReceivedAt).Seconds())
	return res
}

func (in *Ingestor) ingest(ctx context.Context, req Request) Result {
	sig256, has256 := ParseSignature256(req.Signature256)
	var sig1 Signature
	var has1 bool
	if req.Signature256 == "" { // SHA-1 counts only without a SHA-256 header
		sig1, has1 = ParseSignature1(req.Signature1)
	}
	if req.Signature256 != "" && !has256 {
		in.countSigFailure(req.AppID)
		return Result{Outcome: OutcomeBadSignature, Message: "X-Hub-Signature-256 must be sha256=<64 hex digits>"}
	}
	if !has256 && !has1 {
		in.countSigFailure(req.AppID)
		return Result{Outcome: OutcomeBadSignature, Message: "missing X-Hub-Signature-256"}
	}
	// A signature check that may use SHA-1 only for apps that opted in, and
	// only when the SHA-256 header is absent.
	matches := func(app *tenant.AppKeys) bool {
		var secrets [2][]byte
		for _, secret := range app.Secrets(in.cfg.Now(), secrets[:0]) {
			if has256 && in.macs.Matches(sig256, secret, req.Body) {
				return true
			}
			if !has256 && app.LegacySHA1 && in.macs.Matches(sig1, secret, req.Body) {
				return true
			}
		}
		return false
	}

	if req.AppID != "" {
		return in.ingestForApp(ctx, req, matches)
	}

	env, err := Parse(req.Body)
	if errors.Is(err, ErrNotJSON) || errors.Is(err, ErrTooDeep) {
		return Result{Outcome: OutcomeNotJSON, Message: err.Error()}
	}
	var candidates []*tenant.AppKeys
	if err == nil {
		candidates = in.candidates(env)
	}
	if len(candidates) == 0 {
		res := Result{Outcome: OutcomeUnroutable, Message: "no registered page in body"}
		if env != nil {
			res.Unroutable = countEvents(env)
		}
		in.m.countEvents(&res, 0)
		return res
	}
	for _, app := range candidates {
		if matches(app) {
			return in.accept(ctx, env, app, false, req.ReceivedAt)
		}
	}
	for _, app := range candidates {
		in.signatureFailed(app.AppID)
	}
	in.log.Warn("webhook signature matches no candidate app", "candidates", len(candidates), "app_id", candidates[0].AppID)
	return Result{Outcome: OutcomeBadSignature, Message: noMatchMessage(req, candidates...)}
}

// noMatchMessage explains a 401 for a signature none of apps' secrets
// matched. A lone X-Hub-Signature (SHA-1) counts only for apps with
// legacy_sha1: for the others it is the SHA-256 header that is missing,
// and saying "does not match" would send the operator after a wrong secret.
func noMatchMessage(req Request, apps ...*tenant.AppKeys) string {
	if req.Signature256 == "" && !slices.ContainsFunc(apps, func(a *tenant.AppKeys) bool { return a.LegacySHA1 }) {
		return "missing X-Hub-Signature-256 (X-Hub-Signature, SHA-1, alone is accepted only for apps with legacy_sha1)"
	}
	return "signature does not match"
}

func (in *Ingestor) ingestForApp(ctx context.Context, req Request, matches func(*tenant.AppKeys) bool) Result {
	app, ok := in.reg.App(req.AppID)
	if !ok {
		return Result{Outcome: OutcomeBadSignature, Message: "unknown app"}
	}
	if !matches(app) {
		in.signatureFailed(app.AppID)
		in.log.Warn("webhook signature does not match the app's secrets", "app_id", app.AppID)
		return Result{Outcome: OutcomeBadSignature, AppID: app.AppID, Message: noMatchMessage(req, app)}
	}
	env, err := Parse(req.Body)
	if err != nil {
		return in.quarantine(ctx, app, err, req)
	}
	return in.accept(ctx, env, app, true, req.ReceivedAt)
}

// candidates are the apps registered for the Pages a /webhook body names,
// first seen first, at most MaxCandidates.
func (in *Ingestor) candidates(env *Envelope) []*tenant.AppKeys {
	var out []*tenant.AppKeys
	seen := map[string]bool{}
	addPage := func(page string) {
		for _, rt := range in.reg.Routes(page) {
			if seen[rt.AppID] || len(out) >= in.cfg.MaxCandidates {
				continue
			}
			seen[rt.AppID] = true
			if app, ok := in.reg.App(rt.AppID); ok {
				out = append(out, app)
			}
		}
	}
	for i := range env.Entries {
		e := &env.Entries[i]
		for j := range e.Events {
			if p, ok := pageOf(e, &e.Events[j]); ok {
				addPage(p)
			}
		}
		if e.ID.Set {
			addPage(e.ID.Value)
		}
	}
	return out
}

// pageOf is the Page an event belongs to: recipient.id, or sender.id for
// an echo, else the entry's id.
func pageOf(e *Entry, ev *Event) (string, bool) {
	if ev.IsEcho && ev.Sender.Set {
		return ev.Sender.Value, true
	}
	if !ev.IsEcho && ev.Recipient.Set {
		return ev.Recipient.Value, true
	}
	return e.ID.Value, e.ID.Set
}

// row is one accepted event on its way to Postgres.
type row struct {
	event.New
	redisKey string
	known    bool // Redis says this key was committed before: a duplicate
}

// accept walks the envelope for app and stores the routable events.
func (in *Ingestor) accept(ctx context.Context, env *Envelope, app *tenant.AppKeys, pathApp bool, recv time.Time) Result {
	in.m.lastEvent.WithLabelValues(app.AppID).Set(float64(recv.Unix()))
	res := Result{Outcome: OutcomeAccepted, AppID: app.AppID}
	rows, tests := in.walk(env, app, pathApp, recv, &res)
	if len(rows) > 0 {
		inserted, err := in.commit(ctx, rows)
		if err != nil {
			in.log.Error("webhook not stored; answering 503 so Meta retries", "app_id", app.AppID, "events", len(rows), "err", err)
			return Result{Outcome: OutcomeUnavailable, AppID: app.AppID, Message: "storage unavailable, retry later"}
		}
		res.Accepted = inserted
		res.Duplicates += len(rows) - inserted
	}
	in.m.countEvents(&res, tests)
	res.Message = "EVENT_RECEIVED"
	return res
}

func (in *Ingestor) walk(env *Envelope, app *tenant.AppKeys, pathApp bool, recv time.Time, res *Result) ([]row, int) {
	if env.Object != string(tenant.ObjectPage) && env.Object != string(tenant.ObjectInstagram) {
		res.Filtered += countEvents(env)
		return nil, 0
	}
	var rows []row
	var buf []byte
	tests := 0
	for i := range env.Entries {
		e := &env.Entries[i]
		if e.Err != nil {
			res.Invalid++
			continue
		}
		for j := range e.Events {
			ev := &e.Events[j]
			switch {
			case ev.Err != nil:
				res.Invalid++
				continue
			case ev.Type == "":
				res.Filtered++ // a changes[] field that is not messaging
				continue
			}
			page, ok := pageOf(e, ev)
			if !ok {
				res.Unroutable++
				continue
			}
			if !database.Storable(page) {
				// Registered Page ids are digits: only a test event
				// (routed by its app) gets here with such an id, and
				// storing it would fail the whole group commit.
				res.Invalid++
				continue
			}
			test := e.ID.Value == "0"
			if e.ID.Set && e.ID.Value != page && !test {
				res.Inconsistent++
				continue
			}
			tenantID := ""
			if rt, ok := in.reg.Route(page, app.AppID); ok {
				tenantID = rt.TenantID
			} else if test && pathApp {
				tenantID = app.TenantID // the Test button's placeholder Pages belong to nobody
			} else {
				res.Unroutable++
				continue
			}
			t, ok := in.reg.Tenant(tenantID)
			if !ok {
				res.Unroutable++
				continue
			}
			if !t.Wants(ev.Type, page, test) {
				res.Filtered++
				continue
			}
			if test {
				tests++
			}
			ts := ev.TimestampMS
			if ts == 0 {
				ts = e.TimeMS
			}
			if ts == 0 {
				ts = recv.UnixMilli()
			}
			id := uuid.Must(uuid.NewV7())
			d := event.Payload{
				ID: id, Type: ev.Type, Test: test, TenantID: tenantID, AppID: app.AppID,
				PageID: page, Object: env.Object, Source: string(ev.Source),
				SenderID: ev.Sender.Value, HasSenderID: ev.Sender.Set, SenderRef: ev.SenderRef.Value, HasSenderRef: ev.SenderRef.Set,
				TimestampMS: ts, ReceivedAt: recv, Postback: ev.Postback, Event: ev.Raw,
			}
			buf = d.AppendJSON(buf[:0])
			// The body, the entry's time and a changes[] item, copied in one
			// allocation: e.Time and ev.Item point into the request, which
			// may be gone before a slow group commit flushes.
			stored := make([]byte, 0, len(buf)+len(e.Time)+len(ev.Item))
			stored = append(append(append(stored, buf...), e.Time...), ev.Item...)
			body, entryTime, item := stored[:len(buf):len(buf)], stored[len(buf):len(buf)+len(e.Time):len(buf)+len(e.Time)], stored[len(buf)+len(e.Time):]
			if e.Time == nil {
				entryTime = nil
			}
			if ev.Item == nil {
				item = nil
			}
			key := dedupKey(page, ev, ts)
			rows = append(rows, row{
				New: event.New{
					ID: id, TenantID: tenantID, PageID: page, AppID: app.AppID, DedupKey: key,
					Type: ev.Type, Test: test, ReceivedAt: recv, Body: body,
					Sender: person(ev), EntryTime: entryTime, Item: item,
				},
				redisKey: in.cfg.KeyPrefix + "t:" + tenantID + ":dedup:" + page + ":" + key,
			})
		}
	}
	return rows, tests
}

// person is who the event's conversation is with: the sender (its PSID,
// else its user_ref), or for an echo, which the Page sent, the recipient.
func person(ev *Event) string {
	if ev.IsEcho {
		return ev.Recipient.Value
	}
	if ev.Sender.Set {
		return ev.Sender.Value
	}
	return ev.SenderRef.Value
}

// dedupKey is the event's mid, or without one (or with one Postgres
// cannot store as text) a hash of what identifies it: Page, sender,
// timestamp, type and the event's bytes.
func dedupKey(page string, ev *Event, ts int64) string {
	if ev.Mid != "" && database.Storable(ev.Mid) {
		return event.MidKey(ev.Mid)
	}
	// One buffer and one hash call: this runs for every event without a
	// mid (reads, deliveries, optins, referrals, handovers).
	b := make([]byte, 0, len(page)+len(ev.Sender.Value)+len(ev.SenderRef.Value)+len(ev.Type)+len(ev.Raw)+24)
	b = append(append(b, page...), 0)
	b = append(append(append(b, ev.Sender.Value...), ev.SenderRef.Value...), 0)
	b = append(strconv.AppendInt(b, ts, 10), 0)
	b = append(append(b, ev.Type...), 0)
	sum := sha256.Sum256(append(b, ev.Raw...))
	var key [2 + 32]byte
	copy(key[:], "h:")
	hex.Encode(key[2:], sum[:16])
	return string(key[:])
}

func (in *Ingestor) quarantine(ctx context.Context, app *tenant.AppKeys, reason error, req Request) Result {
	in.m.lastEvent.WithLabelValues(app.AppID).Set(float64(req.ReceivedAt.Unix()))
	err := in.events.Quarantine(ctx, event.Quarantined{
		ID: uuid.Must(uuid.NewV7()), TenantID: app.TenantID, AppID: app.AppID, Reason: reason.Error(),
		Body: req.Body, ReceivedAt: req.ReceivedAt,
	})
	if err != nil {
		in.log.Error("quarantine not stored; answering 503 so Meta retries", "app_id", app.AppID, "err", err)
		return Result{Outcome: OutcomeUnavailable, AppID: app.AppID, Message: "storage unavailable, retry later"}
	}
	in.m.events.WithLabelValues("quarantined").Inc()
	in.log.Warn("signed webhook body quarantined", "app_id", app.AppID, "tenant_id", app.TenantID, "reason", reason.Error(), "bytes", len(req.Body))
	return Result{Outcome: OutcomeQuarantined, AppID: app.AppID, Message: "EVENT_RECEIVED"}
}

func (in *Ingestor) countSigFailure(appID string) {
	if appID == "" {
		return
	}
	// Label with the registry's copy of the id: appID comes from a request
	// and need not outlive it.
	if app, ok := in.reg.App(appID); ok {
		in.signatureFailed(app.AppID)
	}
}

func countEvents(env *Envelope) int {
	n := 0
	for i := range env.Entries {
		n += max(len(env.Entries[i].Events), 1)
	}
	return n
}

func outcomeLabel(o Outcome) string {
	switch o {
	case OutcomeAccepted:
		return "accepted"
	case OutcomeBadSignature:
		return "bad_signature"
	case OutcomeNotJSON:
		return "not_json"
	case OutcomeUnroutable:
		return "unroutable"
	case OutcomeQuarantined:
		return "quarantined"
	case OutcomeUnavailable:
		return "unavailable"
	default:
		return fmt.Sprintf("outcome_%d", int(o))
	}
}
