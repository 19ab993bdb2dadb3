package api

import (
	"context"
	"time"

	"github.com/postgate/postgate/internal/tenant"
)

// AppParams names an app of a tenant in the path.
type AppParams struct {
	TenantParams
	AppID string `path:"app_id" pattern:"^[0-9]{1,20}$" doc:"Meta's app id."`
}

// App is an app in the admin API. Its secret is write-only and never part of it.
type App struct {
	AppID                   string     `json:"app_id"`
	TenantID                string     `json:"tenant_id"`
	Name                    string     `json:"name" doc:"The app's name at Meta, read when its ownership was proved (empty when GRAPH_API_URL is off)."`
	VerifyToken             string     `json:"verify_token" doc:"Paste into Meta's dashboard (Webhooks, Verify token)."`
	WebhookURL              string     `json:"webhook_url" doc:"Paste into Meta's dashboard (Webhooks, Callback URL)."`
	LegacySHA1              bool       `json:"legacy_sha1" doc:"Also accept X-Hub-Signature (SHA-1) when X-Hub-Signature-256 is missing."`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty" doc:"Until then the secret replaced by the last rotation is still accepted."`
	CreatedAt               time.Time  `json:"created_at"`
	UpdatedAt               time.Time  `json:"updated_at"`
}

func (h *adminAPI) appOf(a tenant.App) App {
	return App{
		AppID:                   a.AppID,
		TenantID:                a.TenantID,
		Name:                    a.Name,
		VerifyToken:             a.VerifyToken,
		WebhookURL:              h.svc.WebhookURL(a.AppID),
		LegacySHA1:              a.LegacySHA1,
		PreviousSecretExpiresAt: a.PreviousSecretExpiresAt,
		CreatedAt:               a.CreatedAt,
		UpdatedAt:               a.UpdatedAt,
	}
}

type appOut struct {
	Body App
}

type registerAppIn struct {
	TenantParams
	Body struct {
		AppID       string `json:"app_id" pattern:"^[0-9]{1,20}$" doc:"Meta's app id."`
		AppSecret   string `json:"app_secret" minLength:"1" maxLength:"256" writeOnly:"true" doc:"The app secret Meta signs webhooks with. Stored encrypted, never returned."`
		VerifyToken string `json:"verify_token,omitempty" minLength:"16" maxLength:"256" pattern:"^[!-~]+$" doc:"Optional; by default a random one is generated. Must be unique."`
		LegacySHA1  bool   `json:"legacy_sha1,omitempty" doc:"Also accept X-Hub-Signature (SHA-1) when X-Hub-Signature-256 is missing."`
	}
}

func (h *adminAPI) registerApp(ctx context.Context, in *registerAppIn) (*appOut, error) {
	b := in.Body
	a, err := h.svc.RegisterApp(ctx, in.TenantID, tenant.AppInput{AppID: b.AppID, AppSecret: b.AppSecret, VerifyToken: b.VerifyToken, LegacySHA1: b.LegacySHA1})
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	return &appOut{Body: h.appOf(a)}, nil
}

type listAppsIn struct {
	TenantParams
	ListParams
}

func (h *adminAPI) listApps(ctx context.Context, in *listAppsIn) (*listOut[App], error) {
	r, err := h.svc.ListApps(ctx, in.TenantID, in.options())
	if err != nil {
		return nil, problem(ctx, h.log, err, "query")
	}
	return listOf(r, h.appOf), nil
}

type getAppIn struct {
	AppParams
}

func (h *adminAPI) getApp(ctx context.Context, in *getAppIn) (*appOut, error) {
	a, err := h.svc.GetApp(ctx, in.TenantID, in.AppID)
	if err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	return &appOut{Body: h.appOf(a)}, nil
}

type updateAppIn struct {
	AppParams
	Body struct {
		AppSecret  *string `json:"app_secret,omitempty" minLength:"1" maxLength:"256" writeOnly:"true" doc:"A new secret: the current one stays valid for 24 hours."`
		LegacySHA1 *bool   `json:"legacy_sha1,omitempty"`
	}
}

func (h *adminAPI) updateApp(ctx context.Context, in *updateAppIn) (*appOut, error) {
	a, err := h.svc.UpdateApp(ctx, in.TenantID, in.AppID, tenant.AppPatch{AppSecret: in.Body.AppSecret, LegacySHA1: in.Body.LegacySHA1})
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	return &appOut{Body: h.appOf(a)}, nil
}

