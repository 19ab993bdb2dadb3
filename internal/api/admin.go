package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humafiber"

	"github.com/postgate/postgate/internal/delivery"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/meta"
	"github.com/postgate/postgate/internal/session"
	"github.com/postgate/postgate/internal/tenant"
)

// Admin holds the services behind the admin API.
type Admin struct {
	// Tenants is the tenant service: tenants, apps, Pages, tokens.
	Tenants *tenant.Service
	// Meta does the Meta set-up steps and serves their health; nil
	// answers its routes as GRAPH_API_URL=off does.
	Meta *meta.Service
	// Events is the event service: lists, details, replays, quarantine.
	Events *event.Service
	// Tokens verifies the bearer tokens of admin-API requests.
	Tokens *tenant.Tokens
	// Tester sends test postbacks to endpoints.
	Tester *delivery.Tester
	// Sessions makes the console's one-time sign-in links (portal
	// links); nil answers that route 409.
	Sessions *session.Store
	// PublicURL, when set, is the gateway's public base URL; the OpenAPI
	// document names PublicURL + "/admin/v1" as its server.
	PublicURL string
}

// AdminPrefix is where the admin API is mounted.
const AdminPrefix = "/admin/v1"

// adminAPI holds what the admin handlers share.
type adminAPI struct {
	svc      *tenant.Service
	meta     *meta.Service
	sessions *session.Store
	baseURL  string
	events   *event.Service
	tester   *delivery.Tester
	log      *slog.Logger
}

// registerAdmin mounts the admin API under /admin/v1: huma on the Fiber
// app, OpenAPI 3.1 at /admin/v1/openapi.json (no auth), bearer auth on
// every operation, problem+json for every error.
func (s *Server) registerAdmin(a *Admin) {
	if a.Tenants == nil || a.Events == nil || a.Tokens == nil || a.Tester == nil {
		// A wiring mistake, not a request's: every event route would
		// otherwise answer 500.
		panic("api: Admin needs Tenants, Events, Tokens and Tester")
	}
	api := humafiber.NewWithGroup(s.app, s.app.Group(AdminPrefix), adminConfig(s.cfg.Version, a.PublicURL))
	auth := &authenticator{api: api, tokens: a.Tokens, log: s.log}
	api.UseMiddleware(auth.middleware)
	h := &adminAPI{svc: a.Tenants, meta: a.Meta, sessions: a.Sessions, baseURL: a.PublicURL, events: a.Events, tester: a.Tester, log: s.log}
	h.routes(api)
	s.registerOpenAPI(api)
	s.registerDocs()
	s.app.Use(AdminPrefix, adminNoRoute)
}

