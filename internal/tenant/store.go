package tenant

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/postgate/postgate/internal/database"
)

// Store keeps tenants, apps and Pages in Postgres through GORM. It enforces no business rule beyond the schema's:
// that is the Service's job. Every method scoped to a tenant takes its id
// and never touches another tenant's rows.
//
// Errors: ErrNotFound for a missing row (or an id that cannot exist),
// ErrConflict for a unique violation, ErrInvalid (as *FieldError) for a bad
// cursor; anything else is wrapped with the operation.
type Store struct {
	db *gorm.DB
}

// NewStore returns a store on db's GORM handle.
func NewStore(db *database.DB) *Store {
	return &Store{db: db.Gorm}
}

// SealedSecrets are a row's encrypted secrets as UpdateTenant and
// UpdateApp hand them to their apply function: the current one and, during
// a rotation, the previous one with its expiry.
type SealedSecrets struct {
	Current           []byte
	Previous          []byte
	PreviousExpiresAt *time.Time
}

// CreateTenant inserts t (its ID and timestamps already set) and, when
// def is not nil, its default endpoint with its sealed signing secret, in
// one transaction.
func (s *Store) CreateTenant(ctx context.Context, t Tenant, def *Endpoint, sec SealedSecrets) (Tenant, error) {
	id, err := uuid.Parse(t.ID)
	if err != nil {
		return Tenant{}, fmt.Errorf("create tenant: %w", err)
	}
	row := tenantRow{ID: id, Name: t.Name, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&row).Error; err != nil {
			return storeErr("create tenant", err)
		}
		if def == nil {
			return nil
		}
		er, err := endpointRowOf(def, sec)
		if err != nil {
			return err
		}
		return storeErr2("create endpoint", tx.Create(&er).Error)
	})
	if err != nil {
		return Tenant{}, err
	}
	return row.domain(def), nil
}

// storeErr2 is storeErr that lets nil through.
func storeErr2(op string, err error) error {
	if err == nil {
		return nil
	}
	return storeErr(op, err)
}

// defaultEndpoints reads the default endpoints of tenants ids, by tenant.
func defaultEndpoints(tx *gorm.DB, ids []uuid.UUID, lock bool) (map[uuid.UUID]*endpointRow, error) {
	q := tx.Where("tenant_id IN ? AND is_default AND deleted_at IS NULL", ids)
	if lock {
		q = q.Clauses(clause.Locking{Strength: "UPDATE"})
	}
	var rows []endpointRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, storeErr("get default endpoints", err)
	}
	out := make(map[uuid.UUID]*endpointRow, len(rows))
	for i := range rows {
		out[rows[i].TenantID] = &rows[i]
	}
	return out, nil
}

// tenantsOf reads the default endpoints of rows and makes the tenants.
func tenantsOf(tx *gorm.DB, rows []tenantRow) ([]Tenant, error) {
	ids := make([]uuid.UUID, len(rows))
	for i := range rows {
		ids[i] = rows[i].ID
	}
	defs, err := defaultEndpoints(tx, ids, false)
	if err != nil {
		return nil, err
	}
	out := make([]Tenant, len(rows))
	for i := range rows {
		var def *Endpoint
		if r := defs[rows[i].ID]; r != nil {
			e := r.domain()
			def = &e
		}
		out[i] = rows[i].domain(def)
	}
	return out, nil
}

// GetTenant reads one tenant.
func (s *Store) GetTenant(ctx context.Context, id string) (Tenant, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return Tenant{}, notFound("tenant")
	}
	var row tenantRow
	db := s.db.WithContext(ctx)
	if err := db.Where("id = ?", uid).Take(&row).Error; err != nil {
		return Tenant{}, storeErr("get tenant", err, "tenant")
	}
	ts, err := tenantsOf(db, []tenantRow{row})
	if err != nil {
		return Tenant{}, err
	}
	return ts[0], nil
}

