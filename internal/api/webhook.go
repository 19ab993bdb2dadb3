package api

import (
	"context"
	"strings"
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
// byte, as text/plain; 403 for anything else. What it hands the domain is
// copied, as in webhookNotify.
func (s *Server) webhookVerify(c *fiber.Ctx) error {
	mode := c.Query("hub.mode")
	token := c.Query("hub.verify_token")
	challenge := c.Query("hub.challenge")
	c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
	if challenge == "" || !s.deps.Ingest.VerifySubscription(strings.Clone(c.Params("app_id")), strings.Clone(mode), strings.Clone(token)) {
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
	// The strings are copies: Fiber's point into the connection's buffer,
	// which the next request overwrites, and the domain may keep what it is
	// handed (a metric label, a log attribute). The body is not copied: it
	// can be megabytes, and Ingest does not keep it past its return.
	res := s.deps.Ingest.Ingest(ctx, webhook.Request{
		AppID:        strings.Clone(c.Params("app_id")),
		Body:         c.Body(),
		Signature256: strings.Clone(c.Get("X-Hub-Signature-256")),
		Signature1:   strings.Clone(c.Get("X-Hub-Signature")),
		ReceivedAt:   time.Now(),
	})
	c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
	return c.Status(res.Outcome.Status()).SendString(res.Message)
}