// routes lists every admin operation (paths relative to /admin/v1).
//
//	POST   /tenants                                      admin   create a tenant (signing_secret returned once)
//	GET    /tenants                                      admin   list tenants
//	GET    /tenants/{tenant_id}                          both    read
//	PATCH  /tenants/{tenant_id}                          both    change, re-enable the endpoint
//	DELETE /tenants/{tenant_id}                          both    delete with everything it owns
//	POST   /tenants/{tenant_id}/tokens                   admin   mint a tenant token
//	POST   /tenants/{tenant_id}/signing-secret/rotate    both    new signing secret (returned once)
//	POST   /tenants/{tenant_id}/portal-links             admin   a one-time console sign-in link for the tenant
//	POST   /tenants/{tenant_id}/endpoints                both    create an endpoint (secret returned once)
//	GET    /tenants/{tenant_id}/endpoints                both    list endpoints
//	GET    /tenants/{tenant_id}/endpoints/{endpoint_id}  both    read
//	PATCH  /tenants/{tenant_id}/endpoints/{endpoint_id}  both    change, enable or disable
//	DELETE /tenants/{tenant_id}/endpoints/{endpoint_id}  both    delete (its pending deliveries are dropped)
//	POST   .../endpoints/{endpoint_id}/signing-secret/rotate both new secret or key pair (returned once)
//	POST   .../endpoints/{endpoint_id}/test              both    send a signed test postback now
//	POST   /tenants/{tenant_id}/apps                     both    register a Meta app
//	GET    /tenants/{tenant_id}/apps                     both    list apps
//	GET    /tenants/{tenant_id}/apps/{app_id}            both    read
//	PATCH  /tenants/{tenant_id}/apps/{app_id}            both    rotate the app secret, legacy_sha1
//	DELETE /tenants/{tenant_id}/apps/{app_id}            both    delete with its Pages
//	POST   /tenants/{tenant_id}/pages                    both    register a Page for an app
//	GET    /tenants/{tenant_id}/pages                    both    list Pages
//	PATCH  /tenants/{tenant_id}/pages/{page_id}          both    set or remove the Page access token
//	DELETE /tenants/{tenant_id}/pages/{page_id}          both    unregister (?app_id= when on several apps)
//	POST   /tenants/{tenant_id}/apps/{app_id}/subscribe  both    subscribe the app to Meta's webhooks (Graph API)
//	GET    /tenants/{tenant_id}/apps/{app_id}/health     both    the app's subscription health
//	POST   /tenants/{tenant_id}/pages/{page_id}/subscribe both   subscribe the app to the Page (Graph API)
//	GET    /tenants/{tenant_id}/pages/{page_id}/health   both    the Page's subscription health and silence
//	GET    /tenants/{tenant_id}/events                   both    list events (filters, cursor)
//	GET    /tenants/{tenant_id}/events/{event_id}        both    one event with its attempts
//	POST   /tenants/{tenant_id}/events/{event_id}/replay both    deliver again, same webhook-id
//	POST   /tenants/{tenant_id}/replay                   both    bulk replay by status and time
//	GET    /tenants/{tenant_id}/quarantine               both    signed bodies that did not parse (summaries)
//	GET    /tenants/{tenant_id}/quarantine/{quarantine_id} both  one quarantined body, bytes included
//	GET    /openapi.json                                 anyone  this API's OpenAPI 3.1 document
//	GET    /docs                                         anyone  the API reference page (docs.go)
func (h *adminAPI) routes(api huma.API) {
	huma.Register(api, op("createTenant", http.MethodPost, "/tenants", accessAdmin, "Create a tenant", http.StatusCreated), h.createTenant)
	huma.Register(api, op("listTenants", http.MethodGet, "/tenants", accessAdmin, "List tenants", 0), h.listTenants)
	huma.Register(api, op("getTenant", http.MethodGet, "/tenants/{tenant_id}", accessTenant, "Get a tenant", 0), h.getTenant)
	huma.Register(api, op("updateTenant", http.MethodPatch, "/tenants/{tenant_id}", accessTenant, "Change a tenant", 0), h.updateTenant)
	huma.Register(api, op("deleteTenant", http.MethodDelete, "/tenants/{tenant_id}", accessTenant, "Delete a tenant", http.StatusNoContent), h.deleteTenant)
	huma.Register(api, op("issueTenantToken", http.MethodPost, "/tenants/{tenant_id}/tokens", accessAdmin, "Mint a tenant token", http.StatusCreated), h.issueToken)
	huma.Register(api, describe(op("createPortalLink", http.MethodPost, "/tenants/{tenant_id}/portal-links", accessAdmin, "Create a tenant portal link", http.StatusCreated), portalLinkDoc), h.createPortalLink)
	huma.Register(api, op("rotateSigningSecret", http.MethodPost, "/tenants/{tenant_id}/signing-secret/rotate", accessTenant, "Rotate the signing secret", 0), h.rotateSigningSecret)

	huma.Register(api, op("createEndpoint", http.MethodPost, "/tenants/{tenant_id}/endpoints", accessTenant, "Create an endpoint", http.StatusCreated), h.createEndpoint)
	huma.Register(api, op("listEndpoints", http.MethodGet, "/tenants/{tenant_id}/endpoints", accessTenant, "List endpoints", 0), h.listEndpoints)
	huma.Register(api, op("getEndpoint", http.MethodGet, "/tenants/{tenant_id}/endpoints/{endpoint_id}", accessTenant, "Get an endpoint", 0), h.getEndpoint)
	huma.Register(api, op("updateEndpoint", http.MethodPatch, "/tenants/{tenant_id}/endpoints/{endpoint_id}", accessTenant, "Change, enable or disable an endpoint", 0), h.updateEndpoint)
	huma.Register(api, op("deleteEndpoint", http.MethodDelete, "/tenants/{tenant_id}/endpoints/{endpoint_id}", accessTenant, "Delete an endpoint", http.StatusNoContent), h.deleteEndpoint)
	huma.Register(api, op("rotateEndpointSecret", http.MethodPost, "/tenants/{tenant_id}/endpoints/{endpoint_id}/signing-secret/rotate", accessTenant, "Rotate an endpoint's secret or key pair", 0), h.rotateEndpointSecret)
	huma.Register(api, describe(op("testEndpoint", http.MethodPost, "/tenants/{tenant_id}/endpoints/{endpoint_id}/test", accessTenant, "Send a test postback", 0), testEndpointDoc), h.testEndpoint)

	huma.Register(api, describe(op("registerApp", http.MethodPost, "/tenants/{tenant_id}/apps", accessTenant, "Register a Meta app", http.StatusCreated), registerAppDoc), h.registerApp)
	huma.Register(api, op("listApps", http.MethodGet, "/tenants/{tenant_id}/apps", accessTenant, "List apps", 0), h.listApps)
	huma.Register(api, op("getApp", http.MethodGet, "/tenants/{tenant_id}/apps/{app_id}", accessTenant, "Get an app", 0), h.getApp)
	huma.Register(api, op("updateApp", http.MethodPatch, "/tenants/{tenant_id}/apps/{app_id}", accessTenant, "Change or rotate an app's secret", 0), h.updateApp)
	huma.Register(api, op("deleteApp", http.MethodDelete, "/tenants/{tenant_id}/apps/{app_id}", accessTenant, "Delete an app and its Pages", http.StatusNoContent), h.deleteApp)

	huma.Register(api, describe(op("registerPage", http.MethodPost, "/tenants/{tenant_id}/pages", accessTenant, "Register a Page", http.StatusCreated), registerPageDoc), h.registerPage)
	huma.Register(api, op("listPages", http.MethodGet, "/tenants/{tenant_id}/pages", accessTenant, "List Pages", 0), h.listPages)
	huma.Register(api, op("updatePage", http.MethodPatch, "/tenants/{tenant_id}/pages/{page_id}", accessTenant, "Set or remove a Page's access token", 0), h.updatePage)
	huma.Register(api, op("deletePage", http.MethodDelete, "/tenants/{tenant_id}/pages/{page_id}", accessTenant, "Unregister a Page", http.StatusNoContent), h.deletePage)

	huma.Register(api, describe(metaOp(op("subscribeApp", http.MethodPost, "/tenants/{tenant_id}/apps/{app_id}/subscribe", accessTenant, "Subscribe an app to Meta's webhooks", 0)), subscribeAppDoc), h.subscribeApp)
	huma.Register(api, describe(metaOp(op("getAppHealth", http.MethodGet, "/tenants/{tenant_id}/apps/{app_id}/health", accessTenant, "Get an app's subscription health", 0)), appHealthDoc), h.appHealth)
	huma.Register(api, describe(metaOp(op("subscribePage", http.MethodPost, "/tenants/{tenant_id}/pages/{page_id}/subscribe", accessTenant, "Subscribe an app to a Page", 0)), subscribePageDoc), h.subscribePage)
	huma.Register(api, describe(metaOp(op("getPageHealth", http.MethodGet, "/tenants/{tenant_id}/pages/{page_id}/health", accessTenant, "Get a Page's health", 0)), pageHealthDoc), h.pageHealth)

	huma.Register(api, op("listEvents", http.MethodGet, "/tenants/{tenant_id}/events", accessTenant, "List events", 0), h.listEvents)
	huma.Register(api, op("getEvent", http.MethodGet, "/tenants/{tenant_id}/events/{event_id}", accessTenant, "Get an event with its attempts", 0), h.getEvent)
	huma.Register(api, op("replayEvent", http.MethodPost, "/tenants/{tenant_id}/events/{event_id}/replay", accessTenant, "Deliver an event again", http.StatusAccepted), h.replayEvent)
	huma.Register(api, op("replayEvents", http.MethodPost, "/tenants/{tenant_id}/replay", accessTenant, "Deliver events again in bulk", http.StatusAccepted), h.replayEvents)
	huma.Register(api, op("listQuarantine", http.MethodGet, "/tenants/{tenant_id}/quarantine", accessTenant, "List quarantined bodies", 0), h.listQuarantine)
	huma.Register(api, op("getQuarantined", http.MethodGet, "/tenants/{tenant_id}/quarantine/{quarantine_id}", accessTenant, "Get a quarantined body", 0), h.getQuarantined)
}

