package api

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/postgate/postgate/internal/session"
)

const portalLinkDoc = "A one-time link that signs the tenant in to its own part of the web console. It opens a page " +
	"whose button signs in (a POST from the console's origin), so a mail scanner that fetches the link does not use it " +
	"up. `ttl` is a Go duration from 1m to 24h (default 15m)."

// PortalLink is a tenant's console sign-in link.
type PortalLink struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

type portalLinkIn struct {
	TenantParams
	Body *struct {
		TTL string `json:"ttl,omitempty" maxLength:"20" doc:"How long the link works, a Go duration (1m to 24h). Default 15m."`
	}
}

type portalLinkOut struct {
	Body PortalLink
}

// DefaultPortalLinkTTL is how long a portal link works unless asked.
const DefaultPortalLinkTTL = 15 * time.Minute

func (h *adminAPI) createPortalLink(ctx context.Context, in *portalLinkIn) (*portalLinkOut, error) {
	if h.sessions == nil {
		return nil, huma.NewError(http.StatusConflict, "the console is not served by this gateway")
	}
	ttl := DefaultPortalLinkTTL
	if in.Body != nil && in.Body.TTL != "" {
		d, err := time.ParseDuration(in.Body.TTL)
		if err != nil || d < time.Minute || d > 24*time.Hour {
			return nil, huma.NewError(http.StatusUnprocessableEntity, "validation failed",
				&huma.ErrorDetail{Location: "body.ttl", Message: "must be a duration from 1m to 24h, such as 15m"})
		}
		ttl = d
	}
	if _, err := h.svc.GetTenant(ctx, in.TenantID); err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	token, exp, err := h.sessions.CreateLink(ctx, session.RoleTenant, in.TenantID, "portal:"+in.TenantID, ttl)
	if err != nil {
		return nil, problem(ctx, h.log, err, "path")
	}
	return &portalLinkOut{Body: PortalLink{URL: session.LinkURL(h.baseURL, token), ExpiresAt: exp}}, nil
}
