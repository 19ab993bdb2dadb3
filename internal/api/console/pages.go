package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"errors"
	"net/url"

	"github.com/gofiber/fiber/v2"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/meta"
	"github.com/postgate/postgate/internal/session"
	"github.com/postgate/postgate/internal/tenant"
)

// page is what every template gets.
type page struct {
	Title   string
	Session session.Session
	Tenant  *tenant.Tenant // the tenant the page is about, if any
	Error   string
	Notice  string
	Data    any
}

var funcs = template.FuncMap{
	"ts": func(t any) template.HTML {
		var v time.Time
		switch x := t.(type) {
		case time.Time:
			v = x
		case *time.Time:
			if x == nil {
				return "—"
			}
			v = *x
		}
		if v.IsZero() {
			return "—"
		}
		u := v.UTC()
		return template.HTML(`<time datetime="` + u.Format(time.RFC3339) + `">` + template.HTMLEscapeString(u.Format("2006-01-02 15:04:05 UTC")) + `</time>`)
	},
	"epid":  event.FormatEndpointID,
	"evid":  func(e event.Event) string { return event.FormatID(e.ID) },
	"dur":   func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"age":   func(d time.Duration) string { return d.Round(time.Second).String() },
	"fmtid": event.FormatID,
	"waited": func(h *event.Hold) string {
		return h.Waited(time.Now()).Round(time.Millisecond).String()
	},
	"join":  strings.Join,
	"query": func(v map[string]string) template.URL { return template.URL(queryOf(v)) },
}

func parsePages() map[string]*template.Template {
	names, err := files.ReadDir("templates")
	if err != nil {
		panic(err)
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		if n.Name() == "layout.html" || n.Name() == "parts.html" {
			continue
		}
		out[n.Name()] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(files,
			"templates/layout.html", "templates/parts.html", "templates/"+n.Name()))
	}
	return out
}

func (c *Console) render(ctx *fiber.Ctx, status int, name string, p page) error {
	if p.Session.Role == "" {
		p.Session = sess(ctx)
	}
	var buf bytes.Buffer
	if err := c.pages[name].Execute(&buf, p); err != nil {
		c.d.Log.Error("console template", "page", name, "err", err)
		ctx.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
		return ctx.Status(http.StatusInternalServerError).SendString("internal error")
	}
	ctx.Set(fiber.HeaderContentType, fiber.MIMETextHTMLCharsetUTF8)
	return ctx.Status(status).Send(buf.Bytes())
}

func queryOf(v map[string]string) string {
	var b strings.Builder
	for k, val := range v {
		if val == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k + "=" + url.QueryEscape(val))
	}
	return b.String()
}

// overviewData is the first screen.
type overviewData struct {
	Total     event.Overview
	Tenants   []tenantRow
	Problems  []meta.Problem
	Disabled  []tenant.Endpoint
	More      bool
	MetaOff   bool
	CheckedAt time.Time
}

type tenantRow struct {
	Tenant   tenant.Tenant
	Overview event.Overview
}

// overviewTTL is how long the overview's numbers are reused.
const overviewTTL = 5 * time.Second

func (c *Console) overviewOf(ctx *fiber.Ctx, tenantID string) (overviewData, error) {
	now := c.d.Now()
	c.mu.Lock()
	if v, ok := c.overview[tenantID]; ok && now.Sub(v.at) < overviewTTL {
		c.mu.Unlock()
		return v.v, nil
	}
	c.mu.Unlock()
	var d overviewData
	var err error
	if d.Total, err = c.d.Events.Overview(ctxOf(ctx), tenantID, now); err != nil {
		return d, err
	}
	if d.Disabled, err = c.d.Tenants.DisabledEndpoints(ctxOf(ctx), tenantID, 20); err != nil {
		return d, err
	}
	if c.d.Meta != nil && !c.d.Meta.Off() {
		if d.Problems, err = c.d.Meta.Problems(ctxOf(ctx), tenantID, 20); err != nil {
			return d, err
		}
	} else {
		d.MetaOff = true
	}
	if tenantID == "" {
		res, err := c.d.Tenants.ListTenants(ctxOf(ctx), database.ListOptions{Limit: 20})
		if err != nil {
			return d, err
		}
		d.More = res.NextCursor != ""
		for _, t := range res.Items {
			o, err := c.d.Events.Overview(ctxOf(ctx), t.ID, now)
			if err != nil {
				return d, err
			}
			d.Tenants = append(d.Tenants, tenantRow{Tenant: t, Overview: o})
		}
	}
	d.CheckedAt = now
	c.mu.Lock()
	c.overview[tenantID] = cachedOverview{at: now, v: d}
	c.mu.Unlock()
	return d, nil
}

