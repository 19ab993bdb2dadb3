package api

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/tenant"
)

// Request and response shapes of the tenant operations. The tags are the
// API's contract (snake_case JSON, validation, OpenAPI); the domain types
// carry none.

// TenantParams names a tenant in the path.
type TenantParams struct {
	TenantID string `path:"tenant_id" format:"uuid" doc:"The tenant's id."`
}

// ListParams are the limit and cursor of a list.
type ListParams struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"200" default:"50" doc:"At most this many items."`
	Cursor string `query:"cursor" maxLength:"512" doc:"next_cursor of the previous page."`
}

func (q ListParams) options() database.ListOptions {
	return database.ListOptions{Limit: q.Limit, Cursor: q.Cursor}
}

// List is one page of a list: {"items": [...], "next_cursor": "..."}.
type List[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty" doc:"Pass as cursor for the next page; absent on the last page."`
}

type listOut[T any] struct {
	Body List[T]
}

func listOf[D, T any](r database.Results[D], conv func(D) T) *listOut[T] {
	out := &listOut[T]{Body: List[T]{Items: make([]T, 0, len(r.Items)), NextCursor: r.NextCursor}}
	for _, d := range r.Items {
		out.Body.Items = append(out.Body.Items, conv(d))
	}
	return out
}

// Tenant is a tenant in the admin API.
type Tenant struct {
	ID                             string     `json:"id" format:"uuid"`
	Name                           string     `json:"name"`
	DefaultEndpointID              string     `json:"default_endpoint_id,omitempty" doc:"The endpoint callback_url and the fields below read and write; absent when the tenant has none."`
	CallbackURL                    string     `json:"callback_url" doc:"The default endpoint's URL; empty when the tenant has none."`
	Events                         []string   `json:"events" doc:"Subscribed event types; messaging_postbacks is always delivered."`
	Rate                           int        `json:"rate,omitempty" doc:"Events/s; absent means the gateway's TENANT_RATE."`
	Burst                          int        `json:"burst,omitempty" doc:"Absent means the gateway's TENANT_BURST."`
	Concurrency                    int        `json:"concurrency,omitempty" doc:"In-flight deliveries; absent means the gateway's TENANT_CONCURRENCY."`
	DeliverTestEvents              bool       `json:"deliver_test_events"`
	EndpointEnabled                bool       `json:"endpoint_enabled" doc:"False while deliveries are paused (the endpoint answered 410, or an operator paused it); events wait."`
	EndpointDisabledAt             *time.Time `json:"endpoint_disabled_at,omitempty"`
	EndpointDisabledReason         string     `json:"endpoint_disabled_reason,omitempty"`
	PreviousSigningSecretExpiresAt *time.Time `json:"previous_signing_secret_expires_at,omitempty" doc:"Until then deliveries are also signed with the secret replaced by the last rotation."`
	CreatedAt                      time.Time  `json:"created_at"`
	UpdatedAt                      time.Time  `json:"updated_at"`
}

func tenantOf(t tenant.Tenant) Tenant {
	out := Tenant{
		ID:                             t.ID,
		Name:                           t.Name,
		CallbackURL:                    t.CallbackURL,
		Events:                         t.Events,
		Rate:                           t.Rate,
		Burst:                          t.Burst,
		Concurrency:                    t.Concurrency,
		DeliverTestEvents:              t.DeliverTestEvents,
		EndpointEnabled:                t.EndpointDisabledAt == nil,
		EndpointDisabledAt:             t.EndpointDisabledAt,
		EndpointDisabledReason:         t.EndpointDisabledReason,
		PreviousSigningSecretExpiresAt: t.PreviousSigningSecretExpiresAt,
		CreatedAt:                      t.CreatedAt,
		UpdatedAt:                      t.UpdatedAt,
	}
	if t.DefaultEndpointID != uuid.Nil {
		out.DefaultEndpointID = event.FormatEndpointID(t.DefaultEndpointID)
	}
	return out
}

type tenantOut struct {
	Body Tenant
}

// TenantWithSecret is a tenant with its signing secret: the answer of
// create and rotate, and of nothing else.
type TenantWithSecret struct {
	Tenant
	SigningSecret string `json:"signing_secret,omitempty" doc:"The default endpoint's Standard Webhooks signing secret (whsec_...), when this answer created or rotated it. Shown only in this answer: store it now."`
}

type tenantSecretOut struct {
	Body TenantWithSecret
}

type createTenantIn struct {
	Body struct {
		Name              string   `json:"name" minLength:"1" maxLength:"200"`
		CallbackURL       string   `json:"callback_url,omitempty" minLength:"1" maxLength:"2048" doc:"Where events are POSTed: an https URL on a public address (http and private addresses only with CALLBACK_ALLOW_PRIVATE). Creates the tenant's default endpoint with the fields below; without it the tenant has no endpoint yet (add them through the endpoints API) and the fields below must be absent."`
		Events            []string `json:"events,omitempty" enum:"messaging_postbacks,messages,message_echoes,message_deliveries,message_reads,messaging_referrals,messaging_optins,message_reactions,messaging_handovers,standby,messaging_policy_enforcement,messaging_account_linking,other" doc:"Event types to deliver besides messaging_postbacks (always delivered)."`
		Rate              int      `json:"rate,omitempty" minimum:"0" maximum:"1000000" doc:"Events/s. 0 or absent: the gateway's default, TENANT_RATE (the tenant then shows no rate)."`
		Burst             int      `json:"burst,omitempty" minimum:"0" maximum:"1000000" doc:"Events sent at once above the rate. 0 or absent: the gateway's default, TENANT_BURST (the tenant then shows no burst); 0 never means no burst."`
		Concurrency       int      `json:"concurrency,omitempty" minimum:"0" maximum:"1000000" doc:"In-flight deliveries. 0 or absent: the gateway's default, TENANT_CONCURRENCY (the tenant then shows no concurrency)."`
		DeliverTestEvents *bool    `json:"deliver_test_events,omitempty" doc:"Deliver Meta's dashboard test events (default true)."`
	}
}

