package api

import (
	"context"
	"time"

	"github.com/postgate/postgate/internal/meta"
)

const (
	subscribeAppDoc = "Does the set-up steps of Meta's App Dashboard through the Graph API: `POST /{app_id}/subscriptions` " +
		"with `callback_url` = `{PUBLIC_URL}/webhook/{app_id}`, the app's `verify_token`, `fields` (default: " +
		"`messaging_postbacks` plus every type this tenant's endpoints name) and `include_values=true`. Meta then sends " +
		"its GET verification to the gateway, which answers it. The answer is the subscription as Meta then lists it; " +
		"a refusal by Meta (such as #2200/#2201, the verification failed: `PUBLIC_URL` does not reach this gateway) is " +
		"502 with Meta's message. 409 when `GRAPH_API_URL` is off."
	subscribePageDoc = "Subscribes the Page's app to the Page: `POST /{page_id}/subscribed_apps` with `subscribed_fields` " +
		"(default as for the app), the Page access token registered with the Page and `appsecret_proof`. 422 on " +
		"`body.page_access_token` when the Page has no token; 502 with Meta's message when Meta refuses; 409 when " +
		"`GRAPH_API_URL` is off. `app_id` is needed when the Page is registered on several of the tenant's apps."
	appHealthDoc = "The last check of the app's webhook subscription (every `HEALTH_INTERVAL`, by one replica): " +
		"`problem` is null while healthy, else one of `app_token_invalid`, `not_subscribed`, `inactive`, " +
		"`callback_url_mismatch`, `missing_fields`; `since` is when the current state began; `error` says why the last " +
		"check could not be made (the state is then the previous one). 409 when `GRAPH_API_URL` is off."
	pageHealthDoc = "The last check of the Page: its app's subscription to the Page (only with a Page access token), " +
		"and its silence: `silent` when it had events in the past 7 days and none for longer than both " +
		"`SILENCE_AFTER` and 20 times its median gap between events over those days. `problem`: null, or one of " +
		"`page_token_invalid`, `app_not_subscribed`, `missing_fields`, `silent`. 409 when `GRAPH_API_URL` is off."
)

// Subscription is an app's webhook subscription as Meta lists it.
type Subscription struct {
	AppID       string   `json:"app_id"`
	Object      string   `json:"object" enum:"page,instagram"`
	CallbackURL string   `json:"callback_url"`
	Active      bool     `json:"active"`
	Fields      []string `json:"fields"`
}

type subscriptionOut struct {
	Body Subscription
}

type subscribeAppIn struct {
	AppParams
	Body *struct {
		Object string   `json:"object,omitempty" enum:"page,instagram" doc:"Default page."`
		Fields []string `json:"fields,omitempty" minItems:"1" maxItems:"50" doc:"Default: messaging_postbacks and every type this tenant's endpoints name."`
	}
}

func (h *adminAPI) metaService() (*meta.Service, error) {
	if h.meta == nil || h.meta.Off() {
		return nil, meta.ErrOff
	}
	return h.meta, nil
}

func (h *adminAPI) subscribeApp(ctx context.Context, in *subscribeAppIn) (*subscriptionOut, error) {
	m, err := h.metaService()
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	var object string
	var fields []string
	if in.Body != nil {
		object, fields = in.Body.Object, in.Body.Fields
	}
	sub, err := m.SubscribeApp(ctx, in.TenantID, in.AppID, object, fields)
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	return &subscriptionOut{Body: Subscription{AppID: in.AppID, Object: sub.Object, CallbackURL: sub.CallbackURL, Active: sub.Active, Fields: orEmpty(sub.Fields)}}, nil
}

// PageSubscription is an app's subscription to a Page as Meta lists it.
type PageSubscription struct {
	PageID           string   `json:"page_id"`
	AppID            string   `json:"app_id"`
	SubscribedFields []string `json:"subscribed_fields"`
}

type pageSubscriptionOut struct {
	Body PageSubscription
}

// PageParams names a Page of a tenant in the path, and its app in the
// query when the Page is on several of the tenant's apps.
type PageParams struct {
	TenantParams
	PageID string `path:"page_id" pattern:"^[0-9]{1,20}$" doc:"The Page's (or Instagram account's) id."`
	AppID  string `query:"app_id" pattern:"^[0-9]{1,20}$" doc:"Required when the Page is registered on several of the tenant's apps."`
}

