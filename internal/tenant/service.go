package tenant

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/secrets"
)

// Config is the Service's own configuration.
type Config struct {
	// PublicURL is how Meta reaches the gateway; an app's webhook URL is
	// PublicURL + "/webhook/" + app_id. Default http://localhost:8080.
	PublicURL string
	// AllowPrivateCallbacks accepts callback URLs on loopback, private,
	// link-local and metadata addresses, and plain http
	// (CALLBACK_ALLOW_PRIVATE).
	AllowPrivateCallbacks bool
	// RotationGrace is how long a rotated-out app secret is still accepted
	// and a rotated-out signing secret still signs. Default 24h.
	RotationGrace time.Duration
	// TokenTTL is the lifetime of a minted tenant token when the request
	// names none. Default 24h.
	TokenTTL time.Duration
}

func (c *Config) defaults() error {
	if c.PublicURL == "" {
		c.PublicURL = "http://localhost:8080"
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if u, err := url.Parse(c.PublicURL); err != nil || !u.IsAbs() || u.Host == "" {
		return errors.New("tenant service: PublicURL must be an absolute URL")
	}
	if c.RotationGrace == 0 {
		c.RotationGrace = DefaultRotationGrace
	}
	if c.RotationGrace < 0 {
		return errors.New("tenant service: RotationGrace must be positive")
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = 24 * time.Hour
	}
	return nil
}

// Service holds the business rules of tenants, apps, Pages and their
// events: validation, secret generation, sealing and rotation, and the
// callback URL check. It is what the admin API calls; authorization (who
// may reach which tenant) is the API's.
type Service struct {
	cfg      Config
	store    *Store
	keys     *secrets.Keyring
	tokens   *Tokens
	resolver Resolver
	now      func() time.Time
	prover   Prover
}

// Prover proves that whoever registers an app holds it, by asking Meta
// (package meta implements it). ProveApp returns the app's name at Meta;
// an error wrapping ErrInvalid (a *FieldError on app_id or app_secret,
// carrying Meta's message) when Meta refuses the id or the secret, or one
// wrapping ErrUpstream when Meta could not be asked.
type Prover interface {
	ProveApp(ctx context.Context, appID, appSecret string) (name string, err error)
}

// SetProver makes app registration and secret rotation prove ownership
// with p. Without one (GRAPH_API_URL=off) ownership is not checked.
func (s *Service) SetProver(p Prover) { s.prover = p }

// prove asks the prover, if any, about appID and secret.
func (s *Service) prove(ctx context.Context, appID, secret string) (string, error) {
	if s.prover == nil {
		return "", nil
	}
	return s.prover.ProveApp(ctx, appID, secret)
}

// NewService validates cfg and returns the service. tokens may be nil (no
// token minting); resolver nil means net.DefaultResolver; now nil means
// time.Now.
func NewService(cfg Config, store *Store, keys *secrets.Keyring, tokens *Tokens, resolver Resolver, now func() time.Time) (*Service, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if store == nil || keys == nil {
		return nil, errors.New("tenant service: store and keyring are required")
	}
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	if now == nil {
		now = time.Now
	}
	return &Service{cfg: cfg, store: store, keys: keys, tokens: tokens, resolver: resolver, now: now}, nil
}

// WebhookURL is the URL to paste into Meta's dashboard for appID.
func (s *Service) WebhookURL(appID string) string {
	return s.cfg.PublicURL + "/webhook/" + appID
}

// Limits of the inputs (the API's schema states the same).
const (
	MaxNameLength     = 200
	MaxLimitValue     = 1_000_000
	MinVerifyTokenLen = 16
	MaxSecretLength   = 256
)

var (
	reMetaID      = regexp.MustCompile(`^[0-9]{1,20}$`)
	reVerifyToken = regexp.MustCompile(`^[\x21-\x7e]+$`)
)

// checkText refuses a text input Postgres cannot store: a NUL byte or
// invalid UTF-8 (Postgres would fail the statement: a 500). Every text
// input of the tenant, app and Page operations goes through it before any
// other check, so the answer is a *FieldError naming the field, and its
// message never repeats the value.
func checkText(field, s string) error {
	if !database.Storable(s) {
		return invalid(field, "must be UTF-8 text without NUL bytes")
	}
	return nil
}

// checkMetaID checks one of Meta's numeric ids (an app or a Page).
func checkMetaID(field, s string) error {
	if err := checkText(field, s); err != nil {
		return err
	}
	if !reMetaID.MatchString(s) {
		return invalid(field, "must be 1 to 20 digits")
	}
	return nil
}

// TenantInput creates a tenant. With a CallbackURL its default endpoint is
// created with the rest of the fields (the first version's tenant);
// without one, the tenant has no endpoint yet. Zero Rate, Burst and
// Concurrency mean the gateway's defaults; nil DeliverTestEvents means
// true.
type TenantInput struct {
	Name              string
	CallbackURL       string
	Events            []string
	Rate              int
	Burst             int
	Concurrency       int
	DeliverTestEvents *bool
}

// CreateTenant creates a tenant and, with a callback URL, its default
// endpoint and that endpoint's signing secret. The secret is returned
// here and by RotateSigningSecret, and never again.
func (s *Service) CreateTenant(ctx context.Context, in TenantInput) (Tenant, string, error) {
	now := s.now().UTC()
	t := Tenant{Name: strings.TrimSpace(in.Name), CreatedAt: now, UpdatedAt: now}
	if err := checkTenantFields(t); err != nil {
		return Tenant{}, "", err
	}
	events, err := normalizeEvents(in.Events)
	if err != nil {
		return Tenant{}, "", err
	}
	if err := checkLimits(in.Rate, in.Burst, in.Concurrency); err != nil {
		return Tenant{}, "", err
	}
	var def *Endpoint
	if in.CallbackURL != "" {
		if err := CheckCallbackURL(ctx, in.CallbackURL, s.cfg.AllowPrivateCallbacks, s.resolver); err != nil {
			return Tenant{}, "", err
		}
		def = &Endpoint{
			Default: true, URL: in.CallbackURL, Events: defaultEvents(events),
			Pages: []string{}, Format: FormatStandard, Signature: SignatureHMAC, Ordering: OrderingNone,
			Rate: in.Rate, Burst: in.Burst, Concurrency: in.Concurrency,
			DeliverTestEvents: in.DeliverTestEvents == nil || *in.DeliverTestEvents,
			CreatedAt:         now, UpdatedAt: now,
		}
	} else if len(events) > 0 || in.Rate != 0 || in.Burst != 0 || in.Concurrency != 0 || in.DeliverTestEvents != nil {
		return Tenant{}, "", noDefaultEndpoint()
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Tenant{}, "", fmt.Errorf("tenant id: %w", err)
	}
	t.ID = id.String()
	var secret string
	var sec SealedSecrets
	if def != nil {
		def.TenantID = t.ID
		if def.ID, err = uuid.NewV7(); err != nil {
			return Tenant{}, "", fmt.Errorf("endpoint id: %w", err)
		}
		secret = s.newEndpointSecret(def, &sec)
	}
	t, err = s.store.CreateTenant(ctx, t, def, sec)
	if err != nil {
		return Tenant{}, "", err
	}
	return t, secret, nil
}

// defaultEvents is a default endpoint's events filter from the first
// version's tenant events: postbacks, always delivered, and those.
func defaultEvents(legacy []string) []string {
	out, _ := normalizeFilterEvents(append([]string{event.TypePostbacks}, legacy...))
	return out
}

// noDefaultEndpoint refuses a first-version field on a tenant that has no
// default endpoint to keep it.
func noDefaultEndpoint() error {
	return invalid("callback_url", "is required to set the endpoint fields of a tenant without a default endpoint (or use the endpoints API)")
}

// checkTenantFields checks the tenant's own fields.
func checkTenantFields(t Tenant) error {
	if err := checkText("name", t.Name); err != nil {
		return err
	}
	switch n := utf8.RuneCountInString(t.Name); {
	case n == 0:
		return invalid("name", "is required")
	case n > MaxNameLength:
		return invalid("name", "is longer than %d characters", MaxNameLength)
	}
	return nil
}

// normalizeEvents checks event types and returns them de-duplicated in
// event.Types order.
func normalizeEvents(in []string) ([]string, error) {
	out := []string{}
	for _, e := range in {
		if err := checkText("events", e); err != nil {
			return nil, err
		}
		if !event.IsType(e) {
			return nil, invalid("events", "is not a list of event types (each one of %s)", strings.Join(event.Types, ", "))
		}
	}
	for _, e := range event.Types {
		if slices.Contains(in, e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// GetTenant reads a tenant.
func (s *Service) GetTenant(ctx context.Context, id string) (Tenant, error) {
	return s.store.GetTenant(ctx, id)
}

// PageIDs lists the ids of tenant id's registered Pages (each once, on
// however many of its apps).
func (s *Service) PageIDs(ctx context.Context, id string) ([]string, error) {
	return s.store.PageIDs(ctx, id)
}

// CheckTenant answers ErrNotFound when tenant id does not exist.
func (s *Service) CheckTenant(ctx context.Context, id string) error {
	_, err := s.store.GetTenant(ctx, id)
	return err
}

// ListTenants lists tenants in creation order.
func (s *Service) ListTenants(ctx context.Context, opts database.ListOptions) (database.Results[Tenant], error) {
	return s.store.ListTenants(ctx, opts)
}

// TenantPatch changes a tenant; nil fields stay as they are. Every field
// but Name is its default endpoint's: a CallbackURL on a tenant without
// one creates it. A zero Rate, Burst or Concurrency returns to the
// gateway's default. EndpointEnabled true re-enables deliveries paused by
// a 410 (or by an operator); false pauses them.
type TenantPatch struct {
	Name              *string
	CallbackURL       *string
	Events            *[]string
	Rate              *int
	Burst             *int
	Concurrency       *int
	DeliverTestEvents *bool
	EndpointEnabled   *bool
}

// UpdateTenant applies p to tenant id. secret is the signing secret of a
// default endpoint the patch created (shown once), else empty.
func (s *Service) UpdateTenant(ctx context.Context, id string, p TenantPatch) (t Tenant, secret string, err error) {
	var events []string
	if p.Events != nil {
		if events, err = normalizeEvents(*p.Events); err != nil {
			return Tenant{}, "", err
		}
	}
	// The URL is resolved before the row is locked: DNS can be slow.
	if p.CallbackURL != nil {
		if err := CheckCallbackURL(ctx, *p.CallbackURL, s.cfg.AllowPrivateCallbacks, s.resolver); err != nil {
			return Tenant{}, "", err
		}
	}
	now := s.now().UTC()
	t, err = s.store.UpdateTenant(ctx, id, func(t *Tenant, def *DefaultState) error {
		set(&t.Name, p.Name)
		if p.Name != nil {
			t.Name = strings.TrimSpace(t.Name)
		}
		if err := checkTenantFields(*t); err != nil {
			return err
		}
		t.UpdatedAt = now
		endpointFields := p.CallbackURL != nil || p.Events != nil || p.Rate != nil || p.Burst != nil ||
			p.Concurrency != nil || p.DeliverTestEvents != nil || p.EndpointEnabled != nil
		if !endpointFields {
			return nil
		}
		e := def.Endpoint
		if e == nil {
			if p.CallbackURL == nil {
				return noDefaultEndpoint()
			}
			e = &Endpoint{
				TenantID: t.ID, Default: true, Events: []string{event.TypePostbacks}, Pages: []string{},
				Format: FormatStandard, Signature: SignatureHMAC, Ordering: OrderingNone,
				DeliverTestEvents: true, CreatedAt: now,
			}
			var err error
			if e.ID, err = uuid.NewV7(); err != nil {
				return fmt.Errorf("endpoint id: %w", err)
			}
			secret = s.newEndpointSecret(e, &def.Secrets)
			def.Endpoint = e
		}
		set(&e.URL, p.CallbackURL)
		if p.Events != nil {
			e.Events = defaultEvents(events)
		}
		set(&e.Rate, p.Rate)
		set(&e.Burst, p.Burst)
		set(&e.Concurrency, p.Concurrency)
		set(&e.DeliverTestEvents, p.DeliverTestEvents)
		if p.EndpointEnabled != nil {
			setEnabled(e, *p.EndpointEnabled, now)
		}
		// The callback URL was checked above.
		if err := s.checkEndpoint(ctx, e, false); err != nil {
			return err
		}
		e.UpdatedAt = now
		return nil
	})
	if err != nil {
		return Tenant{}, "", err
	}
	return t, secret, nil
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// DeleteTenant deletes a tenant with its endpoints, apps, Pages, events
// and quarantine; its deliveries stop.
func (s *Service) DeleteTenant(ctx context.Context, id string) error {
	return s.store.DeleteTenant(ctx, id)
}

// RotateSigningSecret rotates the signing secret of tenant id's default
// endpoint (see RotateEndpointSecret) and returns it, once. A tenant
// without a default endpoint has none (ErrConflict).
func (s *Service) RotateSigningSecret(ctx context.Context, id string) (Tenant, string, error) {
	var secret string
	now := s.now().UTC()
	t, err := s.store.UpdateTenant(ctx, id, func(t *Tenant, def *DefaultState) error {
		if def.Endpoint == nil {
			return conflict("callback_url", "the tenant has no default endpoint, so no signing secret; rotate an endpoint's through the endpoints API")
		}
		var err error
		secret, err = s.rotate(def.Endpoint, &def.Secrets, now)
		// A rotation changes the tenant as the first version showed it
		// (previous_signing_secret_expires_at): its updated_at says so.
		t.UpdatedAt = now
		return err
	})
	if err != nil {
		return Tenant{}, "", err
	}
	return t, secret, nil
}

// IssueToken mints a token for tenant id valid for ttl (0: the configured
// TokenTTL).
func (s *Service) IssueToken(ctx context.Context, id string, ttl time.Duration) (string, time.Time, error) {
	if s.tokens == nil {
		return "", time.Time{}, errors.New("issue token: no token service configured")
	}
	t, err := s.store.GetTenant(ctx, id)
	if err != nil {
		return "", time.Time{}, err
	}
	if ttl == 0 {
		ttl = s.cfg.TokenTTL
	}
	if ttl < time.Second || ttl > s.tokens.cfg.MaxTTL {
		return "", time.Time{}, invalid("ttl", "must be between 1s and %s", s.tokens.cfg.MaxTTL)
	}
	return s.tokens.Issue("tenant:"+t.ID, RoleTenant, t.ID, ttl)
}

// AppInput registers a Meta app. An empty VerifyToken is generated.
type AppInput struct {
	AppID       string
	AppSecret   string
	VerifyToken string
	LegacySHA1  bool
}

// RegisterApp registers an app for tenantID. Its secret is sealed and
// never returned; the verify token (given or generated) is in the App.
func (s *Service) RegisterApp(ctx context.Context, tenantID string, in AppInput) (App, error) {
	if err := checkMetaID("app_id", in.AppID); err != nil {
		return App{}, err
	}
	if err := checkSecret(in.AppSecret); err != nil {
		return App{}, err
	}
	if err := checkText("verify_token", in.VerifyToken); err != nil {
		return App{}, err
	}
	if in.VerifyToken == "" {
		in.VerifyToken = newVerifyToken()
	} else if len(in.VerifyToken) < MinVerifyTokenLen || len(in.VerifyToken) > MaxSecretLength || !reVerifyToken.MatchString(in.VerifyToken) {
		return App{}, invalid("verify_token", "must be %d to %d printable ASCII characters without spaces", MinVerifyTokenLen, MaxSecretLength)
	}
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return App{}, err
	}
	name, err := s.prove(ctx, in.AppID, in.AppSecret)
	if err != nil {
		return App{}, err
	}
	now := s.now().UTC()
	a := App{AppID: in.AppID, TenantID: tenantID, VerifyToken: in.VerifyToken, LegacySHA1: in.LegacySHA1, Name: name, CreatedAt: now, UpdatedAt: now}
	return s.store.CreateApp(ctx, a, s.keys.Seal([]byte(in.AppSecret), AppSecretBinding(in.AppID)))
}

func checkSecret(secret string) error {
	// Sealed, the secret is bytes to Postgres; but a NUL or a stray byte is
	// never part of a real app secret, only of a paste gone wrong.
	if err := checkText("app_secret", secret); err != nil {
		return err
	}
	if secret == "" || len(secret) > MaxSecretLength || strings.TrimSpace(secret) != secret {
		return invalid("app_secret", "must be 1 to %d characters without surrounding spaces", MaxSecretLength)
	}
	return nil
}

// GetApp reads an app of tenantID.
func (s *Service) GetApp(ctx context.Context, tenantID, appID string) (App, error) {
	if checkMetaID("app_id", appID) != nil {
		return App{}, notFound("app") // no such app can exist
	}
	return s.store.GetApp(ctx, tenantID, appID)
}

// ListApps lists tenantID's apps in app_id order.
func (s *Service) ListApps(ctx context.Context, tenantID string, opts database.ListOptions) (database.Results[App], error) {
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return database.Results[App]{}, err
	}
	return s.store.ListApps(ctx, tenantID, opts)
}

// AppPatch changes an app; nil fields stay. A new AppSecret rotates: the
// current secret becomes the previous one, accepted for RotationGrace.
type AppPatch struct {
	AppSecret  *string
	LegacySHA1 *bool
}

// UpdateApp applies p to an app of tenantID.
func (s *Service) UpdateApp(ctx context.Context, tenantID, appID string, p AppPatch) (App, error) {
	if checkMetaID("app_id", appID) != nil {
		return App{}, notFound("app")
	}
	var name string
	if p.AppSecret != nil {
		if err := checkSecret(*p.AppSecret); err != nil {
			return App{}, err
		}
		// A new secret Meta does not know would leave every webhook of
		// the app refused once the grace ends: prove it first. Only the
		// app's own tenant gets here with an answer (another tenant's
		// app is 404 below), but proving first would tell a stranger
		// whether a secret is right: check that the app is the caller's.
		if _, err := s.store.GetApp(ctx, tenantID, appID); err != nil {
			return App{}, err
		}
		var err error
		if name, err = s.prove(ctx, appID, *p.AppSecret); err != nil {
			return App{}, err
		}
	}
	now := s.now().UTC()
	return s.store.UpdateApp(ctx, tenantID, appID, func(a *App, sec *SealedSecrets) error {
		set(&a.LegacySHA1, p.LegacySHA1)
		if name != "" {
			a.Name = name
		}
		if p.AppSecret != nil {
			old, err := s.keys.Open(sec.Current, AppSecretBinding(a.AppID))
			if err != nil {
				return fmt.Errorf("open secret of app %s: %w", a.AppID, err)
			}
			exp := now.Add(s.cfg.RotationGrace)
			sec.Previous = s.keys.Seal(old, AppPreviousSecretBinding(a.AppID))
			sec.PreviousExpiresAt = &exp
			sec.Current = s.keys.Seal([]byte(*p.AppSecret), AppSecretBinding(a.AppID))
			a.PreviousSecretExpiresAt = &exp
		}
		a.UpdatedAt = now
		return nil
	})
}

// DeleteApp deletes an app of tenantID and the Pages registered for it.
func (s *Service) DeleteApp(ctx context.Context, tenantID, appID string) error {
	if checkMetaID("app_id", appID) != nil {
		return notFound("app")
	}
	return s.store.DeleteApp(ctx, tenantID, appID)
}

// PageInput registers a Page for one of the tenant's apps. An empty
// Object is ObjectPage.
type PageInput struct {
	PageID string
	AppID  string
	Object Object
	// AccessToken is a Page access token of the app, optional: with one,
	// the gateway subscribes the Page and checks its subscription. It is
	// sealed at rest and never returned.
	AccessToken string
}

// MaxPageTokenLength bounds a Page access token (Meta's are a few hundred
// characters).
const MaxPageTokenLength = 2048

func checkPageToken(token string) error {
	if err := checkText("page_access_token", token); err != nil {
		return err
	}
	if len(token) > MaxPageTokenLength || strings.TrimSpace(token) != token || strings.ContainsAny(token, " \t\r\n") {
		return invalid("page_access_token", "must be at most %d characters without spaces", MaxPageTokenLength)
	}
	return nil
}

// RegisterPage registers a Page. The app must be tenantID's (else a
// *FieldError on app_id wrapping ErrInvalid); a (Page, app) pair is
// registered once (ErrConflict).
func (s *Service) RegisterPage(ctx context.Context, tenantID string, in PageInput) (Page, error) {
	if err := checkMetaID("page_id", in.PageID); err != nil {
		return Page{}, err
	}
	if err := checkMetaID("app_id", in.AppID); err != nil {
		return Page{}, err
	}
	if err := checkText("object", string(in.Object)); err != nil {
		return Page{}, err
	}
	if in.Object == "" {
		in.Object = ObjectPage
	}
	if in.Object != ObjectPage && in.Object != ObjectInstagram {
		return Page{}, invalid("object", "must be page or instagram")
	}
	if err := checkPageToken(in.AccessToken); err != nil {
		return Page{}, err
	}
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return Page{}, err
	}
	var sealed []byte
	if in.AccessToken != "" {
		sealed = s.keys.Seal([]byte(in.AccessToken), PageTokenBinding(in.PageID, in.AppID))
	}
	return s.store.CreatePage(ctx, Page{PageID: in.PageID, AppID: in.AppID, TenantID: tenantID, Object: in.Object, CreatedAt: s.now().UTC()}, sealed)
}

// SetPageToken replaces (or, with an empty token, removes) the access
// token of a Page of tenantID on appID (which may be empty when the Page
// is on one app of the tenant only).
func (s *Service) SetPageToken(ctx context.Context, tenantID, pageID, appID, token string) (Page, error) {
	if checkMetaID("page_id", pageID) != nil {
		return Page{}, notFound("page")
	}
	if appID != "" {
		if err := checkMetaID("app_id", appID); err != nil {
			return Page{}, err
		}
	}
	if err := checkPageToken(token); err != nil {
		return Page{}, err
	}
	return s.store.UpdatePageToken(ctx, tenantID, pageID, appID, func(p Page) []byte {
		if token == "" {
			return nil
		}
		return s.keys.Seal([]byte(token), PageTokenBinding(p.PageID, p.AppID))
	})
}

// GetPage reads a Page of tenantID on appID, or on its only app of the
// tenant when appID is empty.
func (s *Service) GetPage(ctx context.Context, tenantID, pageID, appID string) (Page, error) {
	p, _, err := s.pageOf(ctx, tenantID, pageID, appID)
	return p, err
}

func (s *Service) pageOf(ctx context.Context, tenantID, pageID, appID string) (Page, []byte, error) {
	if checkMetaID("page_id", pageID) != nil {
		return Page{}, nil, notFound("page")
	}
	if appID != "" {
		if err := checkMetaID("app_id", appID); err != nil {
			return Page{}, nil, err
		}
	}
	return s.store.GetPage(ctx, tenantID, pageID, appID)
}

// Credentials are what calling Meta's Graph API about an app, or a Page
// of it, takes. They are plaintext: hold them for one call and never log
// them.
type Credentials struct {
	App       App
	AppSecret string
	// Page and PageToken are set for a Page's credentials; PageToken is
	// empty when the Page has none.
	Page      Page
	PageToken string
	// Err, from HealthTargets only, says why a secret or token could
	// not be opened (the keyring lacks its key); the rest is then empty.
	Err error
}

// HealthTargets reads every app with its secret and every Page with its
// token (if any) and its app's secret: what the health checker asks Meta
// about. A secret that cannot be opened is that target's Err, not a
// failure of the whole.
func (s *Service) HealthTargets(ctx context.Context) (apps, pages []Credentials, err error) {
	sa, err := s.store.AllApps(ctx)
	if err != nil {
		return nil, nil, err
	}
	sp, err := s.store.AllPages(ctx)
	if err != nil {
		return nil, nil, err
	}
	byID := make(map[string]int, len(sa))
	apps = make([]Credentials, len(sa))
	for i, a := range sa {
		apps[i].App = a.App
		byID[a.AppID] = i
		secret, err := s.keys.Open(a.Secret, AppSecretBinding(a.AppID))
		if err != nil {
			apps[i].Err = fmt.Errorf("secret of app %s: %w", a.AppID, err)
			continue
		}
		apps[i].AppSecret = string(secret)
	}
	pages = make([]Credentials, 0, len(sp))
	for _, p := range sp {
		i, ok := byID[p.AppID]
		if !ok {
			continue // registered after the apps were read
		}
		c := Credentials{App: apps[i].App, AppSecret: apps[i].AppSecret, Page: p.Page, Err: apps[i].Err}
		if len(p.Token) > 0 && c.Err == nil {
			token, err := s.keys.Open(p.Token, PageTokenBinding(p.PageID, p.AppID))
			if err != nil {
				c.Err = fmt.Errorf("access token of page %s: %w", p.PageID, err)
			}
			c.PageToken = string(token)
		}
		if c.Err != nil {
			c.AppSecret, c.PageToken = "", ""
		}
		pages = append(pages, c)
	}
	return apps, pages, nil
}

// AppCredentials reads an app of tenantID with its current secret.
func (s *Service) AppCredentials(ctx context.Context, tenantID, appID string) (Credentials, error) {
	if checkMetaID("app_id", appID) != nil {
		return Credentials{}, notFound("app")
	}
	a, sealed, err := s.store.GetAppSecret(ctx, tenantID, appID)
	if err != nil {
		return Credentials{}, err
	}
	secret, err := s.keys.Open(sealed, AppSecretBinding(appID))
	if err != nil {
		return Credentials{}, fmt.Errorf("open secret of app %s: %w", appID, err)
	}
	return Credentials{App: a, AppSecret: string(secret)}, nil
}

// PageCredentials reads a Page of tenantID (see GetPage) with its token
// and its app's current secret.
func (s *Service) PageCredentials(ctx context.Context, tenantID, pageID, appID string) (Credentials, error) {
	p, sealed, err := s.pageOf(ctx, tenantID, pageID, appID)
	if err != nil {
		return Credentials{}, err
	}
	c, err := s.AppCredentials(ctx, tenantID, p.AppID)
	if err != nil {
		return Credentials{}, err
	}
	c.Page = p
	if len(sealed) > 0 {
		token, err := s.keys.Open(sealed, PageTokenBinding(p.PageID, p.AppID))
		if err != nil {
			return Credentials{}, fmt.Errorf("open access token of page %s: %w", p.PageID, err)
		}
		c.PageToken = string(token)
	}
	return c, nil
}

// SubscribedTypes are the event types tenantID's endpoints name (not "*",
// not the gateway's own), sorted: what its Meta subscriptions need on top
// of messaging_postbacks.
func (s *Service) SubscribedTypes(ctx context.Context, tenantID string) ([]string, error) {
	m, err := s.store.EndpointTypes(ctx, []string{tenantID})
	if err != nil {
		return nil, err
	}
	return m[tenantID], nil
}

// ListPages lists tenantID's Pages in (page_id, app_id) order.
func (s *Service) ListPages(ctx context.Context, tenantID string, opts database.ListOptions) (database.Results[Page], error) {
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return database.Results[Page]{}, err
	}
	return s.store.ListPages(ctx, tenantID, opts)
}

// DeletePage deletes a Page of tenantID from appID; appID may be empty when
// the Page is on only one of the tenant's apps.
func (s *Service) DeletePage(ctx context.Context, tenantID, pageID, appID string) error {
	if checkMetaID("page_id", pageID) != nil {
		return notFound("page")
	}
	if appID != "" {
		if err := checkMetaID("app_id", appID); err != nil {
			return err
		}
	}
	return s.store.DeletePage(ctx, tenantID, pageID, appID)
}

// newSigningSecret is a Standard Webhooks secret: whsec_ and the base64 of
// 24 random bytes.
func newSigningSecret() string {
	return SigningSecretPrefix + base64.StdEncoding.EncodeToString(randomBytes(24))
}

// newVerifyToken is 32 random bytes, base64url: it identifies one app.
func newVerifyToken() string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(32))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("tenant: crypto/rand failed: " + err.Error())
	}
	return b
}
