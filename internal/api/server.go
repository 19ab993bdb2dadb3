package api

import (
	"github.com/postgate/postgate/internal/api/console"

	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// Checker is one dependency /readyz checks, such as Postgres or Redis.
type Checker struct {
	Name  string
	Check func(ctx context.Context) error
}

// Config is the HTTP server's own configuration.
type Config struct {
	MaxBodyBytes int
	Version      string
	// ReadTimeout bounds reading one request (headers and body).
	ReadTimeout time.Duration
	// WebhookTimeout bounds one webhook POST from first byte to answer; it
	// stays under Meta's 5 s so Meta sees our 503, not its own timeout.
	WebhookTimeout time.Duration
}

func (c *Config) defaults() {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 8 << 20
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 10 * time.Second
	}
	if c.WebhookTimeout == 0 {
		c.WebhookTimeout = 4 * time.Second
	}
	if c.Version == "" {
		c.Version = "dev"
	}
}

// Deps are the services the routes call. Nil ones leave their routes out
// (a worker-only process serves health only).
type Deps struct {
	Log      *slog.Logger
	Metrics  prometheus.Registerer
	Checkers []Checker
	Ingest   Ingestor
	Admin    *Admin
	// Console, when set, serves the web console at /console/.
	Console *console.Deps
}

// Server is the Fiber app with its readiness state.
type Server struct {
	cfg      Config
	log      *slog.Logger
	app      *fiber.App
	deps     Deps
	draining atomic.Bool
	metrics  *httpMetrics

	readyMu   sync.Mutex
	lastReady string // last readiness failure reason, to log changes once
}

// New builds the server and registers every route.
func New(cfg Config, d Deps) *Server {
	cfg.defaults()
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = prometheus.NewRegistry()
	}
	s := &Server{cfg: cfg, log: d.Log, deps: d, metrics: newHTTPMetrics(d.Metrics)}
	s.app = fiber.New(fiber.Config{
		AppName:               "postgate",
		BodyLimit:             cfg.MaxBodyBytes,
		ReadTimeout:           cfg.ReadTimeout,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           90 * time.Second,
		DisableStartupMessage: true,
		ReadBufferSize:        16 << 10,
		ErrorHandler:          s.errorHandler,
	})
	s.routes()
	return s
}

// App exposes the Fiber app to tests (app.Test).
func (s *Server) App() *fiber.App { return s.app }

// Serve answers on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.app.Listener(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Drain turns readiness off: load balancers stop routing new requests here
// while in-flight ones finish.
func (s *Server) Drain() { s.draining.Store(true) }

// Shutdown stops accepting connections and waits for in-flight requests
// until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.Drain()
	return s.app.ShutdownWithContext(ctx)
}

// errorHandler answers errors that escape handlers: Fiber's own (404, 405,
// 413 for a body over BodyLimit) keep their status with a plain message;
// anything else is a 500 with a generic text, logged with detail.
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	var fe *fiber.Error
	if errors.As(err, &fe) {
		c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
		return c.Status(fe.Code).SendString(fe.Message)
	}
	s.log.Error("request failed", "method", c.Method(), "path", c.Route().Path, "err", err)
	c.Set(fiber.HeaderContentType, fiber.MIMETextPlainCharsetUTF8)
	return c.Status(fiber.StatusInternalServerError).SendString("internal error")
}
