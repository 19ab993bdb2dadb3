// Package session owns the console's sign-ins: sessions (a random token
// in an HttpOnly cookie, stored as its SHA-256 in console_sessions, so
// they survive restarts, work on every replica and can be revoked) and
// one-time sign-in links (console-link, portal links), stored the same
// way and used up by the sign-in they make.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Roles, as in admin-API tokens.
const (
	RoleAdmin  = "admin"
	RoleTenant = "tenant"
)

// ErrNoSession: no such session or link, expired, or (a link) used.
var ErrNoSession = errors.New("no such session or link, or it expired")

// Session is a signed-in console user.
type Session struct {
	Role      string
	TenantID  string // set for RoleTenant
	Subject   string
	CSRF      string // the token every POST of this session carries
	ExpiresAt time.Time
}

// Admin reports whether the session may reach every tenant.
func (s Session) Admin() bool { return s.Role == RoleAdmin }

// Reaches reports whether the session may see tenantID.
func (s Session) Reaches(tenantID string) bool { return s.Admin() || s.TenantID == tenantID }

// Store keeps sessions and links in Postgres.
type Store struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

// NewStore returns the store; now nil means time.Now.
func NewStore(pool *pgxpool.Pool, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{pool: pool, now: now}
}

func newToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("session: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func check(role, tenantID string) (*uuid.UUID, error) {
	switch role {
	case RoleAdmin:
		return nil, nil
	case RoleTenant:
		id, err := uuid.Parse(tenantID)
		if err != nil {
			return nil, fmt.Errorf("session: tenant id %q: %w", tenantID, err)
		}
		return &id, nil
	}
	return nil, fmt.Errorf("session: unknown role %q", role)
}

// Create starts a session for ttl and returns it with its cookie token.
func (s *Store) Create(ctx context.Context, role, tenantID, subject string, ttl time.Duration) (Session, string, error) {
	tid, err := check(role, tenantID)
	if err != nil {
		return Session{}, "", err
	}
	token := newToken()
	sess := Session{Role: role, TenantID: tenantID, Subject: subject, CSRF: newToken(), ExpiresAt: s.now().Add(ttl).UTC()}
	if _, err := s.pool.Exec(ctx, `INSERT INTO console_sessions (id, role, tenant_id, subject, csrf, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
		hash(token), role, tid, subject, sess.CSRF, sess.ExpiresAt); err != nil {
		return Session{}, "", fmt.Errorf("create session: %w", err)
	}
	return sess, token, nil
}

// Get reads the live session of a cookie token.
func (s *Store) Get(ctx context.Context, token string) (Session, error) {
	if token == "" || len(token) > 100 {
		return Session{}, ErrNoSession
	}
	var sess Session
	var tid *string
	err := s.pool.QueryRow(ctx, `SELECT role, tenant_id::text, subject, csrf, expires_at FROM console_sessions WHERE id = $1 AND expires_at > $2`,
		hash(token), s.now()).Scan(&sess.Role, &tid, &sess.Subject, &sess.CSRF, &sess.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, fmt.Errorf("read session: %w", err)
	}
	if tid != nil {
		sess.TenantID = *tid
	}
	return sess, nil
}

// Delete ends the session of a cookie token (sign-out), and drops
// expired sessions and links on the way.
func (s *Store) Delete(ctx context.Context, token string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM console_sessions WHERE id = $1 OR expires_at < $2`, hash(token), s.now()); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM console_links WHERE expires_at < $1`, s.now().Add(-24*time.Hour)); err != nil {
		return fmt.Errorf("drop expired links: %w", err)
	}
	return nil
}

// CreateLink makes a one-time sign-in link token valid for ttl.
func (s *Store) CreateLink(ctx context.Context, role, tenantID, subject string, ttl time.Duration) (string, time.Time, error) {
	tid, err := check(role, tenantID)
	if err != nil {
		return "", time.Time{}, err
	}
	token := newToken()
	exp := s.now().Add(ttl).UTC()
	if _, err := s.pool.Exec(ctx, `INSERT INTO console_links (id, role, tenant_id, subject, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		hash(token), role, tid, subject, exp); err != nil {
		return "", time.Time{}, fmt.Errorf("create sign-in link: %w", err)
	}
	return token, exp, nil
}

// LinkPath is where a link token signs in: the console's landing page.
const LinkPath = "/console/link/"

// LinkURL is the sign-in link of token on the gateway at publicURL.
func LinkURL(publicURL, token string) string {
	return strings.TrimRight(publicURL, "/") + LinkPath + token
}

// LinkValid reports whether a link token can still sign in (the landing
// page says so before its button is pressed; it does not use it up).
func (s *Store) LinkValid(ctx context.Context, token string) bool {
	if token == "" || len(token) > 100 {
		return false
	}
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT true FROM console_links WHERE id = $1 AND used_at IS NULL AND expires_at > $2`, hash(token), s.now()).Scan(&ok)
	return err == nil && ok
}

// UseLink uses a link up and starts its session for ttl, in one
// transaction: a link signs in once.
func (s *Store) UseLink(ctx context.Context, token string, ttl time.Duration) (Session, string, error) {
	if token == "" || len(token) > 100 {
		return Session{}, "", ErrNoSession
	}
	var sess Session
	var cookie string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var tid *string
		err := tx.QueryRow(ctx, `UPDATE console_links SET used_at = $2 WHERE id = $1 AND used_at IS NULL AND expires_at > $2
			RETURNING role, tenant_id::text, subject`, hash(token), s.now()).Scan(&sess.Role, &tid, &sess.Subject)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNoSession
		}
		if err != nil {
			return fmt.Errorf("use sign-in link: %w", err)
		}
		if tid != nil {
			sess.TenantID = *tid
		}
		cookie = newToken()
		sess.CSRF, sess.ExpiresAt = newToken(), s.now().Add(ttl).UTC()
		_, err = tx.Exec(ctx, `INSERT INTO console_sessions (id, role, tenant_id, subject, csrf, expires_at) VALUES ($1, $2, $3::uuid, $4, $5, $6)`,
			hash(cookie), sess.Role, tid, sess.Subject, sess.CSRF, sess.ExpiresAt)
		return err
	})
	if err != nil {
		return Session{}, "", err
	}
	return sess, cookie, nil
}
