package tenant

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// Role is what an admin-API token may do.
type Role string

// The roles of SPEC: an admin reaches everything, a tenant only itself.
const (
	RoleAdmin  Role = "admin"
	RoleTenant Role = "tenant"
)

// Principal is the verified caller of the admin API.
type Principal struct {
	Subject  string
	Role     Role
	TenantID string // set for RoleTenant
	// ExpiresAt is the token's exp: a console session made from the
	// token ends no later.
	ExpiresAt time.Time
}

// CanAccess reports whether p may see tenantID's resources.
func (p Principal) CanAccess(tenantID string) bool {
	return p.Role == RoleAdmin || (p.Role == RoleTenant && p.TenantID == tenantID)
}

// Claims is the JWT payload of an admin-API token.
type Claims struct {
	jwt.RegisteredClaims
	Role     Role   `json:"role"`
	TenantID string `json:"tenant_id,omitempty"`
}

// TokenConfig is the HS256 key and the required iss and aud.
type TokenConfig struct {
	Secret   []byte
	Issuer   string
	Audience string
	Leeway   time.Duration // default 30s
	MaxTTL   time.Duration // default 1 year
}

// Tokens mints and verifies admin-API tokens.
type Tokens struct {
	cfg    TokenConfig
	parser *jwt.Parser
	now    func() time.Time
}

// NewTokens validates cfg and returns a token service.
func NewTokens(cfg TokenConfig, now func() time.Time) (*Tokens, error) {
	if len(cfg.Secret) < 32 {
		return nil, errors.New("token secret must be at least 32 bytes")
	}
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("token issuer and audience are required")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = 365 * 24 * time.Hour
	}
	if now == nil {
		now = time.Now
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(now),
	)
	return &Tokens{cfg: cfg, parser: p, now: now}, nil
}

// Issue mints a token for role (and tenantID for RoleTenant) valid for ttl.
func (t *Tokens) Issue(subject string, role Role, tenantID string, ttl time.Duration) (string, time.Time, error) {
	switch {
	case role != RoleAdmin && role != RoleTenant:
		return "", time.Time{}, fmt.Errorf("%w: role must be admin or tenant, got %q", ErrInvalid, role)
	case role == RoleTenant && tenantID == "":
		return "", time.Time{}, fmt.Errorf("%w: a tenant token needs a tenant id", ErrInvalid)
	case role == RoleAdmin && tenantID != "":
		return "", time.Time{}, fmt.Errorf("%w: an admin token takes no tenant id", ErrInvalid)
	case ttl <= 0 || ttl > t.cfg.MaxTTL:
		return "", time.Time{}, fmt.Errorf("%w: ttl must be between 1s and %s, got %s", ErrInvalid, t.cfg.MaxTTL, ttl)
	}
	if role == RoleTenant {
		// A tenant id is a UUID, compared in its lowercase form: a token
		// for anything else would verify and then reach nothing.
		u, err := uuid.Parse(tenantID)
		if err != nil {
			return "", time.Time{}, fmt.Errorf("%w: a tenant id is a UUID (as the admin API shows it), got %q", ErrInvalid, tenantID)
		}
		tenantID = u.String()
	}
	now := t.now().Truncate(time.Second)
	exp := now.Add(ttl)
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   subject,
			Issuer:    t.cfg.Issuer,
			Audience:  jwt.ClaimStrings{t.cfg.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
		Role:     role,
		TenantID: tenantID,
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.cfg.Secret)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return s, exp, nil
}

// ErrBadToken is returned for any token that does not verify; the reason is
// wrapped for logs but never shown to the caller in detail.
var ErrBadToken = errors.New("invalid token")

// Verify checks a token's algorithm, signature, exp, iss, aud and claims.
func (t *Tokens) Verify(token string) (Principal, error) {
	var c Claims
	if _, err := t.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return t.cfg.Secret, nil }); err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	return c.Principal()
}

// UnmarshalJSON refuses a token whose exp, iat or nbf is not a JSON
// number. RFC 7519 makes them NumericDates (numbers); jwt-go also reads a
// string holding a number, which this gateway never writes, so such a
// token was not minted here.
func (c *Claims) UnmarshalJSON(b []byte) error {
	var dates struct {
		Exp json.RawMessage `json:"exp"`
		Iat json.RawMessage `json:"iat"`
		Nbf json.RawMessage `json:"nbf"`
	}
	if err := json.Unmarshal(b, &dates); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		raw  json.RawMessage
	}{{"exp", dates.Exp}, {"iat", dates.Iat}, {"nbf", dates.Nbf}} {
		if len(d.raw) > 0 && string(d.raw) != "null" && d.raw[0] != '-' && (d.raw[0] < '0' || d.raw[0] > '9') {
			return fmt.Errorf("claim %s must be a NumericDate (a number of seconds), got %s", d.name, jsonKind(d.raw[0]))
		}
	}
	type plain Claims // without this method
	return json.Unmarshal(b, (*plain)(c))
}

// jsonKind names the JSON type a value starting with b has.
func jsonKind(b byte) string {
	switch b {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	default:
		return "a boolean"
	}
}

// Principal checks the role claims and returns the caller they describe.
func (c Claims) Principal() (Principal, error) {
	var exp time.Time
	if c.ExpiresAt != nil {
		exp = c.ExpiresAt.Time
	}
	switch {
	case c.Role == RoleAdmin:
		return Principal{Subject: c.Subject, Role: RoleAdmin, ExpiresAt: exp}, nil
	case c.Role == RoleTenant && c.TenantID != "":
		return Principal{Subject: c.Subject, Role: RoleTenant, TenantID: c.TenantID, ExpiresAt: exp}, nil
	default:
		return Principal{}, fmt.Errorf("%w: role %q with tenant_id %q", ErrBadToken, c.Role, c.TenantID)
	}
}