func (c *Console) overviewPage(ctx *fiber.Ctx) error {
	s := sess(ctx)
	if !s.Admin() {
		return ctx.Redirect(home(s), http.StatusSeeOther)
	}
	d, err := c.overviewOf(ctx, "")
	if err != nil {
		return c.fail(ctx, err)
	}
	return c.render(ctx, http.StatusOK, "overview.html", page{Title: "Overview", Data: d})
}

func listOpts(ctx *fiber.Ctx) database.ListOptions {
	return database.ListOptions{Cursor: ctx.Query("cursor"), Limit: 50}
}

func (c *Console) tenantsPage(ctx *fiber.Ctx) error {
	res, err := c.d.Tenants.ListTenants(ctxOf(ctx), listOpts(ctx))
	if err != nil {
		return c.fail(ctx, err)
	}
	return c.render(ctx, http.StatusOK, "tenants.html", page{Title: "Tenants", Data: res})
}

func (c *Console) createTenant(ctx *fiber.Ctx) error {
	t, secret, err := c.d.Tenants.CreateTenant(ctxOf(ctx), tenant.TenantInput{Name: ctx.FormValue("name"), CallbackURL: strings.TrimSpace(ctx.FormValue("callback_url"))})
	if err != nil {
		return c.fail(ctx, err)
	}
	c.forget()
	if secret == "" { // no callback URL, no default endpoint: no secret to show
		return ctx.Redirect(Prefix+"/tenants/"+t.ID, http.StatusSeeOther)
	}
	return c.render(ctx, http.StatusCreated, "secret.html", page{Title: "Tenant created", Tenant: &t, Data: secretData{
		What: "the signing secret of " + t.Name + "'s default endpoint", Secret: secret, Next: Prefix + "/tenants/" + t.ID}})
}

type secretData struct {
	What, Secret, Next string
}

// tenantData is a tenant's page.
type tenantData struct {
	Overview  overviewData
	Apps      []appView
	AppsNext  string // cursors of the next page of apps and of Pages
	PagesNext string
	Pages     []pageView
	Endpoints []tenant.Endpoint
	Types     []string
	Test      *testView
	Link      *linkView
	MetaOff   bool
}

type pageView struct {
	tenant.Page
	Health *meta.PageHealth
}

type appView struct {
	App        tenant.App
	WebhookURL string
	Health     *meta.AppHealth
}

type testView struct {
	EndpointID string
	Result     string
	OK         bool
}

type linkView struct {
	URL     string
	Expires time.Time
}

func (c *Console) tenantData(ctx *fiber.Ctx, t tenant.Tenant) (tenantData, error) {
	var d tenantData
	var err error
	if d.Overview, err = c.overviewOf(ctx, t.ID); err != nil {
		return d, err
	}
	apps, err := c.d.Tenants.ListApps(ctxOf(ctx), t.ID, database.ListOptions{Limit: 50, Cursor: ctx.Query("apps_cursor")})
	if err != nil {
		return d, err
	}
	d.MetaOff = c.d.Meta == nil || c.d.Meta.Off()
	for _, a := range apps.Items {
		v := appView{App: a, WebhookURL: c.d.Tenants.WebhookURL(a.AppID)}
		if !d.MetaOff {
			if h, err := c.d.Meta.AppHealth(ctxOf(ctx), t.ID, a.AppID); err == nil {
				v.Health = &h
			}
		}
		d.Apps = append(d.Apps, v)
	}
	d.AppsNext = apps.NextCursor
	pages, err := c.d.Tenants.ListPages(ctxOf(ctx), t.ID, database.ListOptions{Limit: 50, Cursor: ctx.Query("pages_cursor")})
	if err != nil {
		return d, err
	}
	var health []meta.PageHealth
	if !d.MetaOff && len(pages.Items) > 0 {
		if health, err = c.d.Meta.PagesHealth(ctxOf(ctx), t.ID, pages.Items); err != nil {
			return d, err
		}
	}
	for i, p := range pages.Items {
		v := pageView{Page: p}
		if health != nil {
			v.Health = &health[i]
		}
		d.Pages = append(d.Pages, v)
	}
	d.PagesNext = pages.NextCursor
	// A tenant has at most 20 endpoints (tenant.MaxEndpoints): one page.
	eps, err := c.d.Tenants.ListEndpoints(ctxOf(ctx), t.ID, database.ListOptions{Limit: 200})
	if err != nil {
		return d, err
	}
	d.Endpoints = eps.Items
	d.Types = event.Types
	return d, nil
}

