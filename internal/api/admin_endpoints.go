package api

import (
	"context"
	"time"

	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/tenant"
)

// Request and response shapes of the endpoint operations.

// EndpointParams names an endpoint in the path.
type EndpointParams struct {
	TenantParams
	EndpointID string `path:"endpoint_id" maxLength:"64" doc:"The endpoint's id (ep_...)."`
}

// Endpoint is an endpoint in the admin API.
type Endpoint struct {
	ID                             string     `json:"id" doc:"ep_ and 32 hex digits."`
	Default                        bool       `json:"default" doc:"The tenant's default endpoint: the one its callback_url and other first-version fields read and write."`
	URL                            string     `json:"url"`
	Description                    string     `json:"description"`
	Events                         []string   `json:"events" doc:"Event types it receives; [\"*\"] is every Meta event type; postgate.health only when named."`
	Pages                          []string   `json:"pages" doc:"Only these of the tenant's Pages; empty: every Page."`
	Format                         string     `json:"format" enum:"standard,meta"`
	Signature                      string     `json:"signature" enum:"hmac,ed25519"`
	Ordering                       string     `json:"ordering" enum:"none,conversation"`
	Rate                           int        `json:"rate,omitempty" doc:"Events/s; absent means the gateway's TENANT_RATE."`
	Burst                          int        `json:"burst,omitempty" doc:"Absent means the gateway's TENANT_BURST."`
	Concurrency                    int        `json:"concurrency,omitempty" doc:"In-flight deliveries; absent means the gateway's TENANT_CONCURRENCY."`
	DeliverTestEvents              bool       `json:"deliver_test_events"`
	Enabled                        bool       `json:"enabled" doc:"False while deliveries are paused (it answered 410, or an operator disabled it); its events wait."`
	DisabledAt                     *time.Time `json:"disabled_at,omitempty"`
	DisabledReason                 string     `json:"disabled_reason,omitempty"`
	PublicKey                      string     `json:"public_key,omitempty" doc:"For signature ed25519: the whpk_ key that verifies its v1a signatures."`
	PreviousPublicKey              string     `json:"previous_public_key,omitempty" doc:"The key replaced by the last rotation, still signing until previous_signing_secret_expires_at."`
	PreviousSigningSecretExpiresAt *time.Time `json:"previous_signing_secret_expires_at,omitempty" doc:"Until then deliveries are also signed with the secret or key replaced by the last rotation."`
	CreatedAt                      time.Time  `json:"created_at"`
	UpdatedAt                      time.Time  `json:"updated_at"`
}

func endpointOf(e tenant.Endpoint) Endpoint {
	out := Endpoint{
		ID: event.FormatEndpointID(e.ID), Default: e.Default, URL: e.URL, Description: e.Description,
		Events: e.Events, Pages: e.Pages, Format: string(e.Format), Signature: string(e.Signature),
		Ordering: string(e.Ordering), Rate: e.Rate, Burst: e.Burst, Concurrency: e.Concurrency,
		DeliverTestEvents: e.DeliverTestEvents, Enabled: e.Enabled(), DisabledAt: e.DisabledAt,
		DisabledReason: e.DisabledReason, PublicKey: e.PublicKey,
		PreviousSigningSecretExpiresAt: e.PreviousSigningSecretExpiresAt,
		CreatedAt:                      e.CreatedAt, UpdatedAt: e.UpdatedAt,
	}
	if e.PreviousSigningSecretExpiresAt != nil {
		out.PreviousPublicKey = e.PreviousPublicKey
	}
	return out
}

type endpointOut struct {
	Body Endpoint
}

// EndpointWithSecret is an endpoint with its new signing secret: the
// answer of create and rotate (and of a change of signature).
type EndpointWithSecret struct {
	Endpoint
	SigningSecret string `json:"signing_secret,omitempty" doc:"For signature hmac: the Standard Webhooks signing secret (whsec_...). Shown only in this answer: store it now."`
}

type endpointSecretOut struct {
	Body EndpointWithSecret
}

