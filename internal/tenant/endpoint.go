package tenant

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/event"
)

// Limits of an endpoint's inputs (the API's schema states the same).
const (
	MaxDescriptionLength  = 200
	MaxEndpointPages      = 1000
	MaxEndpointsPerTenant = 20
)

// EndpointInput creates an endpoint. Nil Events means
// ["messaging_postbacks"]; empty Format, Signature and Ordering their
// defaults; zero limits the gateway's; nil DeliverTestEvents true.
type EndpointInput struct {
	URL               string
	Description       string
	Events            *[]string
	Pages             []string
	Format            Format
	Signature         Signature
	Ordering          Ordering
	Rate              int
	Burst             int
	Concurrency       int
	DeliverTestEvents *bool
}

// CreateEndpoint creates an endpoint of tenantID and returns it with its
// secret, once: the whsec_ signing secret of a standard hmac endpoint; an
// ed25519 endpoint's is its key pair, whose public half is on the endpoint
// and whose private half never leaves the gateway, and a meta endpoint is
// signed with its app's secret (secret is then empty).
func (s *Service) CreateEndpoint(ctx context.Context, tenantID string, in EndpointInput) (Endpoint, string, error) {
	now := s.now().UTC()
	e := Endpoint{
		TenantID: tenantID, URL: in.URL, Description: in.Description, Pages: in.Pages,
		Format: in.Format, Signature: in.Signature, Ordering: in.Ordering,
		Rate: in.Rate, Burst: in.Burst, Concurrency: in.Concurrency,
		DeliverTestEvents: in.DeliverTestEvents == nil || *in.DeliverTestEvents,
		Events:            []string{event.TypePostbacks},
		CreatedAt:         now, UpdatedAt: now,
	}
	if in.Events != nil {
		e.Events = *in.Events
	}
	if err := s.checkEndpoint(ctx, &e, true); err != nil {
		return Endpoint{}, "", err
	}
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return Endpoint{}, "", err
	}
	// Every claim round probes every endpoint: a tenant with hundreds of
	// them would tax every other tenant's deliveries.
	if n, err := s.store.CountEndpoints(ctx, tenantID); err != nil {
		return Endpoint{}, "", err
	} else if n >= MaxEndpointsPerTenant {
		return Endpoint{}, "", conflict("url", "the tenant has %d endpoints, the most it may have", MaxEndpointsPerTenant)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Endpoint{}, "", fmt.Errorf("endpoint id: %w", err)
	}
	e.ID = id
	var sec SealedSecrets
	secret := s.newEndpointSecret(&e, &sec)
	e, err = s.store.CreateEndpoint(ctx, e, sec)
	if err != nil {
		return Endpoint{}, "", err
	}
	if e.Format == FormatMeta {
		// Its deliveries are signed with the app's secret; the endpoint's
		// own is shown when a change to the standard format makes it one.
		secret = ""
	}
	return e, secret, nil
}

// newEndpointSecret makes e's signing material for its signature, sealed
// into sec.Current, and returns what the tenant is shown once: the whsec_
// secret (hmac), or "" (ed25519: the public key is set on e).
func (s *Service) newEndpointSecret(e *Endpoint, sec *SealedSecrets) string {
	if e.Signature == SignatureEd25519 {
		private, public := NewEd25519Secret()
		sec.Current = s.keys.Seal([]byte(private), SigningSecretBinding(e.ID.String()))
		e.PublicKey = public
		return ""
	}
	secret := newSigningSecret()
	sec.Current = s.keys.Seal([]byte(secret), SigningSecretBinding(e.ID.String()))
	e.PublicKey = ""
	return secret
}

// checkEndpoint normalises e's fields and checks them; the URL (resolved:
// DNS can be slow) only when checkURL.
func (s *Service) checkEndpoint(ctx context.Context, e *Endpoint, checkURL bool) error {
	if err := checkText("description", e.Description); err != nil {
		return err
	}
	if utf8.RuneCountInString(e.Description) > MaxDescriptionLength {
		return invalid("description", "is longer than %d characters", MaxDescriptionLength)
	}
	events, err := normalizeFilterEvents(e.Events)
	if err != nil {
		return err
	}
	e.Events = events
	pages, err := normalizePages(e.Pages)
	if err != nil {
		return err
	}
	e.Pages = pages
	if err := checkText("format", string(e.Format)); err != nil {
		return err
	}
	switch e.Format {
	case "":
		e.Format = FormatStandard
	case FormatStandard, FormatMeta:
	default:
		return invalid("format", "must be standard or meta")
	}
	if err := checkText("signature", string(e.Signature)); err != nil {
		return err
	}
	switch e.Signature {
	case "":
		e.Signature = SignatureHMAC
	case SignatureHMAC, SignatureEd25519:
	default:
		return invalid("signature", "must be hmac or ed25519")
	}
	if e.Format == FormatMeta && e.Signature != SignatureHMAC {
		return invalid("signature", "must be hmac for the meta format, which is signed with the app's secret as Meta signs it")
	}
	if err := checkText("ordering", string(e.Ordering)); err != nil {
		return err
	}
	switch e.Ordering {
	case "":
		e.Ordering = OrderingNone
	case OrderingNone, OrderingConversation:
	default:
		return invalid("ordering", "must be none or conversation")
	}
	if err := checkLimits(e.Rate, e.Burst, e.Concurrency); err != nil {
		return err
	}
	if checkURL {
		return s.checkEndpointURL(ctx, e.URL)
	}
	return nil
}