func (c *Console) loadTenant(ctx *fiber.Ctx) (tenant.Tenant, error) {
	return c.d.Tenants.GetTenant(ctxOf(ctx), ctx.Params("tenant"))
}

func (c *Console) tenantPage(ctx *fiber.Ctx) error {
	return c.showTenant(ctx, http.StatusOK, "", nil, nil)
}

// showTenant renders a tenant's page, with a notice, an inline test
// result or a portal link to show.
func (c *Console) showTenant(ctx *fiber.Ctx, status int, notice string, test *testView, link *linkView) error {
	t, err := c.loadTenant(ctx)
	if err != nil {
		return c.fail(ctx, err)
	}
	d, err := c.tenantData(ctx, t)
	if err != nil {
		return c.fail(ctx, err)
	}
	d.Test, d.Link = test, link
	if n := ctx.Query("done"); notice == "" {
		notice = notices[n]
	}
	return c.render(ctx, status, "tenant.html", page{Title: t.Name, Tenant: &t, Notice: notice, Data: d})
}

// notices are the messages a redirect after a change may name.
var notices = map[string]string{
	"app":         "App registered.",
	"app-deleted": "App deleted, with its Pages.",
	"subscribed":  "Subscribed at Meta.",
	"page":        "Page registered.",
	"page-gone":   "Page removed.",
	"endpoint":    "Endpoint created.",
	"enabled":     "Endpoint enabled; its breaker is reset.",
	"disabled":    "Endpoint disabled; its events wait.",
	"ep-deleted":  "Endpoint deleted; its pending deliveries are dropped.",
	"replayed":    "Queued for delivery again.",
	"renamed":     "Tenant renamed.",
	"ep-edited":   "Endpoint changed.",
}

// forget drops the cached overviews: a change must show at once.
func (c *Console) forget() {
	c.mu.Lock()
	clear(c.overview)
	c.mu.Unlock()
}

func (c *Console) back(ctx *fiber.Ctx, done string) error {
	c.forget()
	return ctx.Redirect(Prefix+"/tenants/"+ctx.Params("tenant")+"?done="+done, http.StatusSeeOther)
}

// editTenant renames the tenant (and, for an operator, nothing more: the
// default endpoint is edited with the other endpoints).
func (c *Console) editTenant(ctx *fiber.Ctx) error {
	name := ctx.FormValue("name")
	if _, _, err := c.d.Tenants.UpdateTenant(ctxOf(ctx), ctx.Params("tenant"), tenant.TenantPatch{Name: &name}); err != nil {
		return c.fail(ctx, err)
	}
	return c.back(ctx, "renamed")
}

// editEndpoint changes an endpoint's URL, description, event types and
// ordering.
func (c *Console) editEndpoint(ctx *fiber.Ctx) error {
	url, desc := strings.TrimSpace(ctx.FormValue("url")), ctx.FormValue("description")
	var types []string
	for _, e := range ctx.Context().PostArgs().PeekMulti("events") {
		types = append(types, string(e))
	}
	p := tenant.EndpointPatch{URL: &url, Description: &desc, Events: &types}
	if o := tenant.Ordering(ctx.FormValue("ordering")); o != "" {
		p.Ordering = &o
	}
	if _, _, err := c.d.Tenants.UpdateEndpoint(ctxOf(ctx), ctx.Params("tenant"), ctx.Params("endpoint"), p); err != nil {
		return c.fail(ctx, err)
	}
	return c.back(ctx, "ep-edited")
}