type createEndpointIn struct {
	TenantParams
	Body struct {
		URL               string    `json:"url" minLength:"1" maxLength:"2048" doc:"Where events are POSTed: an https URL on a public address (http and private addresses only with CALLBACK_ALLOW_PRIVATE)."`
		Description       string    `json:"description,omitempty" maxLength:"200"`
		Events            *[]string `json:"events,omitempty" minItems:"1" maxItems:"32" enum:"*,messaging_postbacks,messages,message_echoes,message_deliveries,message_reads,messaging_referrals,messaging_optins,message_reactions,messaging_handovers,standby,messaging_policy_enforcement,messaging_account_linking,other,postgate.health" doc:"Default [\"messaging_postbacks\"]."`
		Pages             []string  `json:"pages,omitempty" maxItems:"1000" doc:"Page ids (1-20 digits); default: every Page of the tenant."`
		Format            string    `json:"format,omitempty" enum:"standard,meta" doc:"standard (default): the Standard Webhooks body; meta: Meta's own envelope, signed with the app's secret."`
		Signature         string    `json:"signature,omitempty" enum:"hmac,ed25519" doc:"For the standard format: hmac (default, v1) or ed25519 (v1a)."`
		Ordering          string    `json:"ordering,omitempty" enum:"none,conversation" doc:"none (default), or conversation: one event at a time per conversation (Page and person), in the order accepted."`
		Rate              int       `json:"rate,omitempty" minimum:"0" maximum:"1000000" doc:"Events/s. 0 or absent: TENANT_RATE."`
		Burst             int       `json:"burst,omitempty" minimum:"0" maximum:"1000000" doc:"0 or absent: TENANT_BURST."`
		Concurrency       int       `json:"concurrency,omitempty" minimum:"0" maximum:"1000000" doc:"0 or absent: TENANT_CONCURRENCY."`
		DeliverTestEvents *bool     `json:"deliver_test_events,omitempty" doc:"Deliver Meta's dashboard test events (default true)."`
	}
}

func (h *adminAPI) createEndpoint(ctx context.Context, in *createEndpointIn) (*endpointSecretOut, error) {
	b := in.Body
	e, secret, err := h.svc.CreateEndpoint(ctx, in.TenantID, tenant.EndpointInput{
		URL: b.URL, Description: b.Description, Events: b.Events, Pages: b.Pages,
		Format: tenant.Format(b.Format), Signature: tenant.Signature(b.Signature), Ordering: tenant.Ordering(b.Ordering),
		Rate: b.Rate, Burst: b.Burst, Concurrency: b.Concurrency, DeliverTestEvents: b.DeliverTestEvents,
	})
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	return &endpointSecretOut{Body: EndpointWithSecret{Endpoint: endpointOf(e), SigningSecret: secret}}, nil
}

type listEndpointsIn struct {
	TenantParams
	ListParams
}

func (h *adminAPI) listEndpoints(ctx context.Context, in *listEndpointsIn) (*listOut[Endpoint], error) {
	r, err := h.svc.ListEndpoints(ctx, in.TenantID, in.options())
	if err != nil {
		return nil, problem(ctx, h.log, err, "query")
	}
	return listOf(r, endpointOf), nil
}

type getEndpointIn struct {
	EndpointParams
}

func (h *adminAPI) getEndpoint(ctx context.Context, in *getEndpointIn) (*endpointOut, error) {
	e, err := h.svc.GetEndpoint(ctx, in.TenantID, in.EndpointID)
	if err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	return &endpointOut{Body: endpointOf(e)}, nil
}