// ListTenants lists tenants in id order (UUIDv7: creation order, so new
// tenants land after every cursor already handed out).
func (s *Store) ListTenants(ctx context.Context, opts database.ListOptions) (database.Results[Tenant], error) {
	db := s.db.WithContext(ctx)
	res, err := pageByID(db.Model(&tenantRow{}), "id", opts, "list tenants",
		func(r *tenantRow) tenantRow { return *r }, func(r *tenantRow) uuid.UUID { return r.ID })
	if err != nil {
		return database.Results[Tenant]{}, err
	}
	items, err := tenantsOf(db, res.Items)
	if err != nil {
		return database.Results[Tenant]{}, err
	}
	return database.Results[Tenant]{Items: items, NextCursor: res.NextCursor}, nil
}

// pageByID reads one page of q in the order of its UUID column col, after
// the cursor's id: limit+1 rows, the extra one only telling that there is
// a next page.
func pageByID[R, T any](q *gorm.DB, col string, opts database.ListOptions, op string, domain func(*R) T, id func(*R) uuid.UUID) (database.Results[T], error) {
	q = q.Order(col)
	if opts.Cursor != "" {
		after, err := idCursor(opts.Cursor)
		if err != nil {
			return database.Results[T]{}, err
		}
		q = q.Where(col+" > ?", after)
	}
	var rows []R
	if err := q.Limit(opts.PageSize() + 1).Scan(&rows).Error; err != nil {
		return database.Results[T]{}, storeErr(op, err)
	}
	return database.PageOf(rows, opts.PageSize(), domain, func(r *R) []string { return []string{id(r).String()} }), nil
}

// DefaultState is a tenant's default endpoint as UpdateTenant hands it to
// its apply function: Endpoint nil when there is none. apply may fill it
// (Endpoint and Secrets), change it, or leave it.
type DefaultState struct {
	Endpoint *Endpoint
	Secrets  SealedSecrets
}

// UpdateTenant reads tenant id and its default endpoint under row locks,
// lets apply change them, and writes them back, in one transaction.
func (s *Store) UpdateTenant(ctx context.Context, id string, apply func(*Tenant, *DefaultState) error) (Tenant, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return Tenant{}, notFound("tenant")
	}
	var out Tenant
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row tenantRow
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", uid).Take(&row).Error; err != nil {
			return storeErr("get tenant", err, "tenant")
		}
		defs, err := defaultEndpoints(tx, []uuid.UUID{uid}, true)
		if err != nil {
			return err
		}
		var st DefaultState
		existed := false
		if r := defs[uid]; r != nil {
			e := r.domain()
			st.Endpoint, existed = &e, true
			st.Secrets = SealedSecrets{Current: r.SigningSecret, Previous: r.PreviousSigningSecret, PreviousExpiresAt: r.PreviousSigningSecretExpiresAt}
		}
		t := row.domain(st.Endpoint)
		if err := apply(&t, &st); err != nil {
			return err
		}
		row.Name, row.UpdatedAt = t.Name, t.UpdatedAt
		if err := tx.Model(&tenantRow{}).Where("id = ?", uid).Select("name", "updated_at").Updates(&row).Error; err != nil {
			return storeErr("update tenant", err)
		}
		if st.Endpoint != nil {
			er, err := endpointRowOf(st.Endpoint, st.Secrets)
			if err != nil {
				return err
			}
			if existed {
				err = tx.Model(&endpointRow{}).Where("id = ?", er.ID).Select("*").Omit("id", "tenant_id", "created_at", "deleted_at").Updates(&er).Error
			} else {
				err = tx.Create(&er).Error
			}
			if err != nil {
				return storeErr("write default endpoint", err)
			}
		}
		out = row.domain(st.Endpoint)
		return nil
	})
	return out, err
}

