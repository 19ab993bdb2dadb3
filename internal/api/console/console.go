// Package console is the web console at /console/: server-rendered pages
// (html/template, every asset embedded) for operators and, through portal
// links, for tenants. It calls the same services as the admin API, with
// the same rules; what it adds is sign-in (package session), CSRF tokens,
// and screens made for the job.
package console

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/postgate/postgate/internal/delivery"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/meta"
	"github.com/postgate/postgate/internal/session"
	"github.com/postgate/postgate/internal/tenant"
)

//go:embed templates/*.html static/*
var files embed.FS

// Prefix is where the console is mounted.
const Prefix = "/console"

// cookieName is the session cookie.
const cookieName = "postgate_console"

// Deps are the services the console calls.
type Deps struct {
	Tenants  *tenant.Service
	Events   *event.Service
	Meta     *meta.Service // nil: as GRAPH_API_URL=off
	Tester   *delivery.Tester
	Tokens   *tenant.Tokens
	Sessions *session.Store
	// PublicURL is the gateway's public base URL: https makes the cookie
	// Secure.
	PublicURL string
	// SessionTTL is CONSOLE_SESSION_TTL (default 12h).
	SessionTTL time.Duration
	Log        *slog.Logger
	Now        func() time.Time
}

// Console serves the pages.
type Console struct {
	d      Deps
	pages  map[string]*template.Template
	secure bool
	// publicHost is PUBLIC_URL's host: behind a proxy that rewrites Host,
	// a browser's Origin names it.
	publicHost string

	mu       sync.Mutex
	overview map[string]cachedOverview
}

type cachedOverview struct {
	at time.Time
	v  overviewData
}

// Register mounts the console on app.
func Register(app *fiber.App, d Deps) *Console {
	if d.SessionTTL <= 0 {
		d.SessionTTL = 12 * time.Hour
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	c := &Console{d: d, pages: parsePages(), secure: strings.HasPrefix(d.PublicURL, "https://"), overview: map[string]cachedOverview{}}
	if u, err := url.Parse(d.PublicURL); err == nil {
		c.publicHost = u.Host
	}
	static, _ := fs.Sub(files, "static")
	g := app.Group(Prefix, c.headers)
	g.Get("/static/:name", func(ctx *fiber.Ctx) error {
		name := ctx.Params("name")
		b, err := fs.ReadFile(static, name)
		if err != nil || strings.Contains(name, "/") {
			return fiber.ErrNotFound
		}
		switch {
		case strings.HasSuffix(name, ".css"):
			ctx.Set(fiber.HeaderContentType, "text/css; charset=utf-8")
		case strings.HasSuffix(name, ".js"):
			ctx.Set(fiber.HeaderContentType, "text/javascript; charset=utf-8")
		case strings.HasSuffix(name, ".svg"):
			ctx.Set(fiber.HeaderContentType, "image/svg+xml")
		}
		ctx.Set(fiber.HeaderCacheControl, "public, max-age=3600")
		return ctx.Send(b)
	})
	g.Get("/sign-in", c.signInPage)
	g.Post("/sign-in", c.sameOrigin, c.signIn)
	g.Get("/link/:token", c.linkPage)
	g.Post("/link/:token", c.sameOrigin, c.useLink)
	g.Post("/sign-out", c.auth, c.csrf, c.signOut)
	g.Get("/", c.auth, c.overviewPage)
	g.Get("/tenants", c.auth, c.adminOnly, c.tenantsPage)
	g.Post("/tenants", c.auth, c.adminOnly, c.csrf, c.createTenant)
	t := g.Group("/tenants/:tenant", c.auth, c.tenantScope)
	t.Get("", c.tenantPage)
	t.Post("/delete", c.adminOnly, c.csrf, c.deleteTenant)
	t.Post("/edit", c.csrf, c.editTenant)
	t.Post("/endpoints/:endpoint/edit", c.csrf, c.editEndpoint)
	t.Post("/portal-link", c.adminOnly, c.csrf, c.portalLink)
	t.Post("/apps", c.csrf, c.createApp)
	t.Post("/apps/:app/subscribe", c.csrf, c.subscribeApp)
	t.Post("/apps/:app/delete", c.csrf, c.deleteApp)
	t.Post("/pages", c.csrf, c.createPage)
	t.Post("/pages/:page/subscribe", c.csrf, c.subscribePage)
	t.Post("/pages/:page/delete", c.csrf, c.deletePage)
	t.Post("/endpoints", c.csrf, c.createEndpoint)
	t.Post("/endpoints/:endpoint/enable", c.csrf, c.enableEndpoint(true))
	t.Post("/endpoints/:endpoint/disable", c.csrf, c.enableEndpoint(false))
	t.Post("/endpoints/:endpoint/rotate", c.csrf, c.rotateEndpoint)
	t.Post("/endpoints/:endpoint/test", c.csrf, c.testEndpoint)
	t.Post("/endpoints/:endpoint/delete", c.csrf, c.deleteEndpoint)
	t.Get("/events", c.eventsPage)
	t.Post("/events/replay", c.csrf, c.replayMany)
	t.Get("/events/:event", c.eventPage)
	t.Post("/events/:event/replay", c.csrf, c.replayEvent)
	t.Get("/quarantine", c.quarantinePage)
	g.Use(func(ctx *fiber.Ctx) error { return c.notFound(ctx) })
	return c
}

// headers are on every console answer: a strict CSP (no inline script,
// no other origin), no framing, no referrer (a link's token is in its
// URL), and no caching of pages that may show a secret.
func (c *Console) headers(ctx *fiber.Ctx) error {
	ctx.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	ctx.Set("X-Frame-Options", "DENY")
	ctx.Set("X-Content-Type-Options", "nosniff")
	// Same-origin only: a link's token (in its URL) never leaves for
	// another site, and the console's own POSTs keep their Origin.
	ctx.Set("Referrer-Policy", "same-origin")
	if !strings.HasPrefix(ctx.Path(), Prefix+"/static/") {
		ctx.Set(fiber.HeaderCacheControl, "no-store")
	}
	return ctx.Next()
}

type ctxKey int

const sessionKey ctxKey = iota

func sess(ctx *fiber.Ctx) session.Session {
	s, _ := ctx.Locals(sessionKey).(session.Session)
	return s
}

// auth loads the session of the cookie, or sends the browser to sign in.
func (c *Console) auth(ctx *fiber.Ctx) error {
	s, err := c.d.Sessions.Get(ctx.Context(), ctx.Cookies(cookieName))
	if errors.Is(err, session.ErrNoSession) {
		if ctx.Method() == fiber.MethodGet {
			return ctx.Redirect(Prefix+"/sign-in", http.StatusSeeOther)
		}
		return c.render(ctx, http.StatusUnauthorized, "error.html", page{Title: "Signed out",
			Error: "Your session has ended. Sign in again."})
	}
	if err != nil {
		return c.fail(ctx, err)
	}
	ctx.Locals(sessionKey, s)
	return ctx.Next()
}

// csrf refuses a POST without the session's CSRF token.
func (c *Console) csrf(ctx *fiber.Ctx) error {
	want := sess(ctx).CSRF
	// From the form body only: a token in a URL ends up in logs.
	got := string(ctx.Request().PostArgs().Peek("csrf"))
	if want == "" || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		return c.render(ctx, http.StatusForbidden, "error.html", page{Title: "Refused",
			Error: "This form is out of date or did not come from the console (CSRF token missing or wrong). Go back, reload and try again."})
	}
	return ctx.Next()
}