type subscribePageIn struct {
	PageParams
	Body *struct {
		Fields []string `json:"fields,omitempty" minItems:"1" maxItems:"50" doc:"Default: messaging_postbacks and every type this tenant's endpoints name."`
	}
}

func (h *adminAPI) subscribePage(ctx context.Context, in *subscribePageIn) (*pageSubscriptionOut, error) {
	m, err := h.metaService()
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	var fields []string
	if in.Body != nil {
		fields = in.Body.Fields
	}
	sub, err := m.SubscribePage(ctx, in.TenantID, in.PageID, in.AppID, fields)
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	return &pageSubscriptionOut{Body: PageSubscription{PageID: sub.PageID, AppID: sub.AppID, SubscribedFields: orEmpty(sub.SubscribedFields)}}, nil
}

// AppHealth is the health of an app's webhook subscription.
type AppHealth struct {
	AppID               string     `json:"app_id"`
	Active              bool       `json:"active"`
	CallbackURL         string     `json:"callback_url"`
	CallbackURLMatches  bool       `json:"callback_url_matches"`
	Fields              []string   `json:"fields"`
	MissingFields       []string   `json:"missing_fields"`
	CheckedAt           *time.Time `json:"checked_at" doc:"null until the first check."`
	Error               *string    `json:"error" doc:"Why the last check could not be made; null when it was."`
	LastEventAt         *time.Time `json:"last_event_at"`
	SignatureFailures1h int        `json:"signature_failures_1h"`
	Problem             *string    `json:"problem" enum:"app_token_invalid,not_subscribed,inactive,callback_url_mismatch,missing_fields" doc:"null while healthy."`
	Since               time.Time  `json:"since" doc:"When the current state (healthy, or unhealthy) began."`
}

type appHealthOut struct {
	Body AppHealth
}

func (h *adminAPI) appHealth(ctx context.Context, in *getAppIn) (*appHealthOut, error) {
	m, err := h.metaService()
	if err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	a, err := m.AppHealth(ctx, in.TenantID, in.AppID)
	if err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	return &appHealthOut{Body: AppHealth{
		AppID: a.AppID, Active: a.Active, CallbackURL: a.CallbackURL, CallbackURLMatches: a.CallbackURLMatches,
		Fields: orEmpty(a.Fields), MissingFields: orEmpty(a.MissingFields), CheckedAt: a.CheckedAt, Error: nullable(a.Error),
		LastEventAt: a.LastEventAt, SignatureFailures1h: a.SignatureFailures1h, Problem: nullable(a.Problem), Since: a.Since,
	}}, nil
}

// PageHealth is the health of a Page.
type PageHealth struct {
	PageID           string     `json:"page_id"`
	AppID            string     `json:"app_id"`
	HasAccessToken   bool       `json:"has_access_token" doc:"Only a Page with a token has its subscription checked; silence is checked for every Page."`
	SubscribedFields []string   `json:"subscribed_fields"`
	MissingFields    []string   `json:"missing_fields"`
	CheckedAt        *time.Time `json:"checked_at"`
	Error            *string    `json:"error"`
	LastEventAt      *time.Time `json:"last_event_at"`
	Events24h        int        `json:"events_24h"`
	Silent           bool       `json:"silent"`
	Problem          *string    `json:"problem" enum:"page_token_invalid,app_not_subscribed,missing_fields,silent" doc:"null while healthy."`
	Since            time.Time  `json:"since"`
}

type pageHealthOut struct {
	Body PageHealth
}

type pageHealthIn struct {
	PageParams
}

func (h *adminAPI) pageHealth(ctx context.Context, in *pageHealthIn) (*pageHealthOut, error) {
	m, err := h.metaService()
	if err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	p, err := m.PageHealth(ctx, in.TenantID, in.PageID, in.AppID)
	if err != nil {
		return nil, problem(ctx, h.log, err, "query")
	}
	return &pageHealthOut{Body: PageHealth{
		PageID: p.PageID, AppID: p.AppID, HasAccessToken: p.HasToken, SubscribedFields: orEmpty(p.SubscribedFields),
		MissingFields: orEmpty(p.MissingFields), CheckedAt: p.CheckedAt, Error: nullable(p.Error), LastEventAt: p.LastEventAt,
		Events24h: p.Events24h, Silent: p.Silent, Problem: nullable(p.Problem), Since: p.Since,
	}}, nil
}

func orEmpty(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
