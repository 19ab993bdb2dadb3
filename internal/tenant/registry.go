package tenant

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/secrets"
)

// RegistryChannel is the Postgres NOTIFY channel the schema's triggers
// signal on every change to tenants, apps or Pages.
const RegistryChannel = "postgate_registry"

// RegistryConfig tunes the Registry.
type RegistryConfig struct {
	// ReloadEvery is the backstop full reload, for a notification lost
	// while the LISTEN connection was down. Default 30s.
	ReloadEvery time.Duration
	// RetryEvery is the wait before reconnecting a failed LISTEN. Default 1s.
	RetryEvery time.Duration
}

func (c *RegistryConfig) defaults() {
	if c.ReloadEvery == 0 {
		c.ReloadEvery = 30 * time.Second
	}
	if c.RetryEvery == 0 {
		c.RetryEvery = time.Second
	}
}

// AppKeys is what the ingress needs to authenticate an app's webhooks.
type AppKeys struct {
	AppID       string
	TenantID    string
	VerifyToken string
	LegacySHA1  bool
	// Secret is the current app secret; PreviousSecret (if any) is still
	// accepted until PreviousExpires.
	Secret          []byte
	PreviousSecret  []byte
	PreviousExpires time.Time
}

// Secrets appends the secrets valid at now to dst: the current one, and
// the previous one during its grace period.
func (a *AppKeys) Secrets(now time.Time, dst [][]byte) [][]byte {
	dst = append(dst, a.Secret)
	if a.PreviousSecret != nil && now.Before(a.PreviousExpires) {
		dst = append(dst, a.PreviousSecret)
	}
	return dst
}

// Route is one (Page, app) registration: who receives the Page's events
// that app signs.
type Route struct {
	PageID   string
	AppID    string
	TenantID string
	Object   Object
}

// TenantInfo is what the ingress knows of a tenant: its endpoints.
type TenantInfo struct {
	ID        string
	Endpoints []*EndpointInfo
}

// Wants reports whether any endpoint of the tenant takes an event of type
// typ on pageID (test: a Meta dashboard test event): the ingress stores
// only events some endpoint takes. The fan-out itself is decided again in
// the database as the event is stored (package event).
func (t *TenantInfo) Wants(typ, pageID string, test bool) bool {
	for _, e := range t.Endpoints {
		if e.Takes(typ, pageID, test) {
			return true
		}
	}
	return false
}

// EndpointInfo is what the ingress and the delivery workers need to know
// of an endpoint.
type EndpointInfo struct {
	ID       uuid.UUID
	TenantID string
	URL      string
	Format   Format
	// Signature is the standard format's (hmac or ed25519).
	Signature         Signature
	DeliverTestEvents bool
	allEvents         bool // "*": every Meta type
	events            map[string]bool
	pages             map[string]bool // nil: every Page
	// Rate, Burst and Concurrency are the endpoint's overrides; 0 means
	// the gateway's default.
	Rate, Burst, Concurrency int
	// Disabled is set while deliveries are paused (a 410 from the
	// endpoint, or an operator).
	Disabled bool
	// EnabledAt is when the endpoint was last re-enabled (zero if never):
	// a worker that sees it change resets the endpoint's breaker.
	EnabledAt time.Time
	// hmacKeys (hmac) or edKeys (ed25519) sign deliveries: the current
	// secret's, then the previous one's until previousExpires. Empty when
	// the current one cannot be opened: the endpoint then cannot be
	// delivered to.
	hmacKeys        [][]byte
	edKeys          []ed25519.PrivateKey
	previousExpires time.Time
}

// NewEndpointInfo is an endpoint as the registry would load it, without
// keys, for tests and fakes of the registry: it takes events of the types
// events names ("*" for every Meta type) on pages (nil: every Page).
func NewEndpointInfo(id uuid.UUID, tenantID, url string, events, pages []string, deliverTestEvents bool) *EndpointInfo {
	e := &EndpointInfo{ID: id, TenantID: tenantID, URL: url, Format: FormatStandard, Signature: SignatureHMAC,
		DeliverTestEvents: deliverTestEvents, events: map[string]bool{}}
	for _, ev := range events {
		e.events[ev] = true
		e.allEvents = e.allEvents || ev == "*"
	}
	if pages != nil {
		e.pages = map[string]bool{}
		for _, p := range pages {
			e.pages[p] = true
		}
	}
	return e
}

// Takes reports whether the endpoint's filters take an event (the same
// rule as the fan-out's SQL, migration 00012).
func (e *EndpointInfo) Takes(typ, pageID string, test bool) bool {
	if test && !e.DeliverTestEvents {
		return false
	}
	if e.pages != nil && !e.pages[pageID] {
		return false
	}
	return e.events[typ] || (e.allEvents && !strings.HasPrefix(typ, "postgate."))
}