// sameOrigin refuses a sign-in POST that a browser says came from
// another site: before a session there is no CSRF token to check. A
// browser's own word (Sec-Fetch-Site) decides when it gives one; else
// Origin (or Referer) must name this host or PUBLIC_URL's. A request with
// neither is not a browser's form, and the token or link it carries is
// the credential.
func (c *Console) sameOrigin(ctx *fiber.Ctx) error {
	refuse := func() error {
		return c.render(ctx, http.StatusForbidden, "error.html", page{Title: "Refused",
			Error: "Sign in from the console's own page."})
	}
	switch ctx.Get("Sec-Fetch-Site") {
	case "same-origin":
		return ctx.Next()
	case "cross-site", "same-site":
		return refuse()
	}
	origin := ctx.Get(fiber.HeaderOrigin)
	if origin == "" {
		origin = ctx.Get(fiber.HeaderReferer)
	}
	if origin == "" {
		return ctx.Next()
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Host != string(ctx.Request().Host()) && u.Host != c.publicHost) {
		return refuse()
	}
	return ctx.Next()
}

func (c *Console) adminOnly(ctx *fiber.Ctx) error {
	if !sess(ctx).Admin() {
		return c.notFound(ctx)
	}
	return ctx.Next()
}

// tenantScope makes every URL of another tenant a 404 for a tenant
// session, whatever it types.
func (c *Console) tenantScope(ctx *fiber.Ctx) error {
	if !sess(ctx).Reaches(ctx.Params("tenant")) {
		return c.notFound(ctx)
	}
	return ctx.Next()
}

func (c *Console) setCookie(ctx *fiber.Ctx, token string, expires time.Time) {
	ctx.Cookie(&fiber.Cookie{Name: cookieName, Value: token, Path: Prefix, Expires: expires,
		HTTPOnly: true, Secure: c.secure, SameSite: fiber.CookieSameSiteStrictMode})
}

func (c *Console) signInPage(ctx *fiber.Ctx) error {
	return c.render(ctx, http.StatusOK, "sign-in.html", page{Title: "Sign in"})
}

