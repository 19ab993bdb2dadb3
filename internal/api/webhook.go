package api

import (
	"context"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/postgate/postgate/internal/webhook"
)

// Ingestor is what the webhook routes need from the ingest use case.
type Ingestor interface {
	VerifySubscription(appID, mode, token string) bool
	Ingest(ctx context.Context, r webhook.Request) webhook.Result
}

// webhookVerify answers Meta's subscription check: the challenge, byte for
// byte, as text/plain; 403 for anything else. The lookup keeps nothing of
// the query strings it is handed.
func (s *Server) webhookVerify(c *fiber.Ctx) error {
	mode := c.Query("hub.mode")
	token := c.Query("hub.verify_token")
	challenge := c.Query("hub.challenge")
	c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
	if challenge == "" || !s.deps.Ingest.VerifySubscription(c.Params("app_id"), mode, token) {
		return c.Status(fiber.StatusForbidden).SendString("verification failed")
	}
	return c.Status(fiber.StatusOK).SendString(challenge)
}

// webhookNotify hands one POST to the ingest use case and answers with the
// status of its outcome. The body was capped by BodyLimit (413) before this
// handler runs.
func (s *Server) webhookNotify(c *fiber.Ctx) error {
	ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.WebhookTimeout)
	defer cancel()
	// Nothing is copied on this hot path: Fiber's strings and body point
	// into the connection's buffer, which the next request overwrites, and
	// Ingest keeps none of them past its return (webhook.Request's
	// contract; its labels and log attributes are the registry's copies).
	res := s.deps.Ingest.Ingest(ctx, webhook.Request{
		AppID:        c.Params("app_id"),
		Body:         c.Body(),
		Signature256: c.Get("X-Hub-Signature-256"),
		Signature1:   c.Get("X-Hub-Signature"),
		ReceivedAt:   time.Now(),
	})
	c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
	return c.Status(webhookStatus(res.Outcome)).SendString(res.Message)
}

// webhookStatus is the HTTP status of an ingest outcome: SPEC's bad-input
// table. Anything not refused is a 200, because a non-200 to a genuine
// Meta request puts every tenant of that app at risk of being unsubscribed.
func webhookStatus(o webhook.Outcome) int {
	switch o {
	case webhook.OutcomeBadSignature:
		return fiber.StatusUnauthorized
	case webhook.OutcomeNotJSON:
		return fiber.StatusBadRequest
	case webhook.OutcomeUnavailable:
		return fiber.StatusServiceUnavailable
	default:
		return fiber.StatusOK
	}
}