// SigningKeys appends the HMAC keys that sign a delivery made at now: the
// current signing secret's, and the previous one's during a rotation.
func (e *EndpointInfo) SigningKeys(now time.Time, dst [][]byte) [][]byte {
	for i, k := range e.hmacKeys {
		if i > 0 && !now.Before(e.previousExpires) {
			break
		}
		dst = append(dst, k)
	}
	return dst
}

// Ed25519Keys appends the private keys that sign a delivery made at now,
// as SigningKeys does.
func (e *EndpointInfo) Ed25519Keys(now time.Time, dst []ed25519.PrivateKey) []ed25519.PrivateKey {
	for i, k := range e.edKeys {
		if i > 0 && !now.Before(e.previousExpires) {
			break
		}
		dst = append(dst, k)
	}
	return dst
}

// CanSign reports whether the endpoint has signing material: a standard
// endpoint its own, a meta one is signed with its app's secret.
func (e *EndpointInfo) CanSign() bool {
	return e.Format == FormatMeta || len(e.hmacKeys) > 0 || len(e.edKeys) > 0
}

type snapshot struct {
	apps      map[string]*AppKeys
	tokens    map[string]*AppKeys
	pages     map[string][]Route
	tenants   map[string]*TenantInfo
	endpoints map[uuid.UUID]*EndpointInfo
	tenantIDs []string        // every tenant, in id order
	list      []*EndpointInfo // every endpoint, in id order
	disabled  int
	loaded    time.Time
}

// Registry is an in-memory, read-mostly copy of the routing data. Lookups
// are lock-free reads of an immutable snapshot; a reload swaps in a new one.
type Registry struct {
	cfg  RegistryConfig
	pool *pgxpool.Pool
	keys *secrets.Keyring
	log  *slog.Logger
	now  func() time.Time
	snap atomic.Pointer[snapshot]
	// loads counts completed reloads (tests wait on it).
	loads atomic.Int64
	// loadMu serialises Load: a reload that began before a change must
	// not finish after, and overwrite, one that began after it.
	loadMu sync.Mutex
}

// newSnapshot is an empty snapshot that started loading at loaded.
func newSnapshot(loaded time.Time) *snapshot {
	return &snapshot{
		apps: map[string]*AppKeys{}, tokens: map[string]*AppKeys{},
		pages: map[string][]Route{}, tenants: map[string]*TenantInfo{},
		endpoints: map[uuid.UUID]*EndpointInfo{}, loaded: loaded,
	}
}

// NewRegistry returns an empty registry; call Load, then Run.
func NewRegistry(cfg RegistryConfig, pool *pgxpool.Pool, keys *secrets.Keyring, log *slog.Logger, now func() time.Time) *Registry {
	cfg.defaults()
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Registry{cfg: cfg, pool: pool, keys: keys, log: log, now: now}
	r.snap.Store(newSnapshot(time.Time{}))
	return r
}

// App returns the keys of a registered app.
func (r *Registry) App(appID string) (*AppKeys, bool) {
	a, ok := r.snap.Load().apps[appID]
	return a, ok
}

// AppByVerifyToken returns the app whose verify token is token.
func (r *Registry) AppByVerifyToken(token string) (*AppKeys, bool) {
	a, ok := r.snap.Load().tokens[token]
	return a, ok
}

// Routes returns every registration of a Page (one per app).
func (r *Registry) Routes(pageID string) []Route {
	return r.snap.Load().pages[pageID]
}

// Route returns the registration of (Page, app).
func (r *Registry) Route(pageID, appID string) (Route, bool) {
	for _, rt := range r.snap.Load().pages[pageID] {
		if rt.AppID == appID {
			return rt, true
		}
	}
	return Route{}, false
}

// Tenant returns what the ingress knows of a tenant.
func (r *Registry) Tenant(id string) (*TenantInfo, bool) {
	t, ok := r.snap.Load().tenants[id]
	return t, ok
}

// TenantIDs returns the id of every tenant, in order. The slice is shared:
// do not modify it.
func (r *Registry) TenantIDs() []string {
	return r.snap.Load().tenantIDs
}

// Endpoints returns every endpoint, in id order. The slice is shared: do
// not modify it.
func (r *Registry) Endpoints() []*EndpointInfo {
	return r.snap.Load().list
}

// Endpoint returns one endpoint.
func (r *Registry) Endpoint(id uuid.UUID) (*EndpointInfo, bool) {
	e, ok := r.snap.Load().endpoints[id]
	return e, ok
}

