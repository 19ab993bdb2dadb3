package tenant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

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

// TenantInfo is what the ingress and the delivery workers need to know of
// a tenant.
type TenantInfo struct {
	ID                string
	DeliverTestEvents bool
	events            map[string]bool

	// CallbackURL is where deliveries go.
	CallbackURL string
	// Rate, Burst and Concurrency are the tenant's overrides; 0 means the
	// gateway's default.
	Rate, Burst, Concurrency int
	// EndpointDisabled is set while deliveries are paused (a 410 from the
	// endpoint, or an operator).
	EndpointDisabled bool
	// EndpointEnabledAt is when the endpoint was last re-enabled (zero if
	// never): a worker that sees it change resets the endpoint's breaker.
	EndpointEnabledAt time.Time
	// signingKey is the HMAC key of the current signing secret (nil when it
	// cannot be opened: the tenant then cannot be delivered to);
	// previousKey signs too until previousExpires.
	signingKey      []byte
	previousKey     []byte
	previousExpires time.Time
}

// SigningKeys appends the HMAC keys that sign a delivery made at now: the
// current signing secret's, and the previous one's during a rotation. It
// appends nothing when the tenant's secret could not be opened.
func (t *TenantInfo) SigningKeys(now time.Time, dst [][]byte) [][]byte {
	if t.signingKey == nil {
		return dst
	}
	dst = append(dst, t.signingKey)
	if t.previousKey != nil && now.Before(t.previousExpires) {
		dst = append(dst, t.previousKey)
	}
	return dst
}

// Subscribed reports whether the tenant receives events of type typ;
// postbacks always.
func (t *TenantInfo) Subscribed(typ string) bool {
	return typ == event.TypePostbacks || t.events[typ]
}

type snapshot struct {
	apps    map[string]*AppKeys
	tokens  map[string]*AppKeys
	pages   map[string][]Route
	tenants map[string]*TenantInfo
	list    []*TenantInfo // every tenant, in id order
	loaded  time.Time
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
		loaded: loaded,
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

// Tenants returns every tenant, in id order. The slice is shared: do not
// modify it.
func (r *Registry) Tenants() []*TenantInfo {
	return r.snap.Load().list
}

// LoadedAt is when the current snapshot started reading: it reflects every
// change committed before that instant.
func (r *Registry) LoadedAt() time.Time { return r.snap.Load().loaded }

// Loads is the number of completed reloads.
func (r *Registry) Loads() int64 { return r.loads.Load() }

// DisableEndpoint pauses a tenant's deliveries because its endpoint said
// so (a 410 Gone): visible in the admin API with reason, shared by every
// worker through the registry, and undone by re-enabling it. A tenant
// already paused keeps its first reason and time.
func (r *Registry) DisableEndpoint(ctx context.Context, tenantID, reason string) error {
	_, err := r.pool.Exec(ctx, `UPDATE tenants SET endpoint_disabled_at = now(),
		endpoint_disabled_reason = $2, updated_at = now()
		WHERE id = $1 AND endpoint_disabled_at IS NULL`, tenantID, reason)
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

	rows, _ := tx.Query(ctx, `SELECT id::text, deliver_test_events, events, callback_url,
		coalesce(rate, 0), coalesce(burst, 0), coalesce(concurrency, 0), endpoint_disabled_at IS NOT NULL,
		endpoint_enabled_at, signing_secret, previous_signing_secret, previous_signing_secret_expires_at
		FROM tenants ORDER BY id`)
	var (
		id, callback          string
		deliverTest, disabled bool
		events                []string
		rate, burst, conc     int32
		signing, prevSigning  []byte
		prevSigningExp        *time.Time
		enabledAt             *time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &deliverTest, &events, &callback, &rate, &burst, &conc, &disabled,
		&enabledAt, &signing, &prevSigning, &prevSigningExp}, func() error {
		t := &TenantInfo{
			ID: id, DeliverTestEvents: deliverTest, events: make(map[string]bool, len(events)),
			CallbackURL: callback, Rate: int(rate), Burst: int(burst), Concurrency: int(conc), EndpointDisabled: disabled,
		}
		if enabledAt != nil {
			t.EndpointEnabledAt = *enabledAt
		}
		for _, e := range events {
			t.events[e] = true
		}
		t.signingKey = r.openSigningKey(signing, SigningSecretBinding(id), id)
		if prevSigning != nil && prevSigningExp != nil && r.now().Before(*prevSigningExp) {
			if k := r.openSigningKey(prevSigning, PreviousSigningSecretBinding(id), id); k != nil {
				t.previousKey, t.previousExpires = k, *prevSigningExp
			}
		}
		s.tenants[id] = t
		s.list = append(s.list, t)
		return nil
	}); err != nil {
		return fmt.Errorf("load tenants: %w", err)
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

// openSigningKey opens a sealed "whsec_..." signing secret and returns its
// HMAC key, or nil (logged by tenant id only) when it cannot.
func (r *Registry) openSigningKey(sealed []byte, binding, tenantID string) []byte {
	secret, err := r.keys.Open(sealed, binding)
	if err != nil {
		r.log.Error("signing secret cannot be decrypted; deliveries to this tenant wait", "tenant_id", tenantID, "err", err)
		return nil
	}
	key, err := SigningKey(string(secret))
	if err != nil {
		r.log.Error("signing secret is malformed; deliveries to this tenant wait", "tenant_id", tenantID, "err", err)
		return nil
	}
	return key
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