// metaOp adds the answers of the operations that call Meta: 409 when
// GRAPH_API_URL is off, 502 when Meta refuses or cannot be reached.
func metaOp(o huma.Operation) huma.Operation {
	for _, c := range []int{http.StatusConflict, http.StatusBadGateway} {
		if _, ok := o.Responses[strconv.Itoa(c)]; !ok {
			o.Errors = append(o.Errors, c)
		}
	}
	return o
}

func op(id, method, path string, acc access, summary string, status int) huma.Operation {
	errs := []int{http.StatusUnauthorized, http.StatusNotFound, http.StatusUnprocessableEntity}
	if acc == accessAdmin {
		errs = append(errs, http.StatusForbidden)
	}
	if method == http.MethodPost {
		errs = append(errs, http.StatusConflict)
	}
	tag := "tenants"
	switch {
	case strings.Contains(path, "/endpoints"):
		tag = "endpoints"
	case strings.Contains(path, "/apps"):
		tag = "apps"
	case strings.Contains(path, "/pages"):
		tag = "pages"
	case strings.Contains(path, "/events"), strings.Contains(path, "/replay"), strings.Contains(path, "/quarantine"):
		tag = "events"
	}
	desc := "Admin and tenant tokens; a tenant token reaches only its own tenant (another tenant answers 404)."
	if acc == accessAdmin {
		desc = "Admin tokens only; a tenant token answers 403."
	}
	return huma.Operation{
		OperationID:   id,
		Method:        method,
		Path:          path,
		Summary:       summary,
		Description:   desc,
		Tags:          []string{tag},
		DefaultStatus: status,
		Errors:        errs,
		Metadata:      map[string]any{metaAccess: acc},
	}
}

