package event

import (
	"context"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/database"
)

// Tenants tells whether a tenant exists, and which Pages it has; the
// tenant service is one. A list or a bulk replay of a tenant that does not
// exist is ErrNotFound, not an empty answer.
type Tenants interface {
	CheckTenant(ctx context.Context, id string) error
	// PageIDs lists the ids of the tenant's registered Pages.
	PageIDs(ctx context.Context, id string) ([]string, error)
}

// Service holds the rules of reading and replaying events: validation of
// filters and ids, and the tenant's existence. It is what the admin API
// calls; authorization (who may reach which tenant) is the API's.
type Service struct {
	store   *Store
	tenants Tenants
}

// NewService returns the service over store; tenants checks tenant ids.
func NewService(store *Store, tenants Tenants) *Service {
	return &Service{store: store, tenants: tenants}
}

// MaxMidLength bounds a mid filter, in characters (Meta's mids are about
// 100).
const MaxMidLength = 512

// List lists tenantID's events in the order they arrived. A mid filter
// looks among the tenant's registered Pages, or in PageID when given.
func (s *Service) List(ctx context.Context, tenantID string, f Filter, opts database.ListOptions) (database.Results[Event], error) {
	if err := checkWindow(f.Status, f.Since, f.Until, true); err != nil {
		return database.Results[Event]{}, err
	}
	if f.Type != "" && !IsType(f.Type) {
		return database.Results[Event]{}, invalid("type", "is not an event type")
	}
	if f.PageID != "" && !isPageID(f.PageID) {
		return database.Results[Event]{}, invalid("page_id", "must be 1 to 20 digits")
	}
	if f.Mid != "" && (!database.Storable(f.Mid) || utf8.RuneCountInString(f.Mid) > MaxMidLength) {
		return database.Results[Event]{}, invalid("mid", "must be UTF-8 text of at most %d characters without NUL", MaxMidLength)
	}
	if f.Sender != "" && (!database.Storable(f.Sender) || utf8.RuneCountInString(f.Sender) > MaxMidLength) {
		return database.Results[Event]{}, invalid("sender", "must be UTF-8 text of at most %d characters without NUL", MaxMidLength)
	}
	if err := s.tenants.CheckTenant(ctx, tenantID); err != nil {
		return database.Results[Event]{}, err
	}
	if f.Mid != "" && f.PageID == "" {
		pages, err := s.tenants.PageIDs(ctx, tenantID)
		if err != nil {
			return database.Results[Event]{}, err
		}
		f.MidPages = pages
	}
	return s.store.List(ctx, tenantID, f, opts)
}

func checkWindow(status Status, since, until time.Time, statusOptional bool) error {
	switch {
	case status == "" && !statusOptional:
		return invalid("status", "is required")
	case status != "" && !status.valid():
		return invalid("status", "must be pending, failed, delivered or dead")
	}
	if !since.IsZero() && !until.IsZero() && !since.Before(until) {
		return invalid("until", "must be after since")
	}
	return nil
}

// Get reads one event of tenantID by its public id ("evt_…") with its
// delivery attempts, oldest first.
func (s *Service) Get(ctx context.Context, tenantID, eventID string) (Event, []Attempt, error) {
	id, err := ParseID(eventID)
	if err != nil {
		return Event{}, nil, notFound("event")
	}
	return s.store.Get(ctx, tenantID, id)
}

// Replay queues one event of tenantID for delivery again, whatever its
// status, with the same id (so the same webhook-id) and a fresh retry
// schedule: to endpointID only when it is not empty ("ep_…", one of the
// tenant's endpoints, else a *FieldError), else to every endpoint it went
// to.
func (s *Service) Replay(ctx context.Context, tenantID, eventID, endpointID string) (Event, error) {
	id, err := ParseID(eventID)
	if err != nil {
		return Event{}, notFound("event")
	}
	var ep uuid.UUID
	if endpointID != "" {
		if ep, err = ParseEndpointID(endpointID); err != nil {
			return Event{}, err
		}
	}
	return s.store.Replay(ctx, tenantID, id, ep)
}

// ReplayMany queues again every event of tenantID that f picks and
// returns how many. Status is required.
func (s *Service) ReplayMany(ctx context.Context, tenantID string, f ReplayFilter) (int64, error) {
	if err := checkWindow(f.Status, f.Since, f.Until, false); err != nil {
		return 0, err
	}
	if err := s.tenants.CheckTenant(ctx, tenantID); err != nil {
		return 0, err
	}
	return s.store.ReplayMany(ctx, tenantID, f)
}

// ListQuarantine lists tenantID's quarantined bodies, oldest first, each
// with its first QuarantineListBytes.
func (s *Service) ListQuarantine(ctx context.Context, tenantID string, opts database.ListOptions) (database.Results[Quarantined], error) {
	if err := s.tenants.CheckTenant(ctx, tenantID); err != nil {
		return database.Results[Quarantined]{}, err
	}
	return s.store.ListQuarantine(ctx, tenantID, opts)
}

// GetQuarantined reads one quarantined body of tenantID by its public id
// ("qrn_…"), with its bytes.
func (s *Service) GetQuarantined(ctx context.Context, tenantID, id string) (Quarantined, error) {
	qid, err := ParseQuarantineID(id)
	if err != nil {
		return Quarantined{}, notFound("quarantined body")
	}
	return s.store.GetQuarantined(ctx, tenantID, qid)
}

// isPageID reports whether s can be a Page id: 1 to 20 digits (anything
// else, a NUL byte included, names no Page and would not reach Postgres).
func isPageID(s string) bool {
	if len(s) == 0 || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
