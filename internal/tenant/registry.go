package tenant

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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

// TenantInfo is what the ingress needs to know of a tenant.
type TenantInfo struct {
	ID                string
	DeliverTestEvents bool
	events            map[string]bool
}

// Subscribed reports whether the tenant receives events of type typ;
// postbacks always.
func (t *TenantInfo) Subscribed(typ string) bool {
	return typ == TypePostbacks || t.events[typ]
}

type snapshot struct {
	apps    map[string]*AppKeys
	tokens  map[string]*AppKeys
	pages   map[string][]Route
	tenants map[string]*TenantInfo
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
	r.snap.Store(&snapshot{
		apps: map[string]*AppKeys{}, tokens: map[string]*AppKeys{},
		pages: map[string][]Route{}, tenants: map[string]*TenantInfo{},
	})
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

// Loads is the number of completed reloads.
func (r *Registry) Loads() int64 { return r.loads.Load() }

// Load reads everything from Postgres and swaps the snapshot. An app whose
// secret cannot be decrypted is left out and logged (by id only).
func (r *Registry) Load(ctx context.Context) error {
	s := &snapshot{
		apps: map[string]*AppKeys{}, tokens: map[string]*AppKeys{},
		pages: map[string][]Route{}, tenants: map[string]*TenantInfo{},
		loaded: r.now(),
	}
	tx, err := r.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("load registry: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck

	rows, _ := tx.Query(ctx, `SELECT id::text, deliver_test_events, events FROM tenants`)
	var id string
	var deliverTest bool
	var events []string
	if _, err := pgx.ForEachRow(rows, []any{&id, &deliverTest, &events}, func() error {
		t := &TenantInfo{ID: id, DeliverTestEvents: deliverTest, events: make(map[string]bool, len(events))}
		for _, e := range events {
			t.events[e] = true
		}
		s.tenants[id] = t
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

// Run keeps the registry current until ctx ends: it LISTENs for change
// notifications and reloads on each (coalescing bursts), reloads every
// ReloadEvery as a backstop, and after a lost connection reconnects and
// reloads, since notifications sent meanwhile are gone.
func (r *Registry) Run(ctx context.Context) {
	for ctx.Err() == nil {
		err := r.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("registry listener lost; reconnecting", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.cfg.RetryEvery):
		}
		// The periodic reload also covers the time without a listener.
		if err := r.Load(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("registry reload failed", "err", err)
		}
	}
}

func (r *Registry) listen(ctx context.Context) error {
	pc, err := r.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Hijack() // a LISTEN connection must not go back to the pool
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+RegistryChannel); err != nil {
		return err
	}
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