// checkEndpointURL is CheckCallbackURL for an endpoint's url field.
func (s *Service) checkEndpointURL(ctx context.Context, raw string) error {
	err := CheckCallbackURL(ctx, raw, s.cfg.AllowPrivateCallbacks, s.resolver)
	var fe *FieldError
	if errors.As(err, &fe) && fe.Field == "callback_url" {
		return &FieldError{Field: "url", Message: fe.Message, Err: fe.Err}
	}
	return err
}

// checkLimits checks an endpoint's rate, burst and concurrency.
func checkLimits(rate, burst, concurrency int) error {
	for _, f := range []struct {
		name string
		v    int
	}{{"rate", rate}, {"burst", burst}, {"concurrency", concurrency}} {
		if f.v < 0 || f.v > MaxLimitValue {
			return invalid(f.name, "must be between 0 (the gateway's default) and %d", MaxLimitValue)
		}
	}
	return nil
}

// normalizeFilterEvents checks an endpoint's events filter and returns it
// de-duplicated: "*" first, then event types in event.Types order, then
// event.TypeHealth. It may not be empty.
func normalizeFilterEvents(in []string) ([]string, error) {
	for _, e := range in {
		if err := checkText("events", e); err != nil {
			return nil, err
		}
		if !event.IsFilterType(e) {
			return nil, invalid("events", "is not a list of event types (each \"*\", %s or %s)", strings.Join(event.Types, ", "), event.TypeHealth)
		}
	}
	out := []string{}
	if slices.Contains(in, "*") {
		out = append(out, "*")
	} else {
		for _, e := range event.Types {
			if slices.Contains(in, e) {
				out = append(out, e)
			}
		}
	}
	if slices.Contains(in, event.TypeHealth) {
		out = append(out, event.TypeHealth)
	}
	if len(out) == 0 {
		return nil, invalid("events", "must name at least one event type")
	}
	return out, nil
}