func (c *Console) deleteTenant(ctx *fiber.Ctx) error {
	if err := c.d.Tenants.DeleteTenant(ctxOf(ctx), ctx.Params("tenant")); err != nil {
		return c.fail(ctx, err)
	}
	c.forget()
	return ctx.Redirect(Prefix+"/tenants", http.StatusSeeOther)
}

// portalLink makes a one-time tenant sign-in link (as POST
// /tenants/{id}/portal-links does) and shows it.
func (c *Console) portalLink(ctx *fiber.Ctx) error {
	id := ctx.Params("tenant")
	if _, err := c.d.Tenants.GetTenant(ctxOf(ctx), id); err != nil {
		return c.fail(ctx, err)
	}
	token, exp, err := c.d.Sessions.CreateLink(ctxOf(ctx), session.RoleTenant, id, "portal:"+id, 15*time.Minute)
	if err != nil {
		return c.fail(ctx, err)
	}
	return c.showTenant(ctx, http.StatusCreated, "Portal link created: it works once, for 15 minutes.", nil,
		&linkView{URL: session.LinkURL(c.d.PublicURL, token), Expires: exp})
}

func (c *Console) createApp(ctx *fiber.Ctx) error {
	_, err := c.d.Tenants.RegisterApp(ctxOf(ctx), ctx.Params("tenant"), tenant.AppInput{
		AppID: strings.TrimSpace(ctx.FormValue("app_id")), AppSecret: ctx.FormValue("app_secret"), VerifyToken: ctx.FormValue("verify_token")})
	if err != nil {
		return c.fail(ctx, err)
	}
	return c.back(ctx, "app")
}

func (c *Console) deleteApp(ctx *fiber.Ctx) error {
	if err := c.d.Tenants.DeleteApp(ctxOf(ctx), ctx.Params("tenant"), ctx.Params("app")); err != nil {
		return c.fail(ctx, err)
	}
	return c.back(ctx, "app-deleted")
}

func (c *Console) subscribeApp(ctx *fiber.Ctx) error {
	if c.d.Meta == nil {
		return c.fail(ctx, meta.ErrOff)
	}
	if _, err := c.d.Meta.SubscribeApp(ctxOf(ctx), ctx.Params("tenant"), ctx.Params("app"), ctx.FormValue("object"), nil); err != nil {
		return c.fail(ctx, err)
	}
	return c.back(ctx, "subscribed")
}

func (c *Console) createPage(ctx *fiber.Ctx) error {
	_, err := c.d.Tenants.RegisterPage(ctxOf(ctx), ctx.Params("tenant"), tenant.PageInput{
		PageID: strings.TrimSpace(ctx.FormValue("page_id")), AppID: strings.TrimSpace(ctx.FormValue("app_id")),
		Object: tenant.Object(ctx.FormValue("object")), AccessToken: strings.TrimSpace(ctx.FormValue("page_access_token"))})
	if err != nil {
		return c.fail(ctx, err)
	}
	return c.back(ctx, "page")
}

func (c *Console) subscribePage(ctx *fiber.Ctx) error {
	if c.d.Meta == nil {
		return c.fail(ctx, meta.ErrOff)
	}
	if _, err := c.d.Meta.SubscribePage(ctxOf(ctx), ctx.Params("tenant"), ctx.Params("page"), ctx.FormValue("app_id"), nil); err != nil {
		return c.fail(ctx, err)
	}
	return c.back(ctx, "subscribed")
}

func (c *Console) deletePage(ctx *fiber.Ctx) error {
	if err := c.d.Tenants.DeletePage(ctxOf(ctx), ctx.Params("tenant"), ctx.Params("page"), ctx.FormValue("app_id")); err != nil {
		return c.fail(ctx, err)
	}
	return c.back(ctx, "page-gone")
}