// DeleteTenant deletes a tenant; its apps, Pages, events and quarantine go
// with it (ON DELETE CASCADE), which stops its deliveries. The schema
// removes its delivery queue first (migration 00011: the queue's lock
// order); a deadlock all the same is retried.
func (s *Store) DeleteTenant(ctx context.Context, id string) error {
	uid, err := uuid.Parse(id)
	if err != nil {
		return notFound("tenant")
	}
	var deleted int64
	err = database.RetryDeadlock(func() error {
		res := s.db.WithContext(ctx).Where("id = ?", uid).Delete(&tenantRow{})
		deleted = res.RowsAffected
		return res.Error
	})
	if err != nil {
		return storeErr("delete tenant", err)
	}
	if deleted == 0 {
		return notFound("tenant")
	}
	return nil
}

// appRowOf is the row that stores a with its sealed secrets.
func appRowOf(tenantID uuid.UUID, a App, sec SealedSecrets) appRow {
	return appRow{
		AppID:                   a.AppID,
		TenantID:                tenantID,
		Secret:                  sec.Current,
		PreviousSecret:          sec.Previous,
		PreviousSecretExpiresAt: sec.PreviousExpiresAt,
		VerifyToken:             a.VerifyToken,
		LegacySHA1:              a.LegacySHA1,
		Name:                    a.Name,
		CreatedAt:               a.CreatedAt,
		UpdatedAt:               a.UpdatedAt,
	}
}

// CreateApp inserts a (with its timestamps set) and its sealed secret. A
// taken app_id or verify token is a *FieldError wrapping ErrConflict. An
// app belongs to one tenant: its app_id is taken whichever tenant holds
// it, and the error is the same either way, naming no tenant.
func (s *Store) CreateApp(ctx context.Context, a App, secret []byte) (App, error) {
	tid, err := uuid.Parse(a.TenantID)
	if err != nil {
		return App{}, notFound("tenant")
	}
	row := appRowOf(tid, a, SealedSecrets{Current: secret})
	err = s.db.WithContext(ctx).Create(&row).Error
	switch {
	case err == nil:
		return row.domain(), nil
	case errors.Is(err, gorm.ErrDuplicatedKey) && constraint(err) == "apps_verify_token_key":
		return App{}, conflict("verify_token", "is already used by another app")
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return App{}, errAppTaken
	case errors.Is(err, gorm.ErrForeignKeyViolated):
		return App{}, notFound("tenant")
	}
	return App{}, storeErr("create app", err)
}

// GetApp reads one app of a tenant.
func (s *Store) GetApp(ctx context.Context, tenantID, appID string) (App, error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return App{}, notFound("app")
	}
	var row appRow
	if err := s.db.WithContext(ctx).Where("tenant_id = ? AND app_id = ?", tid, appID).Take(&row).Error; err != nil {
		return App{}, storeErr("get app", err, "app")
	}
	return row.domain(), nil
}

// ListApps lists a tenant's apps in app_id order.
func (s *Store) ListApps(ctx context.Context, tenantID string, opts database.ListOptions) (database.Results[App], error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return database.Results[App]{}, notFound("tenant")
	}
	q := s.db.WithContext(ctx).Where("tenant_id = ?", tid).Order("app_id")
	if opts.Cursor != "" {
		k, err := decodeCursor(opts.Cursor, 1)
		if err != nil {
			return database.Results[App]{}, err
		}
		q = q.Where("app_id > ?", k[0])
	}
	var rows []appRow
	if err := q.Limit(opts.PageSize() + 1).Find(&rows).Error; err != nil {
		return database.Results[App]{}, storeErr("list apps", err)
	}
	return database.PageOf(rows, opts.PageSize(), (*appRow).domain, func(r *appRow) []string { return []string{r.AppID} }), nil
}

