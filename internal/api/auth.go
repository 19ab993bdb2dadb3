package api

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/tenant"
)

// MaxAuthorizationBytes caps the Authorization header: a longer one is
// refused before any parsing.
const MaxAuthorizationBytes = 4 << 10

// access is who may call an admin operation (Operation.Metadata["access"]).
type access string

const (
	// accessAdmin: admin tokens only; a tenant token gets 403.
	accessAdmin access = "admin"
	// accessTenant: admin tokens, and tenant tokens for their own
	// {tenant_id} (another tenant's answers 404, as if it did not exist).
	accessTenant access = "tenant"
)

const metaAccess = "access"

type principalKey struct{}

type requestInfoKey struct{}

// requestInfo is what every log line of an admin request carries.
type requestInfo struct {
	requestID string
	operation string
	tenantID  string
	subject   string
}

func requestAttrs(ctx context.Context) []slog.Attr {
	ri, _ := ctx.Value(requestInfoKey{}).(*requestInfo)
	if ri == nil {
		return nil
	}
	attrs := []slog.Attr{slog.String("request_id", ri.requestID), slog.String("op", ri.operation)}
	if ri.tenantID != "" {
		attrs = append(attrs, slog.String("tenant_id", ri.tenantID))
	}
	if ri.subject != "" {
		attrs = append(attrs, slog.String("sub", ri.subject))
	}
	return attrs
}

// authenticator is the admin API's huma middleware: it verifies the bearer
// token, enforces the operation's access, and logs every change.
type authenticator struct {
	api    huma.API
	tokens *tenant.Tokens
	log    *slog.Logger
}

func (a *authenticator) middleware(ctx huma.Context, next func(huma.Context)) {
	op := ctx.Operation()
	ri := &requestInfo{requestID: requestID(ctx.Header("X-Request-Id")), operation: op.OperationID}
	ctx.SetHeader("X-Request-Id", ri.requestID)
	if tid := ctx.Param("tenant_id"); tid != "" {
		ri.tenantID = normalizeID(tid)
	}
	ctx = huma.WithValue(ctx, requestInfoKey{}, ri)

	header := ctx.Header("Authorization")
	if header == "" {
		a.deny(ctx, http.StatusUnauthorized, `Bearer realm="postgate"`, "missing bearer token", "no Authorization header")
		return
	}
	scheme, token, ok := strings.Cut(header, " ")
	token = strings.TrimSpace(token)
	switch {
	case len(header) > MaxAuthorizationBytes:
		a.deny(ctx, http.StatusUnauthorized, `Bearer realm="postgate", error="invalid_token"`, "invalid bearer token", "Authorization header too long")
		return
	case !ok || !strings.EqualFold(scheme, "Bearer") || token == "":
		a.deny(ctx, http.StatusUnauthorized, `Bearer realm="postgate", error="invalid_request"`, "missing bearer token", "Authorization is not Bearer")
		return
	}
	p, err := a.tokens.Verify(token)
	if err != nil {
		// err says why (expired, wrong audience...) and never holds the token.
		a.deny(ctx, http.StatusUnauthorized, `Bearer realm="postgate", error="invalid_token"`, "invalid bearer token", err.Error())
		return
	}
	ri.subject = p.Subject
	acc, _ := op.Metadata[metaAccess].(access)
	switch {
	case acc == accessAdmin && p.Role != tenant.RoleAdmin:
		a.deny(ctx, http.StatusForbidden, "", "this operation needs an admin token", "tenant token on an admin operation")
		return
	case ri.tenantID != "" && !p.CanAccess(ri.tenantID):
		// Another tenant's resources do not exist for this caller.
		a.deny(ctx, http.StatusNotFound, "", "tenant not found", "tenant token for another tenant")
		return
	}
	a.serve(huma.WithValue(ctx, principalKey{}, p), next)
	if op.Method != http.MethodGet && ctx.Status() < 400 {
		a.log.LogAttrs(ctx.Context(), slog.LevelInfo, "admin change",
			append(requestAttrs(ctx.Context()), slog.Int("status", ctx.Status()))...)
	}
}

// serve runs the handler, turning a panic into a logged 500 problem.
func (a *authenticator) serve(ctx huma.Context, next func(huma.Context)) {
	defer func() {
		if r := recover(); r != nil {
			id := newErrorID()
			a.log.LogAttrs(ctx.Context(), slog.LevelError, "admin handler panicked",
				append(requestAttrs(ctx.Context()), slog.String("error_id", id), slog.Any("panic", r))...)
			_ = huma.WriteErr(a.api, ctx, http.StatusInternalServerError, internalError(id).Detail)
		}
	}()
	next(ctx)
}

func (a *authenticator) deny(ctx huma.Context, status int, challenge, msg, reason string) {
	if challenge != "" {
		ctx.SetHeader("WWW-Authenticate", challenge)
	}
	level := slog.LevelInfo
	if status == http.StatusNotFound {
		level = slog.LevelDebug
	}
	a.log.LogAttrs(ctx.Context(), level, "admin request refused",
		append(requestAttrs(ctx.Context()), slog.Int("status", status), slog.String("reason", reason))...)
	_ = huma.WriteErr(a.api, ctx, status, msg)
}

// normalizeID lowercases a uuid so that an upper-case spelling of a
// tenant's own id is still its own; anything else is returned as a copy
// (s is a path parameter in Fiber's reused buffer, and the request info
// that keeps it travels in the context).
func normalizeID(s string) string {
	if u, err := uuid.Parse(s); err == nil {
		return u.String()
	}
	return strings.Clone(s)
}

// requestID keeps a copy of a caller's X-Request-Id when it is short and
// printable, else makes one.
func requestID(given string) string {
	if n := len(given); n > 0 && n <= 128 && strings.IndexFunc(given, func(r rune) bool { return r < 0x21 || r > 0x7e }) < 0 {
		return strings.Clone(given)
	}
	return newErrorID()
}