// DisabledEndpoints counts the endpoints whose deliveries are paused.
func (r *Registry) DisabledEndpoints() int { return r.snap.Load().disabled }

// LoadedAt is when the current snapshot started reading: it reflects every
// change committed before that instant.
func (r *Registry) LoadedAt() time.Time { return r.snap.Load().loaded }

// Loads is the number of completed reloads.
func (r *Registry) Loads() int64 { return r.loads.Load() }

// DisableEndpoint pauses an endpoint's deliveries because it said so (a
// 410 Gone): visible in the admin API with reason, shared by every worker
// through the registry, and undone by re-enabling it. An endpoint already
// paused keeps its first reason and time.
func (r *Registry) DisableEndpoint(ctx context.Context, id uuid.UUID, reason string) error {
	_, err := r.pool.Exec(ctx, `UPDATE endpoints SET disabled_at = now(),
		disabled_reason = $2, updated_at = now()
		WHERE id = $1 AND disabled_at IS NULL`, id, reason)
	if err != nil {
		return fmt.Errorf("disable endpoint: %w", err)
	}
	return nil
}

// Load reads everything from Postgres and swaps the snapshot. An app whose
// secret cannot be decrypted is left out and logged (by id only).
func (r *Registry) Load(ctx context.Context) error {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	s := newSnapshot(r.now())
	tx, err := r.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("load registry: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck

	rows, _ := tx.Query(ctx, `SELECT id::text FROM tenants ORDER BY id`)
	var id string
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		s.tenants[id] = &TenantInfo{ID: id}
		s.tenantIDs = append(s.tenantIDs, id)
		return nil
	}); err != nil {
		return fmt.Errorf("load tenants: %w", err)
	}

	rows, _ = tx.Query(ctx, `SELECT id, tenant_id::text, url, format, signature, deliver_test_events, events, pages,
		coalesce(rate, 0), coalesce(burst, 0), coalesce(concurrency, 0), disabled_at IS NOT NULL,
		enabled_at, signing_secret, previous_signing_secret, previous_signing_secret_expires_at
		FROM endpoints WHERE deleted_at IS NULL ORDER BY id`)
	var (
		epID                  [16]byte
		tenantID, url         string
		format, signature     string
		deliverTest, disabled bool
		events, pages         []string
		rate, burst, conc     int32
		signing, prevSigning  []byte
		prevSigningExp        *time.Time
		enabledAt             *time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&epID, &tenantID, &url, &format, &signature, &deliverTest, &events, &pages,
		&rate, &burst, &conc, &disabled, &enabledAt, &signing, &prevSigning, &prevSigningExp}, func() error {
		e := &EndpointInfo{
			ID: uuid.UUID(epID), TenantID: tenantID, URL: url, Format: Format(format), Signature: Signature(signature),
			DeliverTestEvents: deliverTest, events: make(map[string]bool, len(events)),
			Rate: int(rate), Burst: int(burst), Concurrency: int(conc), Disabled: disabled,
		}
		if enabledAt != nil {
			e.EnabledAt = *enabledAt
		}
		for _, ev := range events {
			e.events[ev] = true
			e.allEvents = e.allEvents || ev == "*"
		}
		if len(pages) > 0 {
			e.pages = make(map[string]bool, len(pages))
			for _, p := range pages {
				e.pages[p] = true
			}
		}
		r.openKeys(e, signing, prevSigning, prevSigningExp)
		t := s.tenants[tenantID]
		if t == nil {
			return nil // cannot be: one snapshot, and a foreign key
		}
		t.Endpoints = append(t.Endpoints, e)
		s.endpoints[e.ID] = e
		s.list = append(s.list, e)
		if disabled {
			s.disabled++
		}
		return nil
	}); err != nil {
		return fmt.Errorf("load endpoints: %w", err)
	}

	rows, _ = tx.Query(ctx, `SELECT app_id, tenant_id::text, verify_token, legacy_sha1, secret,
		previous_secret, previous_secret_expires_at FROM apps`)
	var a AppKeys
	var sealed, prevSealed []byte
	var prevExp *time.Time
	if _, err := pgx.ForEachRow(rows, []any{&a.AppID, &a.TenantID, &a.VerifyToken, &a.LegacySHA1, &sealed, &prevSealed, &prevExp}, func() error {
		app := a
		secret, err := r.keys.Open(sealed, AppSecretBinding(app.AppID))
		if err != nil {
			r.log.Error("app secret cannot be decrypted; its webhooks will be refused", "app_id", app.AppID, "err", err)
			return nil
		}
		app.Secret = secret
		if prevSealed != nil && prevExp != nil && r.now().Before(*prevExp) {
			if prev, err := r.keys.Open(prevSealed, AppPreviousSecretBinding(app.AppID)); err == nil {
				app.PreviousSecret, app.PreviousExpires = prev, *prevExp
			} else {
				r.log.Error("previous app secret cannot be decrypted", "app_id", app.AppID, "err", err)
			}
		}
		s.apps[app.AppID] = &app
		s.tokens[app.VerifyToken] = &app
		return nil
	}); err != nil {
		return fmt.Errorf("load apps: %w", err)
	}

	rows, _ = tx.Query(ctx, `SELECT page_id, app_id, tenant_id::text, object FROM pages`)
	var rt Route
	var obj string
	if _, err := pgx.ForEachRow(rows, []any{&rt.PageID, &rt.AppID, &rt.TenantID, &obj}, func() error {
		route := rt
		route.Object = Object(obj)
		s.pages[route.PageID] = append(s.pages[route.PageID], route)
		return nil
	}); err != nil {
		return fmt.Errorf("load pages: %w", err)
	}
	r.snap.Store(s)
	r.loads.Add(1)
	return nil
}