// UpdateApp reads an app under a row lock, lets apply change it and its
// secrets, and writes it back, in one transaction.
func (s *Store) UpdateApp(ctx context.Context, tenantID, appID string, apply func(*App, *SealedSecrets) error) (App, error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return App{}, notFound("app")
	}
	var out App
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row appRow
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("tenant_id = ? AND app_id = ?", tid, appID).Take(&row).Error; err != nil {
			return storeErr("get app", err, "app")
		}
		a := row.domain()
		sec := SealedSecrets{Current: row.Secret, Previous: row.PreviousSecret, PreviousExpiresAt: row.PreviousSecretExpiresAt}
		if err := apply(&a, &sec); err != nil {
			return err
		}
		row = appRowOf(tid, a, sec)
		if err := tx.Model(&appRow{}).Where("app_id = ?", appID).Select("*").Omit("app_id", "tenant_id", "created_at").Updates(&row).Error; err != nil {
			return storeErr("update app", err)
		}
		out = row.domain()
		return nil
	})
	return out, err
}

// DeleteApp deletes an app of a tenant and its Pages.
func (s *Store) DeleteApp(ctx context.Context, tenantID, appID string) error {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return notFound("app")
	}
	res := s.db.WithContext(ctx).Where("tenant_id = ? AND app_id = ?", tid, appID).Delete(&appRow{})
	if res.Error != nil {
		return storeErr("delete app", res.Error)
	}
	if res.RowsAffected == 0 {
		return notFound("app")
	}
	return nil
}

// The errors of a registration that must not tell one tenant about
// another: an app taken by any tenant, and a Page on an app that is not
// the caller's, whether another tenant has it or nobody does.
var (
	errAppTaken        = conflict("app_id", "is already registered; an app belongs to one tenant only")
	errAppNotOfTenant  = invalid("app_id", "is not registered for this tenant")
	errPageTakenForApp = conflict("page_id", "is already registered for this app")
)

// CreatePage registers p. An app that is not p's tenant's is a *FieldError
// on app_id wrapping ErrInvalid (errAppNotOfTenant), and a taken (Page,
// app) one on page_id wrapping ErrConflict.
//
// The app is looked up, and held against deletion, before the insert:
// pages' primary key (page_id, app_id) is checked before the foreign key
// on (tenant_id, app_id), so inserting a Page another tenant has on its
// app would otherwise answer "taken" and confirm that tenant's Page.
func (s *Store) CreatePage(ctx context.Context, p Page, token []byte) (Page, error) {
	tid, err := uuid.Parse(p.TenantID)
	if err != nil {
		return Page{}, notFound("tenant")
	}
	row := pageRow{PageID: p.PageID, AppID: p.AppID, TenantID: tid, Object: string(p.Object), AccessToken: token, CreatedAt: p.CreatedAt}
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var apps []string
		if err := tx.Model(&appRow{}).Clauses(clause.Locking{Strength: "KEY SHARE"}).
			Where("tenant_id = ? AND app_id = ?", tid, p.AppID).Pluck("app_id", &apps).Error; err != nil {
			return err
		}
		if len(apps) == 0 {
			return errAppNotOfTenant
		}
		return tx.Create(&row).Error
	})
	switch {
	case err == nil:
		return row.domain(), nil
	case errors.Is(err, ErrInvalid):
		return Page{}, err
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return Page{}, errPageTakenForApp
	case errors.Is(err, gorm.ErrForeignKeyViolated):
		return Page{}, errAppNotOfTenant
	}
	return Page{}, storeErr("create page", err)
}

// PageIDs lists the distinct ids of a tenant's Pages.
func (s *Store) PageIDs(ctx context.Context, tenantID string) ([]string, error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return nil, notFound("tenant")
	}
	var ids []string
	if err := s.db.WithContext(ctx).Model(&pageRow{}).Distinct("page_id").Where("tenant_id = ?", tid).Pluck("page_id", &ids).Error; err != nil {
		return nil, storeErr("list page ids", err)
	}
	return ids, nil
}

