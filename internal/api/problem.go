package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"

	"github.com/danielgtaylor/huma/v2"
	"github.com/gofiber/fiber/v2"

	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/meta"
	"github.com/postgate/postgate/internal/tenant"
)

// problemStatus is the one table from domain errors to HTTP statuses. Any
// other error is a 500 with a generic message and an error id.
var problemStatus = []struct {
	err    error
	status int
}{
	{tenant.ErrNotFound, http.StatusNotFound},
	{tenant.ErrConflict, http.StatusConflict},
	{tenant.ErrInvalid, http.StatusUnprocessableEntity},
	{event.ErrNotFound, http.StatusNotFound},
	{event.ErrInvalid, http.StatusUnprocessableEntity},
	{tenant.ErrUpstream, http.StatusBadGateway},
	{meta.ErrOff, http.StatusConflict},
	{meta.ErrMeta, http.StatusBadGateway},
}

// fieldOf names the input field a domain error is about, if any, and says
// what is wrong with it.
func fieldOf(err error) (field, msg string, ok bool) {
	var tfe *tenant.FieldError
	if errors.As(err, &tfe) {
		return tfe.Field, tfe.Message, true
	}
	var efe *event.FieldError
	if errors.As(err, &efe) {
		return efe.Field, efe.Message, true
	}
	return "", "", false
}

// problem turns a service error into an RFC 9457 problem (huma writes it as
// application/problem+json). A *tenant.FieldError names its field under
// location in ("body" or "query"), as huma's own validation errors do.
//
// A 5xx never shows the error: it shows an error id, which the log line
// with the detail carries too.
func problem(ctx context.Context, log *slog.Logger, err error, in string) error {
	for _, m := range problemStatus {
		if !errors.Is(err, m.err) {
			continue
		}
		if field, msg, ok := fieldOf(err); ok {
			detail := "validation failed"
			if m.status != http.StatusUnprocessableEntity {
				detail = msg
			}
			return huma.NewError(m.status, detail, &huma.ErrorDetail{Location: in + "." + field, Message: msg})
		}
		return huma.NewError(m.status, err.Error())
	}
	id := newErrorID()
	attrs := append(requestAttrs(ctx), slog.String("error_id", id), slog.Any("err", err))
	log.LogAttrs(ctx, slog.LevelError, "admin request failed", attrs...)
	return internalError(id)
}

func internalError(id string) *huma.ErrorModel {
	return &huma.ErrorModel{
		Status:   http.StatusInternalServerError,
		Title:    http.StatusText(http.StatusInternalServerError),
		Detail:   "internal error; the operator can find it in the logs under error id " + id,
		Instance: "urn:postgate:error:" + id,
	}
}

func newErrorID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// scrubErrorValues drops the offending input from validation errors
// before they are written: the field could be an app secret, a verify
// token or a callback URL with a password in it. Location and message
// still say what is wrong.
func scrubErrorValues(_ huma.Context, _ string, v any) (any, error) {
	if em, ok := v.(*huma.ErrorModel); ok {
		for _, d := range em.Errors {
			if d != nil {
				d.Value = nil
			}
		}
	}
	return v, nil
}

// adminNoRoute answers a request under /admin/v1 that no route took, as a
// problem like every other admin error. It is mounted with Use after every
// admin route, so it runs only when none matched; c.Next() then lets Fiber
// tell a path that exists with other methods (ErrMethodNotAllowed, with
// those methods already in the Allow header) from one that does not.
func adminNoRoute(c *fiber.Ctx) error {
	err := c.Next()
	var fe *fiber.Error
	if err == nil || !errors.As(err, &fe) || (fe.Code != fiber.StatusMethodNotAllowed && fe.Code != fiber.StatusNotFound) {
		return err
	}
	detail := "no such admin API route; see /admin/v1/openapi.json"
	if fe.Code == fiber.StatusMethodNotAllowed {
		detail = "this admin API route does not take " + methodLabel(c.Method()) + "; the Allow header lists the methods it takes"
	}
	c.Set(fiber.HeaderContentType, "application/problem+json")
	return c.Status(fe.Code).JSON(huma.ErrorModel{
		Title:  http.StatusText(fe.Code),
		Status: fe.Code,
		Detail: detail,
	}, "application/problem+json")
}