// describe adds what an operation's answers mean to its description.
func describe(o huma.Operation, more string) huma.Operation {
	o.Description += "\n\n" + more
	return o
}

// testEndpointDoc says what a test send does.
const testEndpointDoc = "Builds a messaging_postbacks event with `\"test\": true` (sender `0`, payload `POSTGATE_TEST`), " +
	"signs it as the endpoint's deliveries are signed (its format and signature; a meta endpoint with the secret of " +
	"the tenant's app), and POSTs it now, outside the queue, with the same rules (no private addresses unless " +
	"CALLBACK_ALLOW_PRIVATE, no redirects, CALLBACK_TIMEOUT). It is not stored, and does not count toward the " +
	"endpoint's breaker or rate. The answer is what the endpoint said, whatever it was: a failure is a 200 with " +
	"its class and error. 409 for a meta endpoint of a tenant without an app."

// What registering an app or a Page answers when the app is not the
// caller's to use: never anything about another tenant.
const (
	registerAppDoc = "An app belongs to one tenant: an `app_id` that is already registered answers 409 on " +
		"`body.app_id`, with the same answer whether this tenant or another one holds it; the answer never " +
		"says which tenant, nor anything else of it. To move an app, delete it from the tenant that holds it first."
	registerPageDoc = "The app must be one of this tenant's: an `app_id` that is not (registered by another tenant, " +
		"or by none) answers the same 422 on `body.app_id`, whatever Pages another tenant has on it. " +
		"409 on `body.page_id` when this tenant has already registered the Page for that app."
)