func (c *Console) createEndpoint(ctx *fiber.Ctx) error {
	events := ctx.Context().PostArgs().PeekMulti("events")
	var types []string
	for _, e := range events {
		types = append(types, string(e))
	}
	in := tenant.EndpointInput{URL: strings.TrimSpace(ctx.FormValue("url")), Description: ctx.FormValue("description"),
		Format: tenant.Format(ctx.FormValue("format")), Signature: tenant.Signature(ctx.FormValue("signature")),
		Ordering: tenant.Ordering(ctx.FormValue("ordering"))}
	if len(types) > 0 {
		in.Events = &types
	}
	e, secret, err := c.d.Tenants.CreateEndpoint(ctxOf(ctx), ctx.Params("tenant"), in)
	if err != nil {
		return c.fail(ctx, err)
	}
	t, err := c.loadTenant(ctx)
	if err != nil {
		return c.fail(ctx, err)
	}
	what, shown := "the signing secret of endpoint "+event.FormatEndpointID(e.ID), secret
	switch {
	case e.Format == tenant.FormatMeta:
		return c.back(ctx, "endpoint") // signed with the app's secret: nothing to show
	case e.Signature == tenant.SignatureEd25519:
		what, shown = "the public key of endpoint "+event.FormatEndpointID(e.ID)+" (it verifies the v1a signatures)", e.PublicKey
	}
	return c.render(ctx, http.StatusCreated, "secret.html", page{Title: "Endpoint created", Tenant: &t,
		Data: secretData{What: what, Secret: shown, Next: Prefix + "/tenants/" + t.ID}})
}

func (c *Console) enableEndpoint(on bool) fiber.Handler {
	return func(ctx *fiber.Ctx) error {
		if _, _, err := c.d.Tenants.UpdateEndpoint(ctxOf(ctx), ctx.Params("tenant"), ctx.Params("endpoint"), tenant.EndpointPatch{Enabled: &on}); err != nil {
			return c.fail(ctx, err)
		}
		if on {
			return c.back(ctx, "enabled")
		}
		return c.back(ctx, "disabled")
	}
}

func (c *Console) rotateEndpoint(ctx *fiber.Ctx) error {
	e, secret, err := c.d.Tenants.RotateEndpointSecret(ctxOf(ctx), ctx.Params("tenant"), ctx.Params("endpoint"))
	if err != nil {
		return c.fail(ctx, err)
	}
	t, err := c.loadTenant(ctx)
	if err != nil {
		return c.fail(ctx, err)
	}
	what, shown := "the new signing secret of endpoint "+event.FormatEndpointID(e.ID)+" (the old one signs too for 24 hours)", secret
	if e.Signature == tenant.SignatureEd25519 {
		what, shown = "the new public key of endpoint "+event.FormatEndpointID(e.ID)+" (the old key signs too for 24 hours)", e.PublicKey
	}
	return c.render(ctx, http.StatusOK, "secret.html", page{Title: "Secret rotated", Tenant: &t,
		Data: secretData{What: what, Secret: shown, Next: Prefix + "/tenants/" + t.ID}})
}

func (c *Console) testEndpoint(ctx *fiber.Ctx) error {
	id := ctx.Params("endpoint")
	r, err := c.d.Tester.Test(ctxOf(ctx), ctx.Params("tenant"), id)
	if err != nil {
		return c.fail(ctx, err)
	}
	v := &testView{EndpointID: id, OK: r.StatusCode/100 == 2}
	switch {
	case r.StatusCode == 0:
		v.Result = fmt.Sprintf("no answer after %s: %s", r.Latency.Round(time.Millisecond), r.Error)
	default:
		v.Result = fmt.Sprintf("HTTP %d in %s", r.StatusCode, r.Latency.Round(time.Millisecond))
		if r.Error != "" {
			v.Result += ": " + r.Error
		}
		if r.Response != "" {
			v.Result += " — " + r.Response
		}
	}
	return c.showTenant(ctx, http.StatusOK, "", v, nil)
}

func (c *Console) deleteEndpoint(ctx *fiber.Ctx) error {
	if err := c.d.Tenants.DeleteEndpoint(ctxOf(ctx), ctx.Params("tenant"), ctx.Params("endpoint")); err != nil {
		return c.fail(ctx, err)
	}
	return c.back(ctx, "ep-deleted")
}