// normalizePages checks an endpoint's Pages filter and returns it sorted
// and de-duplicated.
func normalizePages(in []string) ([]string, error) {
	if len(in) > MaxEndpointPages {
		return nil, invalid("pages", "has more than %d Pages", MaxEndpointPages)
	}
	out := make([]string, 0, len(in))
	for _, p := range in {
		if err := checkMetaID("pages", p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// parseEndpointID turns a public endpoint id into its row id; an id that
// is not one names nothing.
func parseEndpointID(id string) (uuid.UUID, error) {
	u, err := event.ParseEndpointID(id)
	if err != nil {
		return uuid.Nil, notFound("endpoint")
	}
	return u, nil
}

// GetEndpoint reads endpoint id ("ep_…") of tenantID.
func (s *Service) GetEndpoint(ctx context.Context, tenantID, id string) (Endpoint, error) {
	uid, err := parseEndpointID(id)
	if err != nil {
		return Endpoint{}, err
	}
	return s.store.GetEndpoint(ctx, tenantID, uid)
}

// ListEndpoints lists tenantID's endpoints in creation order.
func (s *Service) ListEndpoints(ctx context.Context, tenantID string, opts database.ListOptions) (database.Results[Endpoint], error) {
	if _, err := s.store.GetTenant(ctx, tenantID); err != nil {
		return database.Results[Endpoint]{}, err
	}
	return s.store.ListEndpoints(ctx, tenantID, opts)
}

// EndpointPatch changes an endpoint; nil fields stay as they are. A zero
// limit returns to the gateway's default. Enabled true re-enables it (and
// resets its breaker), false disables it. A new Signature makes new
// signing material, with no grace (the old scheme's receivers must change
// anyway).
type EndpointPatch struct {
	URL               *string
	Description       *string
	Events            *[]string
	Pages             *[]string
	Format            *Format
	Signature         *Signature
	Ordering          *Ordering
	Rate              *int
	Burst             *int
	Concurrency       *int
	DeliverTestEvents *bool
	Enabled           *bool
}

// UpdateEndpoint applies p to endpoint id of tenantID. secret is the new
// whsec_ secret when p changed the signature to hmac, or the format from
// meta to standard with hmac (shown once: a meta endpoint's own secret
// was never shown), else empty.
func (s *Service) UpdateEndpoint(ctx context.Context, tenantID, id string, p EndpointPatch) (e Endpoint, secret string, err error) {
	uid, err := parseEndpointID(id)
	if err != nil {
		return Endpoint{}, "", err
	}
	// The URL is resolved before the row is locked: DNS can be slow.
	if p.URL != nil {
		if err := s.checkEndpointURL(ctx, *p.URL); err != nil {
			return Endpoint{}, "", err
		}
	}
	now := s.now().UTC()
	e, err = s.store.UpdateEndpoint(ctx, tenantID, uid, func(e *Endpoint, sec *SealedSecrets) error {
		oldSig, oldFormat := e.Signature, e.Format
		set(&e.URL, p.URL)
		set(&e.Description, p.Description)
		set(&e.Events, p.Events)
		set(&e.Pages, p.Pages)
		set(&e.Format, p.Format)
		set(&e.Signature, p.Signature)
		set(&e.Ordering, p.Ordering)
		set(&e.Rate, p.Rate)
		set(&e.Burst, p.Burst)
		set(&e.Concurrency, p.Concurrency)
		set(&e.DeliverTestEvents, p.DeliverTestEvents)
		if p.Enabled != nil {
			setEnabled(e, *p.Enabled, now)
		}
		if err := s.checkEndpoint(ctx, e, false); err != nil {
			return err
		}
		if e.Signature != oldSig || (oldFormat == FormatMeta && e.Format == FormatStandard) {
			*sec = SealedSecrets{}
			e.PreviousPublicKey, e.PreviousSigningSecretExpiresAt = "", nil
			secret = s.newEndpointSecret(e, sec)
			if e.Format == FormatMeta {
				secret = "" // signed with the app's secret; shown when it turns standard
			}
		}
		e.UpdatedAt = now
		return nil
	})
	if err != nil {
		return Endpoint{}, "", err
	}
	return e, secret, nil
}

// setEnabled enables or disables e at now. Enabling (again, or while
// enabled) says the endpoint works: the workers reset its breaker when
// they see EnabledAt change, and its backlog's expiry counts from it.
func setEnabled(e *Endpoint, enabled bool, now time.Time) {
	switch {
	case enabled:
		e.EnabledAt = &now
		e.DisabledAt, e.DisabledReason = nil, ""
	case e.DisabledAt == nil:
		e.DisabledAt, e.DisabledReason = &now, "disabled through the admin API"
	}
}

// DeleteEndpoint deletes endpoint id of tenantID; its deliveries still to
// make are dropped.
func (s *Service) DeleteEndpoint(ctx context.Context, tenantID, id string) error {
	uid, err := parseEndpointID(id)
	if err != nil {
		return err
	}
	return s.store.DeleteEndpoint(ctx, tenantID, uid)
}

// RotateEndpointSecret gives endpoint id of tenantID a new signing secret
// (hmac) or key pair (ed25519) and returns the endpoint and the new
// whsec_ secret (empty for ed25519: the new public key is on the
// endpoint). The replaced one keeps signing, next to the new one, until
// PreviousSigningSecretExpiresAt (now + RotationGrace).
func (s *Service) RotateEndpointSecret(ctx context.Context, tenantID, id string) (Endpoint, string, error) {
	uid, err := parseEndpointID(id)
	if err != nil {
		return Endpoint{}, "", err
	}
	var secret string
	now := s.now().UTC()
	e, err := s.store.UpdateEndpoint(ctx, tenantID, uid, func(e *Endpoint, sec *SealedSecrets) error {
		var err error
		secret, err = s.rotate(e, sec, now)
		return err
	})
	if err != nil {
		return Endpoint{}, "", err
	}
	return e, secret, nil
}

// rotate moves e's current signing material to previous (signing until
// now + RotationGrace) and makes new; see RotateEndpointSecret.
func (s *Service) rotate(e *Endpoint, sec *SealedSecrets, now time.Time) (string, error) {
	if e.Format == FormatMeta {
		return "", conflict("format", "a meta endpoint is signed with its app's secret: rotate that (PATCH .../apps/{app_id} with app_secret)")
	}
	id := e.ID.String()
	old, err := s.keys.Open(sec.Current, SigningSecretBinding(id))
	if err != nil {
		return "", fmt.Errorf("open signing secret of endpoint %s: %w", event.FormatEndpointID(e.ID), err)
	}
	exp := now.Add(s.cfg.RotationGrace)
	prevPublic := e.PublicKey
	secret := s.newEndpointSecret(e, sec)
	sec.Previous = s.keys.Seal(old, PreviousSigningSecretBinding(id))
	sec.PreviousExpiresAt = &exp
	e.PreviousSigningSecretExpiresAt = &exp
	e.PreviousPublicKey = prevPublic
	e.UpdatedAt = now
	return secret, nil
}

// TenantApps lists the ids of tenantID's apps.
func (s *Service) TenantApps(ctx context.Context, tenantID string) ([]string, error) {
	return s.store.TenantApps(ctx, tenantID)
}

// TestTarget is what a test send to an endpoint needs: the endpoint with
// its keys opened, and for the Meta format the app whose secret signs it
// and a Page of the tenant to name in the envelope.
type TestTarget struct {
	Endpoint  *EndpointInfo
	AppID     string
	AppSecret []byte // nil when the tenant has no app
	PageID    string // the endpoint's first Page, else one of the tenant's, else "0"
	Object    Object
}

// TestTarget reads endpoint id of tenantID for a test send. Its keys are
// opened from the database, not the registry's copy: an endpoint created
// a moment ago can be tested at once.
func (s *Service) TestTarget(ctx context.Context, tenantID, id string) (TestTarget, error) {
	uid, err := parseEndpointID(id)
	if err != nil {
		return TestTarget{}, err
	}
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return TestTarget{}, notFound("endpoint")
	}
	var row endpointRow
	if err := s.store.db.WithContext(ctx).Where("tenant_id = ? AND id = ? AND deleted_at IS NULL", tid, uid).Take(&row).Error; err != nil {
		return TestTarget{}, storeErr("get endpoint", err, "endpoint")
	}
	ep := row.domain()
	info := &EndpointInfo{ID: ep.ID, TenantID: ep.TenantID, URL: ep.URL, Format: ep.Format, Signature: ep.Signature}
	var prevExp *time.Time
	if row.PreviousSigningSecretExpiresAt != nil && s.now().Before(*row.PreviousSigningSecretExpiresAt) {
		prevExp = row.PreviousSigningSecretExpiresAt
	}
	if err := openEndpointKeys(s.keys, info, row.SigningSecret, row.PreviousSigningSecret, prevExp); err != nil {
		return TestTarget{}, fmt.Errorf("open keys of endpoint %s: %w", id, err)
	}
	t := TestTarget{Endpoint: info, PageID: "0", Object: ObjectPage}
	var pages []pageRow
	if err := s.store.db.WithContext(ctx).Where("tenant_id = ?", tid).Order("page_id, app_id").Limit(MaxEndpointPages).Find(&pages).Error; err != nil {
		return TestTarget{}, storeErr("list pages", err)
	}
	for _, p := range pages {
		if len(ep.Pages) == 0 || slices.Contains(ep.Pages, p.PageID) {
			t.PageID, t.AppID, t.Object = p.PageID, p.AppID, Object(p.Object)
			break
		}
	}
	if t.AppID == "" {
		apps, err := s.store.TenantApps(ctx, tenantID)
		if err != nil {
			return TestTarget{}, err
		}
		if len(apps) > 0 {
			t.AppID = apps[0]
		}
	}
	if t.AppID != "" {
		var app appRow
		if err := s.store.db.WithContext(ctx).Where("app_id = ? AND tenant_id = ?", t.AppID, tid).Take(&app).Error; err != nil {
			return TestTarget{}, storeErr("get app", err, "app")
		}
		if t.AppSecret, err = s.keys.Open(app.Secret, AppSecretBinding(app.AppID)); err != nil {
			return TestTarget{}, fmt.Errorf("open secret of app %s: %w", app.AppID, err)
		}
	}
	if ep.Format == FormatMeta && t.AppSecret == nil {
		return TestTarget{}, conflict("format", "a meta endpoint's deliveries are signed with the app's secret: register an app first")
	}
	return t, nil
}

// DisabledEndpoints lists the paused endpoints of tenantID (every
// tenant's when empty), at most limit, for the console's overview.
func (s *Service) DisabledEndpoints(ctx context.Context, tenantID string, limit int) ([]Endpoint, error) {
	q := s.store.db.WithContext(ctx).Where("disabled_at IS NOT NULL AND deleted_at IS NULL")
	if tenantID != "" {
		tid, err := uuid.Parse(tenantID)
		if err != nil {
			return nil, notFound("tenant")
		}
		q = q.Where("tenant_id = ?", tid)
	}
	var rows []endpointRow
	if err := q.Order("disabled_at").Limit(limit).Find(&rows).Error; err != nil {
		return nil, storeErr("list disabled endpoints", err)
	}
	out := make([]Endpoint, len(rows))
	for i := range rows {
		out[i] = rows[i].domain()
	}
	return out, nil
}