// openKeys opens an endpoint's sealed signing material into e (see
// openEndpointKeys); what cannot be opened is logged by endpoint id only.
func (r *Registry) openKeys(e *EndpointInfo, sealed, prevSealed []byte, prevExp *time.Time) {
	if prevExp != nil && !r.now().Before(*prevExp) {
		prevSealed, prevExp = nil, nil
	}
	if err := openEndpointKeys(r.keys, e, sealed, prevSealed, prevExp); err != nil {
		r.log.Error("signing secret cannot be opened; deliveries to this endpoint wait", "endpoint_id", event.FormatEndpointID(e.ID), "err", err)
	}
}

// openEndpointKeys opens an endpoint's sealed signing material (a whsec_
// secret or a whsk_ key, and with prevExp the previous one, which signs
// until then) into e. Without a current one the endpoint cannot be
// delivered to; the error says which could not be opened.
func openEndpointKeys(keys *secrets.Keyring, e *EndpointInfo, sealed, prevSealed []byte, prevExp *time.Time) error {
	id := e.ID.String()
	if err := addKey(keys, e, sealed, SigningSecretBinding(id)); err != nil {
		return fmt.Errorf("current: %w", err)
	}
	if prevSealed == nil || prevExp == nil {
		return nil
	}
	if err := addKey(keys, e, prevSealed, PreviousSigningSecretBinding(id)); err != nil {
		return fmt.Errorf("previous: %w", err)
	}
	e.previousExpires = *prevExp
	return nil
}

// addKey opens one sealed secret or key and appends it to e's keys.
func addKey(keys *secrets.Keyring, e *EndpointInfo, sealed []byte, binding string) error {
	secret, err := keys.Open(sealed, binding)
	if err != nil {
		return err
	}
	if strings.HasPrefix(string(secret), Ed25519SecretPrefix) {
		k, err := Ed25519Key(string(secret))
		if err != nil {
			return err
		}
		e.edKeys = append(e.edKeys, k)
		return nil
	}
	key, err := SigningKey(string(secret))
	if err != nil {
		return err
	}
	e.hmacKeys = append(e.hmacKeys, key)
	return nil
}

// Run keeps the registry current until ctx ends: it LISTENs for change
// notifications and reloads on each (coalescing bursts), reloads every
// ReloadEvery as a backstop, and after a lost connection reconnects and
// reloads, since notifications sent meanwhile are gone.
func (r *Registry) Run(ctx context.Context) {
	l := database.Listener{
		Pool: r.pool, Channel: RegistryChannel, Serve: r.serveNotifications, RetryEvery: r.cfg.RetryEvery, Log: r.log,
		// The periodic reload also covers the time without a listener.
		Lost: func(ctx context.Context) {
			if err := r.Load(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("registry reload failed", "err", err)
			}
		},
	}
	l.Run(ctx)
}

func (r *Registry) serveNotifications(ctx context.Context, conn *pgx.Conn) error {
	// Changes made before LISTEN took effect would be missed otherwise.
	if err := r.Load(ctx); err != nil {
		return err
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, r.cfg.ReloadEvery)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			// Backstop reload.
		case err != nil:
			return err
		default:
			// Coalesce a burst of notifications into one reload.
			for {
				dctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
				_, err := conn.WaitForNotification(dctx)
				cancel()
				if err != nil {
					break
				}
			}
		}
		if err := r.Load(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.log.Warn("registry reload failed", "err", err)
		}
	}
}