// ListPages lists a tenant's Pages in (page_id, app_id) order.
func (s *Store) ListPages(ctx context.Context, tenantID string, opts database.ListOptions) (database.Results[Page], error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return database.Results[Page]{}, notFound("tenant")
	}
	q := s.db.WithContext(ctx).Where("tenant_id = ?", tid).Order("page_id").Order("app_id")
	if opts.Cursor != "" {
		k, err := decodeCursor(opts.Cursor, 2)
		if err != nil {
			return database.Results[Page]{}, err
		}
		q = q.Where("(page_id, app_id) > (?, ?)", k[0], k[1])
	}
	var rows []pageRow
	if err := q.Limit(opts.PageSize() + 1).Find(&rows).Error; err != nil {
		return database.Results[Page]{}, storeErr("list pages", err)
	}
	return database.PageOf(rows, opts.PageSize(), (*pageRow).domain, func(r *pageRow) []string { return []string{r.PageID, r.AppID} }), nil
}

// DeletePage deletes a Page of a tenant from appID, or, when appID is
// empty, from the only app of the tenant it is registered on. A Page on
// several of the tenant's apps needs appID (a *FieldError on app_id).
func (s *Store) DeletePage(ctx context.Context, tenantID, pageID, appID string) error {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return notFound("page")
	}
	return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		row, err := onePage(tx, tid, pageID, appID, true)
		if err != nil {
			return err
		}
		if err := tx.Where("page_id = ? AND app_id = ?", row.PageID, row.AppID).Delete(&pageRow{}).Error; err != nil {
			return storeErr("delete page", err)
		}
		return nil
	})
}

var errBadCursor = invalid("cursor", "%s", database.ErrBadCursor.Error())

func decodeCursor(c string, n int) ([]string, error) {
	k, err := database.DecodeCursor(c, n)
	if err != nil {
		return nil, errBadCursor
	}
	return k, nil
}

// idCursor decodes the cursor of a list ordered by a UUID id.
func idCursor(c string) (uuid.UUID, error) {
	k, err := decodeCursor(c, 1)
	if err != nil {
		return uuid.Nil, err
	}
	id, err := uuid.Parse(k[0])
	if err != nil {
		return uuid.Nil, errBadCursor
	}
	return id, nil
}

// notFound is ErrNotFound about one kind of thing: "tenant not found".
func notFound(thing string) error { return fmt.Errorf("%s %w", thing, ErrNotFound) }

// storeErr translates GORM's errors at the boundary; thing names what a
// lookup did not find.
func storeErr(op string, err error, thing ...string) error {
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound) && len(thing) > 0:
		return notFound(thing[0])
	case errors.Is(err, gorm.ErrRecordNotFound):
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	case errors.Is(err, gorm.ErrDuplicatedKey):
		return fmt.Errorf("%s: %w", op, ErrConflict)
	case errors.Is(err, gorm.ErrForeignKeyViolated):
		return fmt.Errorf("%s: %w", op, ErrInvalid)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// constraint names the constraint a Postgres error is about, if any.
func constraint(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.ConstraintName
	}
	return ""
}

// GetAppSecret reads an app of a tenant with its sealed current secret.
func (s *Store) GetAppSecret(ctx context.Context, tenantID, appID string) (App, []byte, error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return App{}, nil, notFound("app")
	}
	var row appRow
	if err := s.db.WithContext(ctx).Where("tenant_id = ? AND app_id = ?", tid, appID).Take(&row).Error; err != nil {
		return App{}, nil, storeErr("get app", err, "app")
	}
	return row.domain(), row.Secret, nil
}

// GetPage reads a Page of a tenant on appID, or, when appID is empty, on
// the only app of the tenant it is registered on (else a *FieldError on
// app_id), with its sealed access token (nil when none).
func (s *Store) GetPage(ctx context.Context, tenantID, pageID, appID string) (Page, []byte, error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return Page{}, nil, notFound("page")
	}
	row, err := onePage(s.db.WithContext(ctx), tid, pageID, appID, false)
	if err != nil {
		return Page{}, nil, err
	}
	return row.domain(), row.AccessToken, nil
}