func (h *adminAPI) deleteApp(ctx context.Context, in *getAppIn) (*struct{}, error) {
	if err := h.svc.DeleteApp(ctx, in.TenantID, in.AppID); err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	return nil, nil
}

// Page is a registered Page (or Instagram account) in the admin API.
type Page struct {
	PageID   string `json:"page_id"`
	AppID    string `json:"app_id"`
	TenantID string `json:"tenant_id"`
	Object   string `json:"object" enum:"page,instagram"`
	// HasAccessToken: the token itself is write-only.
	HasAccessToken bool      `json:"has_access_token" doc:"Whether a Page access token is stored (it is never returned)."`
	CreatedAt      time.Time `json:"created_at"`
}

func pageOf(p tenant.Page) Page {
	return Page{PageID: p.PageID, AppID: p.AppID, TenantID: p.TenantID, Object: string(p.Object), HasAccessToken: p.HasAccessToken, CreatedAt: p.CreatedAt}
}

type pageOut struct {
	Body Page
}

type registerPageIn struct {
	TenantParams
	Body struct {
		PageID string `json:"page_id" pattern:"^[0-9]{1,20}$" doc:"The Page's (or Instagram account's) id."`
		AppID  string `json:"app_id" pattern:"^[0-9]{1,20}$" doc:"One of this tenant's apps."`
		Object string `json:"object,omitempty" enum:"page,instagram" doc:"Default page."`
		// PageAccessToken is write-only: sealed at rest, never returned or logged.
		PageAccessToken string `json:"page_access_token,omitempty" maxLength:"2048" writeOnly:"true" doc:"Optional: a Page access token of the app (pages_messaging, pages_manage_metadata), to subscribe the Page and check its subscription. Stored encrypted, never returned."`
	}
}

func (h *adminAPI) registerPage(ctx context.Context, in *registerPageIn) (*pageOut, error) {
	p, err := h.svc.RegisterPage(ctx, in.TenantID, tenant.PageInput{PageID: in.Body.PageID, AppID: in.Body.AppID, Object: tenant.Object(in.Body.Object),
		AccessToken: in.Body.PageAccessToken})
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	return &pageOut{Body: pageOf(p)}, nil
}

type listPagesIn struct {
	TenantParams
	ListParams
}

func (h *adminAPI) listPages(ctx context.Context, in *listPagesIn) (*listOut[Page], error) {
	r, err := h.svc.ListPages(ctx, in.TenantID, in.options())
	if err != nil {
		return nil, problem(ctx, h.log, err, "query")
	}
	return listOf(r, pageOf), nil
}

type updatePageIn struct {
	PageParams
	Body struct {
		PageAccessToken *string `json:"page_access_token" maxLength:"2048" writeOnly:"true" doc:"A new Page access token (replaces the stored one), or \"\" to remove it."`
	}
}

func (h *adminAPI) updatePage(ctx context.Context, in *updatePageIn) (*pageOut, error) {
	if in.Body.PageAccessToken == nil {
		p, err := h.svc.GetPage(ctx, in.TenantID, in.PageID, in.AppID)
		if err != nil {
			return nil, problem(ctx, h.log, err, "query")
		}
		return &pageOut{Body: pageOf(p)}, nil
	}
	p, err := h.svc.SetPageToken(ctx, in.TenantID, in.PageID, in.AppID, *in.Body.PageAccessToken)
	if err != nil {
		return nil, problem(ctx, h.log, err, "body")
	}
	return &pageOut{Body: pageOf(p)}, nil
}

type deletePageIn struct {
	TenantParams
	PageID string `path:"page_id" pattern:"^[0-9]{1,20}$"`
	AppID  string `query:"app_id" pattern:"^[0-9]{1,20}$" doc:"Required when the Page is registered on several of the tenant's apps."`
}

func (h *adminAPI) deletePage(ctx context.Context, in *deletePageIn) (*struct{}, error) {
	if err := h.svc.DeletePage(ctx, in.TenantID, in.PageID, in.AppID); err != nil {
		return nil, problem(ctx, h.log, err, "query")
	}
	return nil, nil
}