func adminConfig(version, publicURL string) huma.Config {
	cfg := huma.DefaultConfig("Postgate admin API", version)
	// No $schema field in bodies and no Link: describedBy header.
	cfg.CreateHooks = nil
	cfg.DocsPath = ""
	cfg.SchemasPath = ""
	cfg.OpenAPIPath = "" // served by registerOpenAPI
	cfg.Transformers = []huma.Transformer{scrubErrorValues}
	cfg.Formats = map[string]huma.Format{}
	for ct, f := range huma.DefaultFormats {
		if ct == "application/json" || ct == "json" {
			f.Unmarshal = unmarshalJSON
		}
		cfg.Formats[ct] = f
	}
	cfg.Info.Description = adminDescription
	cfg.Servers = []*huma.Server{{URL: strings.TrimRight(publicURL, "/") + AdminPrefix}}
	cfg.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer", BearerFormat: "JWT",
			Description: "HS256 JWT signed with ADMIN_JWT_SECRET: iss ADMIN_JWT_ISSUER, aud ADMIN_JWT_AUDIENCE, exp required; claims role (admin|tenant) and tenant_id. `gateway token` prints one."},
	}
	cfg.Security = []map[string][]string{{"bearer": {}}}
	cfg.Tags = []*huma.Tag{
		{Name: "tenants", Description: "Tenants, tokens, and the first version's fields: callback_url and the rest read and write the tenant's default endpoint."},
		{Name: "endpoints", Description: "Where a tenant's events go: URL, filters, format, signature, limits, state; test sends."},
		{Name: "apps", Description: "Meta apps: secret (write-only), verify token, webhook URL."},
		{Name: "pages", Description: "Pages and Instagram accounts, each registered for one of the tenant's apps."},
		{Name: "events", Description: "Accepted events and their deliveries; replay; quarantine."},
	}
	return cfg
}

const adminDescription = `Manage tenants, their Meta apps and Pages, and look at and replay their deliveries.

**Authentication**: ` + "`Authorization: Bearer <JWT>`" + `. An admin token reaches everything; a tenant token
reaches only its own tenant, and another tenant's resources answer 404. No or bad token: 401 with
` + "`WWW-Authenticate: Bearer`" + `. Admin-only operations answer 403 to a tenant token.

**Errors** are RFC 9457 ` + "`application/problem+json`" + `. Validation errors (422) list each offending field
in ` + "`errors[].location`" + ` (such as ` + "`body.page_id`" + `) without echoing its value. Unknown body fields are
rejected. A 5xx says only "internal error" with an error id, which is also in the gateway's log.

**Lists** answer ` + "`{\"items\": [...], \"next_cursor\": \"...\"}`" + `; pass ` + "`next_cursor`" + ` back as ` + "`cursor`" + ` for
the next page (` + "`limit`" + ` 1-200, default 50). ` + "`next_cursor`" + ` is absent on the last page. Cursors are opaque
and keyset-based: pages stay correct while rows are added. Tenants are listed in creation order, apps by
app_id, Pages by (page_id, app_id), events in the order they arrived and quarantine by (received_at, id),
oldest first.

**Secrets**: the signing secret appears only in the answers of create and rotate; app secrets are
write-only. Rotating either keeps the previous one valid for 24 hours.

**Events**: ids are ` + "`evt_`" + ` and 32 hex digits, the same as the ` + "`webhook-id`" + ` of the deliveries.
A replay requeues the event now with a fresh retry schedule and the same id, bypassing dedup.
An event's detail lists its delivery attempts, oldest first (the latest 200), numbered over the event's
whole life. The quarantine list shows each body's size and its first 4 KiB (` + "`truncated`" + ` says when that is
not all of it); its detail route has the whole body.`

// unmarshalJSON decodes a request body as encoding/json does, except for
// bytes that are not UTF-8 inside a string: encoding/json would turn each
// into U+FFFD, and the gateway would store something the caller did not
// send. They become NUL (\u0000) instead, which the service refuses in
// every text field with a 422 naming it, as it refuses a NUL sent as such
// (Guarantee 5). Anywhere else such a byte is a syntax error either way.
func unmarshalJSON(data []byte, v any) error {
	return json.Unmarshal(nulForInvalidUTF8(data), v)
}

func nulForInvalidUTF8(data []byte) []byte {
	if utf8.Valid(data) {
		return data
	}
	out := make([]byte, 0, len(data)+32)
	inString, escaped := false, false
	for i := 0; i < len(data); {
		c := data[i]
		if c < utf8.RuneSelf {
			switch {
			case escaped:
				escaped = false
			case inString && c == '\\':
				escaped = true
			case c == '"':
				inString = !inString
			}
			out = append(out, c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n == 1 && inString && !escaped {
			out = append(out, `\u0000`...)
		} else {
			out = append(out, data[i:i+n]...)
		}
		escaped = false
		i += n
	}
	return out
}
