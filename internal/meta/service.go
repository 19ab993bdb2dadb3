package meta

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/tenant"
)

// Errors of the set-up and health operations; the api package maps them
// to problem responses.
var (
	// ErrOff: GRAPH_API_URL is off, no call to Meta is made (409).
	ErrOff = errors.New("GRAPH_API_URL is off: the gateway makes no call to Meta's Graph API")
	// ErrMeta: Meta refused the call or could not be reached (502); the
	// error's text carries Meta's message.
	ErrMeta = errors.New("the Graph API (Meta)")
)

// registryGrace covers the time an app change takes to reach every
// replica's ingress (SPEC: within 1 second), with a margin.
const registryGrace = 6 * time.Second

// RequiredField is the subscription field every app and Page needs: the
// product exists for postbacks.
const RequiredField = "messaging_postbacks"

// Config is the Service's configuration.
type Config struct {
	// PublicURL is how Meta reaches the gateway: an app's callback URL is
	// PublicURL + "/webhook/" + app_id.
	PublicURL string
	// Interval is how often the checker runs (HEALTH_INTERVAL, default 5m).
	Interval time.Duration
	// SilenceAfter is the shortest silence that makes a Page silent
	// (SILENCE_AFTER, default 1h).
	SilenceAfter time.Duration
	// Concurrency bounds the checker's Graph API calls in flight
	// (default 8).
	Concurrency int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.Interval <= 0 {
		c.Interval = 5 * time.Minute
	}
	if c.SilenceAfter <= 0 {
		c.SilenceAfter = time.Hour
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
}

// Service does the seed's Meta set-up steps through the Graph API
// (ownership proof, app and Page subscriptions) and watches them (the
// health checker, Run). With a nil Client (GRAPH_API_URL=off) it makes no
// call: ownership is not proved and the subscribe and health operations
// answer ErrOff.
type Service struct {
	cfg     Config
	client  *Client
	tenants *tenant.Service
	store   *tenant.Store
	events  *event.Store
	db      *database.DB
	log     *slog.Logger
	m       *metrics
	leadership
}

// NewService returns the service. client nil means GRAPH_API_URL=off.
// reg receives the meta metrics (nil: none).
func NewService(cfg Config, client *Client, tenants *tenant.Service, store *tenant.Store, events *event.Store, db *database.DB,
	log *slog.Logger, reg prometheus.Registerer) *Service {
	cfg.defaults()
	s := &Service{cfg: cfg, client: client, tenants: tenants, store: store, events: events, db: db, log: log}
	s.m = newMetrics(reg)
	return s
}

// Off reports whether GRAPH_API_URL is off.
func (s *Service) Off() bool { return s.client == nil }

// CallbackURL is the webhook URL Meta must call for appID.
func (s *Service) CallbackURL(appID string) string { return s.cfg.PublicURL + "/webhook/" + appID }

// ProveApp implements tenant.Prover: Meta must know appID with secret.
// Meta's refusal is a *tenant.FieldError (422) with Meta's message; Meta
// out of reach is tenant.ErrUpstream (502).
func (s *Service) ProveApp(ctx context.Context, appID, secret string) (string, error) {
	if s.client == nil {
		return "", nil
	}
	app, err := s.client.App(ctx, appID, secret)
	var me *Error
	switch {
	case errors.As(err, &me) && !me.RateLimited() && me.Status < 500:
		field := "app_secret"
		if me.Code == 101 || me.Code == 100 || me.Code == 803 {
			field = "app_id"
		}
		return "", &tenant.FieldError{Field: field, Err: tenant.ErrInvalid,
			Message: "Meta refused the app id and secret: " + me.Message}
	case err != nil:
		return "", fmt.Errorf("%w: proving app %s: %v", tenant.ErrUpstream, appID, err)
	case app.ID != appID:
		return "", &tenant.FieldError{Field: "app_id", Err: tenant.ErrInvalid, Message: "Meta answered for another app id"}
	}
	return app.Name, nil
}

// metaErr turns a Graph API failure into an ErrMeta carrying Meta's
// message (the client's errors never hold a token or secret).
func metaErr(what string, err error) error {
	var me *Error
	if errors.As(err, &me) {
		return fmt.Errorf("%w refused to %s: %s", ErrMeta, what, me.Error())
	}
	return fmt.Errorf("%w could not be reached to %s: %v", ErrMeta, what, err)
}

// SubscribeApp subscribes appID of tenantID to Meta's webhooks of object
// (default page) with fields (default: messaging_postbacks and every type
// the tenant's endpoints name), the gateway's callback URL and the app's
// verify token; Meta verifies the callback then and there. It answers the
// resulting subscription, read back from Meta.
func (s *Service) SubscribeApp(ctx context.Context, tenantID, appID, object string, fields []string) (Subscription, error) {
	if s.client == nil {
		return Subscription{}, ErrOff
	}
	if object == "" {
		object = string(tenant.ObjectPage)
	}
	if object != string(tenant.ObjectPage) && object != string(tenant.ObjectInstagram) {
		return Subscription{}, &tenant.FieldError{Field: "object", Err: tenant.ErrInvalid, Message: "must be page or instagram"}
	}
	c, err := s.tenants.AppCredentials(ctx, tenantID, appID)
	if err != nil {
		return Subscription{}, err
	}
	if fields, err = s.fieldsFor(ctx, tenantID, fields); err != nil {
		return Subscription{}, err
	}
	params := SubscribeParams{Object: object, CallbackURL: s.CallbackURL(appID), VerifyToken: c.App.VerifyToken, Fields: fields}
	err = s.client.Subscribe(ctx, appID, c.AppSecret, params)
	var me *Error
	if errors.As(err, &me) && (me.Code == 2200 || me.Code == 2201) && s.cfg.Now().Sub(c.App.UpdatedAt) < registryGrace {
		// Registered a moment ago: the replica Meta's verification GET
		// reached may not know the app yet (changes reach every replica
		// within a second). Once more, after that second.
		select {
		case <-ctx.Done():
			return Subscription{}, ctx.Err()
		case <-time.After(registryGrace / 4):
		}
		err = s.client.Subscribe(ctx, appID, c.AppSecret, params)
	}
	if err != nil {
		return Subscription{}, metaErr("subscribe the app", err)
	}
	subs, err := s.client.Subscriptions(ctx, appID, c.AppSecret)
	if err != nil {
		return Subscription{}, metaErr("read the app's subscriptions", err)
	}
	for _, sub := range subs {
		if sub.Object == object {
			return sub, nil
		}
	}
	return Subscription{}, fmt.Errorf("%w accepted the subscription but does not list it", ErrMeta)
}

// fieldsFor checks asked fields, or names the default ones of tenantID.
func (s *Service) fieldsFor(ctx context.Context, tenantID string, asked []string) ([]string, error) {
	if asked != nil {
		if len(asked) == 0 || len(asked) > 50 {
			return nil, &tenant.FieldError{Field: "fields", Err: tenant.ErrInvalid, Message: "must name 1 to 50 fields"}
		}
		for _, f := range asked {
			if !isField(f) {
				return nil, &tenant.FieldError{Field: "fields", Err: tenant.ErrInvalid,
					Message: "must be Messenger webhook fields (" + strings.Join(fieldNames(), ", ") + ")"}
			}
		}
		out := slices.Clone(asked)
		slices.Sort(out)
		return slices.Compact(out), nil
	}
	types, err := s.tenants.SubscribedTypes(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	return wantedFields(types), nil
}

// wantedFields is messaging_postbacks and the types that are Meta
// webhook fields, sorted, once each.
func wantedFields(types []string) []string {
	out := []string{RequiredField}
	for _, t := range types {
		if isField(t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// isField reports whether an event type is the name of a Meta webhook
// field: every type but "other", the gateway's name for what it does not
// know.
func isField(t string) bool { return t != event.TypeOther && event.IsType(t) }

func fieldNames() []string {
	return slices.DeleteFunc(slices.Clone(event.Types), func(t string) bool { return !isField(t) })
}

// PageSubscription is what Meta says of an app's subscription to a Page.
type PageSubscription struct {
	PageID           string
	AppID            string
	SubscribedFields []string
}

// SubscribePage subscribes the Page's app to the Page (POST
// /{page_id}/subscribed_apps with the Page's token and appsecret_proof)
// with fields (default as SubscribeApp's), and answers the subscription
// read back from Meta.
func (s *Service) SubscribePage(ctx context.Context, tenantID, pageID, appID string, fields []string) (PageSubscription, error) {
	if s.client == nil {
		return PageSubscription{}, ErrOff
	}
	c, err := s.tenants.PageCredentials(ctx, tenantID, pageID, appID)
	if err != nil {
		return PageSubscription{}, err
	}
	if c.PageToken == "" {
		return PageSubscription{}, &tenant.FieldError{Field: "page_access_token", Err: tenant.ErrInvalid,
			Message: "the Page has no access token: set one (PATCH the Page with page_access_token) to subscribe it"}
	}
	if fields, err = s.fieldsFor(ctx, tenantID, fields); err != nil {
		return PageSubscription{}, err
	}
	if err := s.client.SubscribePage(ctx, c.Page.PageID, c.PageToken, c.AppSecret, fields); err != nil {
		return PageSubscription{}, metaErr("subscribe the app to the Page", err)
	}
	apps, err := s.client.PageSubscriptions(ctx, c.Page.PageID, c.PageToken, c.AppSecret)
	if err != nil {
		return PageSubscription{}, metaErr("read the Page's subscribed apps", err)
	}
	for _, a := range apps {
		if a.ID == c.Page.AppID {
			return PageSubscription{PageID: c.Page.PageID, AppID: a.ID, SubscribedFields: a.SubscribedFields}, nil
		}
	}
	return PageSubscription{}, fmt.Errorf("%w accepted the Page subscription but does not list the app", ErrMeta)
}