// eventsData is the event search.
type eventsData struct {
	// CanReplayAll: the search is one the bulk replay can repeat exactly.
	CanReplayAll bool
	Query        map[string]string
	Events       []event.Event
	Next         string
	Types        []string
	Endpoints    []tenant.Endpoint
	Statuses     []string
}

var searchFields = []string{"mid", "sender", "page_id", "type", "status", "endpoint_id", "since", "until", "tz"}

// zoneOf is the viewer's time zone as the console's script gives it in
// the form's tz field (minutes east of UTC); UTC without it.
func zoneOf(tz string) *time.Location {
	m, err := strconv.Atoi(tz)
	if err != nil || m < -14*60 || m > 14*60 {
		return time.UTC
	}
	return time.FixedZone("", m*60)
}

// filterOf reads the search form; a malformed time or endpoint is the
// service's 422, said on the page.
func filterOf(ctx *fiber.Ctx) (event.Filter, map[string]string, error) {
	q := map[string]string{}
	for _, k := range searchFields {
		q[k] = strings.TrimSpace(ctx.Query(k))
	}
	f := event.Filter{Mid: q["mid"], Sender: q["sender"], PageID: q["page_id"], Type: q["type"], Status: event.Status(q["status"])}
	if q["endpoint_id"] != "" {
		id, err := event.ParseEndpointID(q["endpoint_id"])
		if err != nil {
			return f, q, &event.FieldError{Field: "endpoint_id", Message: "is not an endpoint id (ep_…)"}
		}
		f.EndpointID = id
	}
	for _, k := range []string{"since", "until"} {
		if q[k] == "" {
			continue
		}
		t, err := parseTime(q[k], zoneOf(q["tz"]))
		if err != nil {
			return f, q, &event.FieldError{Field: k, Message: "must be a time such as 2026-01-02T15:04 or RFC 3339"}
		}
		if k == "since" {
			f.Since = t
		} else {
			f.Until = t
		}
	}
	return f, q, nil
}

// parseTime reads a time of the search form: RFC 3339, or a date and
// time without a zone (what a datetime-local input sends), read in loc.
func parseTime(s string, loc *time.Location) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("not a time")
}

func (c *Console) eventsPage(ctx *fiber.Ctx) error {
	t, err := c.loadTenant(ctx)
	if err != nil {
		return c.fail(ctx, err)
	}
	d := eventsData{Types: event.Types, Statuses: []string{"pending", "failed", "delivered", "dead"}}
	if eps, err := c.d.Tenants.ListEndpoints(ctxOf(ctx), t.ID, database.ListOptions{Limit: 200}); err == nil {
		d.Endpoints = eps.Items
	}
	f, q, err := filterOf(ctx)
	d.Query = q
	var msg string
	if err == nil {
		var res database.Results[event.Event]
		res, err = c.d.Events.List(ctxOf(ctx), t.ID, f, listOpts(ctx))
		d.Events, d.Next = res.Items, res.NextCursor
	}
	status := http.StatusOK
	if err != nil {
		if !isInput(err) {
			return c.fail(ctx, err)
		}
		msg, status = inputError(err), http.StatusUnprocessableEntity
	}
	notice := notices[ctx.Query("done")]
	if ctx.Query("done") == "replayed-many" {
		if n, err := strconv.Atoi(ctx.Query("n")); err == nil {
			notice = fmt.Sprintf("%d event(s) queued for delivery again.", n)
		}
	}
	// Bulk replay takes a status and a time window (and an endpoint):
	// offered only when the search is no narrower, so it replays exactly
	// what the search shows.
	d.CanReplayAll = q["status"] != "" && q["mid"] == "" && q["sender"] == "" && q["page_id"] == "" && q["type"] == ""
	return c.render(ctx, status, "events.html", page{Title: "Events of " + t.Name, Tenant: &t, Error: msg, Notice: notice, Data: d})
}

func isInput(err error) bool {
	var efe *event.FieldError
	var tfe *tenant.FieldError
	return errors.As(err, &efe) || errors.As(err, &tfe)
}