// signIn trades an admin-API token for a session.
func (c *Console) signIn(ctx *fiber.Ctx) error {
	raw := strings.TrimSpace(ctx.FormValue("token"))
	claims, err := c.d.Tokens.Verify(raw)
	if err != nil || raw == "" {
		return c.render(ctx, http.StatusUnauthorized, "sign-in.html", page{Title: "Sign in",
			Error: "That token is not valid (expired, for another gateway, or mistyped)."})
	}
	role := session.RoleAdmin
	if claims.Role == tenant.RoleTenant {
		role = session.RoleTenant
		// A token can outlive its tenant.
		if _, err := c.d.Tenants.GetTenant(ctxOf(ctx), claims.TenantID); err != nil {
			if errors.Is(err, tenant.ErrNotFound) {
				return c.render(ctx, http.StatusUnauthorized, "sign-in.html", page{Title: "Sign in",
					Error: "That token's tenant no longer exists."})
			}
			return c.fail(ctx, err)
		}
	}
	// The session ends no later than the token it was made from.
	ttl := c.d.SessionTTL
	if !claims.ExpiresAt.IsZero() {
		ttl = min(ttl, time.Until(claims.ExpiresAt))
	}
	s, token, err := c.d.Sessions.Create(ctx.Context(), role, claims.TenantID, claims.Subject, ttl)
	if err != nil {
		return c.fail(ctx, err)
	}
	c.setCookie(ctx, token, s.ExpiresAt)
	return ctx.Redirect(home(s), http.StatusSeeOther)
}

func home(s session.Session) string {
	if s.Admin() {
		return Prefix + "/"
	}
	return Prefix + "/tenants/" + s.TenantID
}

// linkPage is where a sign-in link lands: a GET that uses nothing up (a
// mail scanner may fetch it), showing the button that does.
func (c *Console) linkPage(ctx *fiber.Ctx) error {
	token := ctx.Params("token")
	if !c.d.Sessions.LinkValid(ctx.Context(), token) {
		return c.render(ctx, http.StatusNotFound, "link.html", page{Title: "Sign-in link",
			Error: "This sign-in link has been used or has expired. Ask for a new one."})
	}
	return c.render(ctx, http.StatusOK, "link.html", page{Title: "Sign-in link", Data: map[string]string{"Token": token}})
}

func (c *Console) useLink(ctx *fiber.Ctx) error {
	s, token, err := c.d.Sessions.UseLink(ctx.Context(), ctx.Params("token"), c.d.SessionTTL)
	if errors.Is(err, session.ErrNoSession) {
		return c.render(ctx, http.StatusNotFound, "link.html", page{Title: "Sign-in link",
			Error: "This sign-in link has been used or has expired. Ask for a new one."})
	}
	if err != nil {
		return c.fail(ctx, err)
	}
	c.setCookie(ctx, token, s.ExpiresAt)
	return ctx.Redirect(home(s), http.StatusSeeOther)
}

func (c *Console) signOut(ctx *fiber.Ctx) error {
	if err := c.d.Sessions.Delete(ctx.Context(), ctx.Cookies(cookieName)); err != nil {
		return c.fail(ctx, err)
	}
	ctx.Cookie(&fiber.Cookie{Name: cookieName, Value: "", Path: Prefix, Expires: time.Unix(0, 0), MaxAge: -1,
		HTTPOnly: true, Secure: c.secure, SameSite: fiber.CookieSameSiteStrictMode})
	return ctx.Redirect(Prefix+"/sign-in", http.StatusSeeOther)
}

// fail answers a service error: not found is 404, a refused input 422
// with what is wrong, anything else 500 (logged, never shown).
func (c *Console) fail(ctx *fiber.Ctx, err error) error {
	switch {
	case errors.Is(err, tenant.ErrNotFound), errors.Is(err, event.ErrNotFound):
		return c.notFound(ctx)
	case errors.Is(err, tenant.ErrInvalid), errors.Is(err, tenant.ErrConflict), errors.Is(err, event.ErrInvalid):
		return c.render(ctx, http.StatusUnprocessableEntity, "error.html", page{Title: "Not saved", Error: inputError(err)})
	case errors.Is(err, meta.ErrOff):
		return c.render(ctx, http.StatusConflict, "error.html", page{Title: "Meta is off", Error: err.Error()})
	case errors.Is(err, meta.ErrMeta), errors.Is(err, tenant.ErrUpstream):
		return c.render(ctx, http.StatusBadGateway, "error.html", page{Title: "Meta said no", Error: err.Error()})
	}
	c.d.Log.Error("console request failed", "path", ctx.Route().Path, "err", err)
	return c.render(ctx, http.StatusInternalServerError, "error.html", page{Title: "Error",
		Error: "Something went wrong on our side; the operator's logs have the details."})
}

// inputError says what is wrong with an input, naming the field.
func inputError(err error) string {
	var tfe *tenant.FieldError
	if errors.As(err, &tfe) {
		return strings.ReplaceAll(tfe.Field, "_", " ") + ": " + tfe.Message
	}
	var efe *event.FieldError
	if errors.As(err, &efe) {
		return strings.ReplaceAll(efe.Field, "_", " ") + ": " + efe.Message
	}
	return err.Error()
}

func (c *Console) notFound(ctx *fiber.Ctx) error {
	return c.render(ctx, http.StatusNotFound, "error.html", page{Title: "Not found",
		Error: "There is nothing here, or nothing you may see."})
}

// ctxOf bounds the services' work by the request.
func ctxOf(ctx *fiber.Ctx) context.Context { return ctx.Context() }
