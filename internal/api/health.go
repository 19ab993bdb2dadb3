package api

import (
	"context"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
)

// healthz answers while the process runs: liveness, no dependencies.
func (s *Server) healthz(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok", "version": s.cfg.Version})
}

// readyz answers 200 only when every dependency answers and the server is
// not draining; otherwise 503 naming what failed.
func (s *Server) readyz(c *fiber.Ctx) error {
	if s.draining.Load() {
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "draining"})
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), 2*time.Second)
	defer cancel()
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(s.deps.Checkers))
	for _, ch := range s.deps.Checkers {
		go func() { results <- result{ch.Name, ch.Check(ctx)} }()
	}
	failed := map[string]string{}
	var reasons []string
	for range s.deps.Checkers {
		r := <-results
		if r.err != nil {
			failed[r.name] = "unreachable"
			reasons = append(reasons, r.name+": "+r.err.Error())
		}
	}
	s.logReadiness(strings.Join(reasons, "; "))
	if len(failed) > 0 {
		return c.Status(fiber.StatusServiceUnavailable).JSON(fiber.Map{"status": "unavailable", "failed": failed})
	}
	return c.JSON(fiber.Map{"status": "ready"})
}

// logReadiness logs when readiness changes, not on every probe.
func (s *Server) logReadiness(reason string) {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	if reason == s.lastReady {
		return
	}
	if reason == "" {
		s.log.Info("ready again")
	} else {
		s.log.Warn("not ready", "reason", reason)
	}
	s.lastReady = reason
}