func (h *adminAPI) createTenant(ctx context.Context, in *createTenantIn) (*tenantSecretOut, error) {
	b := in.Body
	t, secret, err := h.svc.CreateTenant(ctx, tenant.TenantInput{
		Name: b.Name, CallbackURL: b.CallbackURL, Events: b.Events,
		Rate: b.Rate, Burst: b.Burst, Concurrency: b.Concurrency, DeliverTestEvents: b.DeliverTestEvents,
	})
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	return &tenantSecretOut{Body: TenantWithSecret{Tenant: tenantOf(t), SigningSecret: secret}}, nil
}

type listTenantsIn struct {
	ListParams
}

func (h *adminAPI) listTenants(ctx context.Context, in *listTenantsIn) (*listOut[Tenant], error) {
	r, err := h.svc.ListTenants(ctx, in.options())
	if err != nil {
		return nil, problem(ctx, h.log, err, "query")
	}
	return listOf(r, tenantOf), nil
}

type getTenantIn struct {
	TenantParams
}

func (h *adminAPI) getTenant(ctx context.Context, in *getTenantIn) (*tenantOut, error) {
	t, err := h.svc.GetTenant(ctx, in.TenantID)
	if err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	return &tenantOut{Body: tenantOf(t)}, nil
}

type updateTenantIn struct {
	TenantParams
	Body struct {
		Name              *string   `json:"name,omitempty" minLength:"1" maxLength:"200"`
		CallbackURL       *string   `json:"callback_url,omitempty" minLength:"1" maxLength:"2048"`
		Events            *[]string `json:"events,omitempty" enum:"messaging_postbacks,messages,message_echoes,message_deliveries,message_reads,messaging_referrals,messaging_optins,message_reactions,messaging_handovers,standby,messaging_policy_enforcement,messaging_account_linking,other"`
		Rate              *int      `json:"rate,omitempty" minimum:"0" maximum:"1000000" doc:"Events/s. 0 returns to the gateway's default, TENANT_RATE; absent leaves it as it is."`
		Burst             *int      `json:"burst,omitempty" minimum:"0" maximum:"1000000" doc:"Events sent at once above the rate. 0 returns to the gateway's default, TENANT_BURST (0 never means no burst); absent leaves it as it is."`
		Concurrency       *int      `json:"concurrency,omitempty" minimum:"0" maximum:"1000000" doc:"In-flight deliveries. 0 returns to the gateway's default, TENANT_CONCURRENCY; absent leaves it as it is."`
		DeliverTestEvents *bool     `json:"deliver_test_events,omitempty"`
		EndpointEnabled   *bool     `json:"endpoint_enabled,omitempty" doc:"true re-enables deliveries paused by a 410 (or by an operator) and resets the endpoint's circuit breaker in every worker, also when it was not paused; false pauses them."`
	}
}

func (h *adminAPI) updateTenant(ctx context.Context, in *updateTenantIn) (*tenantSecretOut, error) {
	b := in.Body
	t, secret, err := h.svc.UpdateTenant(ctx, in.TenantID, tenant.TenantPatch{
		Name: b.Name, CallbackURL: b.CallbackURL, Events: b.Events, Rate: b.Rate, Burst: b.Burst,
		Concurrency: b.Concurrency, DeliverTestEvents: b.DeliverTestEvents, EndpointEnabled: b.EndpointEnabled,
	})
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	return &tenantSecretOut{Body: TenantWithSecret{Tenant: tenantOf(t), SigningSecret: secret}}, nil
}

func (h *adminAPI) deleteTenant(ctx context.Context, in *getTenantIn) (*struct{}, error) {
	if err := h.svc.DeleteTenant(ctx, in.TenantID); err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	return nil, nil
}

type issueTokenIn struct {
	TenantParams
	Body *struct {
		TTL string `json:"ttl,omitempty" pattern:"^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$" maxLength:"32" doc:"Lifetime as a Go duration such as 720h; default 24h, at most a year."`
	}
}

type tokenOut struct {
	Body struct {
		Token     string    `json:"token" doc:"A tenant-scoped bearer token."`
		TenantID  string    `json:"tenant_id"`
		ExpiresAt time.Time `json:"expires_at"`
	}
}

func (h *adminAPI) issueToken(ctx context.Context, in *issueTokenIn) (*tokenOut, error) {
	var ttl time.Duration
	if in.Body != nil && in.Body.TTL != "" {
		d, err := time.ParseDuration(in.Body.TTL)
		if err != nil {
			return nil, problem(ctx, h.log, &tenant.FieldError{Field: "ttl", Message: "is not a duration", Err: tenant.ErrInvalid}, "body")
		}
		ttl = d
	}
	tok, exp, err := h.svc.IssueToken(ctx, in.TenantID, ttl)
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	out := &tokenOut{}
	out.Body.Token, out.Body.TenantID, out.Body.ExpiresAt = tok, normalizeID(in.TenantID), exp
	return out, nil
}

func (h *adminAPI) rotateSigningSecret(ctx context.Context, in *getTenantIn) (*tenantSecretOut, error) {
	t, secret, err := h.svc.RotateSigningSecret(ctx, in.TenantID)
	if err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	return &tenantSecretOut{Body: TenantWithSecret{Tenant: tenantOf(t), SigningSecret: secret}}, nil
}