// onePage finds the one (Page, app) row DeletePage, GetPage and
// UpdatePageToken act on, locked for update when lock is set.
func onePage(tx *gorm.DB, tid uuid.UUID, pageID, appID string, lock bool) (pageRow, error) {
	var rows []pageRow
	q := tx.Where("tenant_id = ? AND page_id = ?", tid, pageID)
	if lock {
		q = q.Clauses(clause.Locking{Strength: "UPDATE"})
	}
	if appID != "" {
		q = q.Where("app_id = ?", appID)
	}
	if err := q.Limit(20).Find(&rows).Error; err != nil {
		return pageRow{}, storeErr("find page", err)
	}
	switch {
	case len(rows) == 0:
		return pageRow{}, notFound("page")
	case len(rows) > 1:
		return pageRow{}, invalid("app_id", "Page %s is registered on %d apps of this tenant; name one with ?app_id=", pageID, len(rows))
	}
	return rows[0], nil
}

// UpdatePageToken sets the sealed access token of a Page (see GetPage for
// appID) to what seal returns for it.
func (s *Store) UpdatePageToken(ctx context.Context, tenantID, pageID, appID string, seal func(Page) []byte) (Page, error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return Page{}, notFound("page")
	}
	var out Page
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		row, err := onePage(tx, tid, pageID, appID, true)
		if err != nil {
			return err
		}
		row.AccessToken = seal(row.domain())
		if err := tx.Model(&pageRow{}).Where("page_id = ? AND app_id = ?", row.PageID, row.AppID).
			Update("access_token", row.AccessToken).Error; err != nil {
			return storeErr("update page", err)
		}
		out = row.domain()
		return nil
	})
	return out, err
}

// EndpointTypes maps each of tenantIDs (nil: every tenant) to the event
// types its live endpoints name, sorted, without "*" and the gateway's
// own postgate.* types.
func (s *Store) EndpointTypes(ctx context.Context, tenantIDs []string) (map[string][]string, error) {
	q := s.db.WithContext(ctx).Raw(`SELECT tenant_id::text, array_agg(DISTINCT t ORDER BY t)
FROM endpoints, unnest(events) AS t
WHERE deleted_at IS NULL AND t <> '*' AND t NOT LIKE 'postgate.%' AND (? OR tenant_id::text = ANY (?))
GROUP BY tenant_id`, tenantIDs == nil, textArray(tenantIDs))
	rows, err := q.Rows()
	if err != nil {
		return nil, storeErr("read endpoint types", err)
	}
	defer rows.Close()
	out := make(map[string][]string)
	for rows.Next() {
		var id string
		var types textArray
		if err := rows.Scan(&id, &types); err != nil {
			return nil, storeErr("read endpoint types", err)
		}
		out[id] = types
	}
	return out, storeErr2("read endpoint types", rows.Err())
}

// SealedApp is an app with its sealed current secret, and SealedPage a
// Page with its sealed access token: what the health checker reads.
type (
	SealedApp struct {
		App
		Secret []byte
	}
	SealedPage struct {
		Page
		Token []byte
	}
)

// AllApps reads every app of every tenant, and AllPages every Page.
func (s *Store) AllApps(ctx context.Context) ([]SealedApp, error) {
	var rows []appRow
	if err := s.db.WithContext(ctx).Order("app_id").Find(&rows).Error; err != nil {
		return nil, storeErr("read apps", err)
	}
	out := make([]SealedApp, len(rows))
	for i := range rows {
		out[i] = SealedApp{App: rows[i].domain(), Secret: rows[i].Secret}
	}
	return out, nil
}

// AllPages: see AllApps.
func (s *Store) AllPages(ctx context.Context) ([]SealedPage, error) {
	var rows []pageRow
	if err := s.db.WithContext(ctx).Order("page_id").Order("app_id").Find(&rows).Error; err != nil {
		return nil, storeErr("read pages", err)
	}
	out := make([]SealedPage, len(rows))
	for i := range rows {
		out[i] = SealedPage{Page: rows[i].domain(), Token: rows[i].AccessToken}
	}
	return out, nil
}