type updateEndpointIn struct {
	EndpointParams
	Body struct {
		URL               *string   `json:"url,omitempty" minLength:"1" maxLength:"2048"`
		Description       *string   `json:"description,omitempty" maxLength:"200"`
		Events            *[]string `json:"events,omitempty" minItems:"1" maxItems:"32" enum:"*,messaging_postbacks,messages,message_echoes,message_deliveries,message_reads,messaging_referrals,messaging_optins,message_reactions,messaging_handovers,standby,messaging_policy_enforcement,messaging_account_linking,other,postgate.health"`
		Pages             *[]string `json:"pages,omitempty" maxItems:"1000"`
		Format            *string   `json:"format,omitempty" enum:"standard,meta"`
		Signature         *string   `json:"signature,omitempty" enum:"hmac,ed25519" doc:"A new signature makes a new secret (returned in this answer) or key pair, with no grace period."`
		Ordering          *string   `json:"ordering,omitempty" enum:"none,conversation"`
		Rate              *int      `json:"rate,omitempty" minimum:"0" maximum:"1000000" doc:"0 returns to TENANT_RATE."`
		Burst             *int      `json:"burst,omitempty" minimum:"0" maximum:"1000000" doc:"0 returns to TENANT_BURST."`
		Concurrency       *int      `json:"concurrency,omitempty" minimum:"0" maximum:"1000000" doc:"0 returns to TENANT_CONCURRENCY."`
		DeliverTestEvents *bool     `json:"deliver_test_events,omitempty"`
		Enabled           *bool     `json:"enabled,omitempty" doc:"true re-enables a disabled endpoint and resets its circuit breaker in every worker; false disables it (its events wait)."`
	}
}

func (h *adminAPI) updateEndpoint(ctx context.Context, in *updateEndpointIn) (*endpointSecretOut, error) {
	b := in.Body
	p := tenant.EndpointPatch{
		URL: b.URL, Description: b.Description, Events: b.Events, Pages: b.Pages, Rate: b.Rate, Burst: b.Burst,
		Concurrency: b.Concurrency, DeliverTestEvents: b.DeliverTestEvents, Enabled: b.Enabled,
		Format: (*tenant.Format)(b.Format), Signature: (*tenant.Signature)(b.Signature), Ordering: (*tenant.Ordering)(b.Ordering),
	}
	e, secret, err := h.svc.UpdateEndpoint(ctx, in.TenantID, in.EndpointID, p)
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	return &endpointSecretOut{Body: EndpointWithSecret{Endpoint: endpointOf(e), SigningSecret: secret}}, nil
}

func (h *adminAPI) deleteEndpoint(ctx context.Context, in *getEndpointIn) (*struct{}, error) {
	if err := h.svc.DeleteEndpoint(ctx, in.TenantID, in.EndpointID); err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	return nil, nil
}

func (h *adminAPI) rotateEndpointSecret(ctx context.Context, in *getEndpointIn) (*endpointSecretOut, error) {
	e, secret, err := h.svc.RotateEndpointSecret(ctx, in.TenantID, in.EndpointID)
	if err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	return &endpointSecretOut{Body: EndpointWithSecret{Endpoint: endpointOf(e), SigningSecret: secret}}, nil
}

type testEndpointOut struct {
	Body struct {
		EventID    string `json:"event_id" doc:"The test event's id (webhook-id or X-Postgate-Event-Id); it is not stored."`
		StatusCode int    `json:"status_code,omitempty" doc:"The endpoint's HTTP status; absent when no answer came."`
		LatencyMS  int64  `json:"latency_ms"`
		Class      string `json:"class" doc:"ok (2xx), the status class, or why no answer came (timeout, refused, dns, tls, blocked, connection)."`
		Error      string `json:"error,omitempty" doc:"What went wrong, when the endpoint did not answer 2xx."`
		Response   string `json:"response,omitempty" doc:"The first KiB of the endpoint's answer."`
	}
}

func (h *adminAPI) testEndpoint(ctx context.Context, in *getEndpointIn) (*testEndpointOut, error) {
	r, err := h.tester.Test(ctx, in.TenantID, in.EndpointID)
	if err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	out := &testEndpointOut{}
	b := &out.Body
	b.EventID, b.StatusCode, b.LatencyMS, b.Class, b.Error, b.Response = r.EventID, r.StatusCode, r.Latency.Milliseconds(), r.Class, r.Error, r.Response
	return out, nil
}