// eventData is one event's page.
type eventData struct {
	Event     event.Event
	Original  string
	Attempts  []event.Attempt
	Endpoints map[string]tenant.Endpoint
}

func (c *Console) eventPage(ctx *fiber.Ctx) error {
	t, err := c.loadTenant(ctx)
	if err != nil {
		return c.fail(ctx, err)
	}
	e, attempts, err := c.d.Events.Get(ctxOf(ctx), t.ID, ctx.Params("event"))
	if err != nil {
		if isInput(err) {
			return c.notFound(ctx)
		}
		return c.fail(ctx, err)
	}
	d := eventData{Event: e, Attempts: attempts, Endpoints: map[string]tenant.Endpoint{}}
	var body struct {
		Event json.RawMessage `json:"event"`
	}
	if json.Unmarshal(e.Body, &body) == nil && len(body.Event) > 0 {
		var pretty bytes.Buffer
		if json.Indent(&pretty, body.Event, "", "  ") == nil {
			d.Original = pretty.String()
		}
	}
	if d.Original == "" {
		d.Original = string(e.Body)
	}
	if eps, err := c.d.Tenants.ListEndpoints(ctxOf(ctx), t.ID, database.ListOptions{Limit: 200}); err == nil {
		for _, ep := range eps.Items {
			d.Endpoints[event.FormatEndpointID(ep.ID)] = ep
		}
	}
	return c.render(ctx, http.StatusOK, "event.html", page{Title: "Event " + event.FormatID(e.ID), Tenant: &t,
		Notice: notices[ctx.Query("done")], Data: d})
}

func (c *Console) replayEvent(ctx *fiber.Ctx) error {
	if _, err := c.d.Events.Replay(ctxOf(ctx), ctx.Params("tenant"), ctx.Params("event"), ctx.FormValue("endpoint_id")); err != nil {
		return c.fail(ctx, err)
	}
	c.forget()
	return ctx.Redirect(Prefix+"/tenants/"+ctx.Params("tenant")+"/events/"+ctx.Params("event")+"?done=replayed", http.StatusSeeOther)
}

// replayMany replays every event of the current search's status and
// time window (the bulk replay's filters), for one endpoint if chosen.
func (c *Console) replayMany(ctx *fiber.Ctx) error {
	f := event.ReplayFilter{Status: event.Status(ctx.FormValue("status"))}
	if v := strings.TrimSpace(ctx.FormValue("endpoint_id")); v != "" {
		id, err := event.ParseEndpointID(v)
		if err != nil {
			return c.fail(ctx, &event.FieldError{Field: "endpoint_id", Message: "is not an endpoint id (ep_…)"})
		}
		f.EndpointID = id
	}
	for k, dst := range map[string]*time.Time{"since": &f.Since, "until": &f.Until} {
		if v := strings.TrimSpace(ctx.FormValue(k)); v != "" {
			t, err := parseTime(v, zoneOf(ctx.FormValue("tz")))
			if err != nil {
				return c.fail(ctx, &event.FieldError{Field: k, Message: "must be a time such as 2026-01-02T15:04 (UTC)"})
			}
			*dst = t
		}
	}
	n, err := c.d.Events.ReplayMany(ctxOf(ctx), ctx.Params("tenant"), f)
	if err != nil {
		return c.fail(ctx, err)
	}
	c.forget()
	return ctx.Redirect(Prefix+"/tenants/"+ctx.Params("tenant")+"/events?status="+string(f.Status)+"&done=replayed-many&n="+strconv.FormatInt(n, 10), http.StatusSeeOther)
}

func (c *Console) quarantinePage(ctx *fiber.Ctx) error {
	t, err := c.loadTenant(ctx)
	if err != nil {
		return c.fail(ctx, err)
	}
	res, err := c.d.Events.ListQuarantine(ctxOf(ctx), t.ID, listOpts(ctx))
	if err != nil {
		return c.fail(ctx, err)
	}
	return c.render(ctx, http.StatusOK, "quarantine.html", page{Title: "Quarantine of " + t.Name, Tenant: &t, Data: res})
}
