package tenant

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/postgate/postgate/internal/database"
)

// CreateEndpoint inserts e (its ID and timestamps set) with its sealed
// signing secret or key. A second default endpoint of a tenant is
// ErrConflict.
func (s *Store) CreateEndpoint(ctx context.Context, e Endpoint, sec SealedSecrets) (Endpoint, error) {
	row, err := endpointRowOf(&e, sec)
	if err != nil {
		return Endpoint{}, err
	}
	err = s.db.WithContext(ctx).Create(&row).Error
	switch {
	case err == nil:
		return row.domain(), nil
	case errors.Is(err, gorm.ErrForeignKeyViolated):
		return Endpoint{}, notFound("tenant")
	case errors.Is(err, gorm.ErrDuplicatedKey) && constraint(err) == "endpoints_default_key":
		return Endpoint{}, conflict("default", "the tenant has a default endpoint already")
	}
	return Endpoint{}, storeErr("create endpoint", err)
}

// GetEndpoint reads endpoint id of tenantID.
func (s *Store) GetEndpoint(ctx context.Context, tenantID string, id uuid.UUID) (Endpoint, error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return Endpoint{}, notFound("endpoint")
	}
	var row endpointRow
	if err := s.db.WithContext(ctx).Where("tenant_id = ? AND id = ? AND deleted_at IS NULL", tid, id).Take(&row).Error; err != nil {
		return Endpoint{}, storeErr("get endpoint", err, "endpoint")
	}
	return row.domain(), nil
}

// CountEndpoints counts tenantID's endpoints.
func (s *Store) CountEndpoints(ctx context.Context, tenantID string) (int, error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return 0, notFound("tenant")
	}
	var n int64
	if err := s.db.WithContext(ctx).Model(&endpointRow{}).Where("tenant_id = ? AND deleted_at IS NULL", tid).Count(&n).Error; err != nil {
		return 0, storeErr("count endpoints", err)
	}
	return int(n), nil
}

// ListEndpoints lists tenantID's endpoints in id order (creation order; a
// migrated default endpoint, which has its tenant's id, comes first).
func (s *Store) ListEndpoints(ctx context.Context, tenantID string, opts database.ListOptions) (database.Results[Endpoint], error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return database.Results[Endpoint]{}, notFound("tenant")
	}
	return pageByID(s.db.WithContext(ctx).Model(&endpointRow{}).Where("tenant_id = ? AND deleted_at IS NULL", tid), "id", opts, "list endpoints",
		(*endpointRow).domain, func(r *endpointRow) uuid.UUID { return r.ID })
}

// UpdateEndpoint reads endpoint id of tenantID under a row lock, lets
// apply change it and its secrets, and writes every field back, in one
// transaction.
func (s *Store) UpdateEndpoint(ctx context.Context, tenantID string, id uuid.UUID, apply func(*Endpoint, *SealedSecrets) error) (Endpoint, error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return Endpoint{}, notFound("endpoint")
	}
	var out Endpoint
	err = s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var row endpointRow
		if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("tenant_id = ? AND id = ? AND deleted_at IS NULL", tid, id).Take(&row).Error; err != nil {
			return storeErr("get endpoint", err, "endpoint")
		}
		e := row.domain()
		sec := SealedSecrets{Current: row.SigningSecret, Previous: row.PreviousSigningSecret, PreviousExpiresAt: row.PreviousSigningSecretExpiresAt}
		if err := apply(&e, &sec); err != nil {
			return err
		}
		row, err := endpointRowOf(&e, sec)
		if err != nil {
			return err
		}
		// Select("*") writes every column, NULLs and zero values included.
		if err := tx.Model(&endpointRow{}).Where("id = ?", id).Select("*").Omit("id", "tenant_id", "created_at", "deleted_at").Updates(&row).Error; err != nil {
			return storeErr("update endpoint", err)
		}
		out = row.domain()
		return nil
	})
	return out, err
}

// DeleteEndpoint deletes endpoint id of tenantID: it is marked deleted
// (deleted_at), takes no more events and is gone from every read; the
// deliveries it settled stay as its events' history, and the schema drops
// those still to make (migration 12's trigger), whoever marks it.
func (s *Store) DeleteEndpoint(ctx context.Context, tenantID string, id uuid.UUID) error {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return notFound("endpoint")
	}
	var deleted int64
	err = database.RetryDeadlock(func() error {
		res := s.db.WithContext(ctx).Model(&endpointRow{}).Where("tenant_id = ? AND id = ? AND deleted_at IS NULL", tid, id).
			Updates(map[string]any{"deleted_at": gorm.Expr("now()"), "updated_at": gorm.Expr("now()")})
		deleted = res.RowsAffected
		return res.Error
	})
	if err != nil {
		return storeErr("delete endpoint", err)
	}
	if deleted == 0 {
		return notFound("endpoint")
	}
	return nil
}

// TenantApps lists the app ids of tenantID, in order.
func (s *Store) TenantApps(ctx context.Context, tenantID string) ([]string, error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return nil, notFound("tenant")
	}
	var ids []string
	if err := s.db.WithContext(ctx).Model(&appRow{}).Where("tenant_id = ?", tid).Order("app_id").Pluck("app_id", &ids).Error; err != nil {
		return nil, storeErr("list apps", err)
	}
	return ids, nil
}
