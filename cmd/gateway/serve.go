package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/postgate/postgate/internal/api"
	"github.com/postgate/postgate/internal/config"
	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/delivery"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/meta"
	"github.com/postgate/postgate/internal/redisdb"
	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/session"
	"github.com/postgate/postgate/internal/tenant"
	"github.com/postgate/postgate/internal/webhook"
)

func runServe(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := newFlagSet("serve", stdout)
	loader := config.Bind(fs, getenv)
	role := fs.String("role", "all", "all, ingress (webhooks and admin API) or worker (deliveries)")
	dev := fs.Bool("dev", false, "local development: generate secrets, create the database if missing, PUBLIC_URL from HTTP_ADDR, allow private callbacks, text logs, print a token")
	migrate := fs.Bool("migrate", true, "apply pending migrations at start")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *role != "all" && *role != "ingress" && *role != "worker" {
		return fmt.Errorf("--role must be all, ingress or worker, got %q", *role)
	}
	if *dev {
		if err := applyDev(loader, setIn(fs, getenv)); err != nil {
			return err
		}
	}
	cfg, err := loader.Load()
	if err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	if err := cfg.Require(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	log := newLogger(cfg, stdout)
	log.Info("starting", append([]any{"version", version, "role", *role, "dev", *dev}, loader.LogAttrs()...)...)

	// Listen first: a taken port should fail before anything else starts.
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	defer httpLn.Close()
	metricsLn, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("listen on METRICS_ADDR %s: %w", cfg.MetricsAddr, err)
	}
	defer metricsLn.Close()

	if *dev {
		// `make run` with a DATABASE_URL of one's own: make it, as the
		// tests make theirs, rather than fail on a name nobody created.
		created, err := database.CreateIfMissing(ctx, cfg.DatabaseURL)
		if err != nil {
			return err
		}
		if created {
			log.Info("created the database DATABASE_URL names")
		}
	}
	db, err := database.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := waitFor(ctx, log, "postgres", db.Ping); err != nil {
		return err
	}
	if *migrate {
		m, err := database.NewMigrator(db.SQL)
		if err != nil {
			return err
		}
		res, err := m.Up(ctx)
		if err != nil {
			return err
		}
		log.Info("migrations applied", "count", len(res))
	}
	rdb, err := redisdb.Open(cfg.RedisURL, cfg.RedisClusterMode)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if err := redisdb.Ping(ctx, rdb); err != nil {
		// Redis is an optimisation for the ingress: start without it and
		// let readiness report it.
		log.Warn("redis unreachable at start; dedup falls back to postgres", "err", err)
	}

	keys, err := secrets.NewKeyring(cfg.SecretKey, cfg.SecretKeyPrevious)
	if err != nil {
		return err
	}
	tokens, err := tenant.NewTokens(tenant.TokenConfig{
		Secret: []byte(cfg.AdminJWTSecret), Issuer: cfg.AdminJWTIssuer, Audience: cfg.AdminJWTAudience,
	}, nil)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	deps := api.Deps{
		Log:     log,
		Metrics: reg,
		Checkers: []api.Checker{
			{Name: "postgres", Check: db.Ping},
			{Name: "redis", Check: func(ctx context.Context) error { return redisdb.Ping(ctx, rdb) }},
		},
	}
	var background sync.WaitGroup
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()

	// The registry (tenants, apps, Pages, endpoints, keys) serves both roles.
	registry := tenant.NewRegistry(tenant.RegistryConfig{}, db.Pool, keys, log, nil)
	if err := registry.Load(ctx); err != nil {
		return err
	}
	background.Go(func() { registry.Run(bgCtx) })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "postgate_endpoints_disabled",
		Help: "Endpoints whose deliveries are paused (they answered 410 Gone, or an operator disabled them); their events wait.",
	}, func() float64 { return float64(registry.DisabledEndpoints()) }))
	deliveryCfg := delivery.Config{
		Timeout:           cfg.CallbackTimeout,
		RetrySchedule:     cfg.RetrySchedule,
		Concurrency:       cfg.DeliveryConcurrency,
		Lease:             cfg.DeliveryLease,
		TenantRate:        cfg.TenantRate,
		TenantBurst:       cfg.TenantBurst,
		TenantConcurrency: cfg.TenantConcurrency,
		BreakerFailures:   cfg.BreakerFailures,
		BreakerOpenFor:    cfg.BreakerOpenFor,
		BreakerProbes:     cfg.BreakerProbes,
		AllowPrivate:      cfg.CallbackAllowPrivate,
		RetainDelivered:   cfg.RetentionDelivered,
		RetainDead:        cfg.RetentionDead,
		ShutdownTimeout:   cfg.ShutdownTimeout,
		UserAgent:         "Postgate/" + version,
	}

	// The events, their delivery queue and attempts, and the quarantine.
	events := event.NewStore(db)
	svcs, err := buildServices(cfg, db, events, keys, tokens, log, reg)
	if err != nil {
		return err
	}
	// Every replica may check Meta's subscriptions; an advisory lock lets
	// one at a time do it.
	background.Go(func() { svcs.meta.Run(bgCtx) })

	var ingestor *webhook.Ingestor
	if *role != "worker" {
		sigFailures := meta.NewSignatureFailures(db, log, nil)
		background.Go(func() { sigFailures.Run(bgCtx, 5*time.Second) })
		ingestor, err = webhook.NewIngestor(webhook.Config{DedupTTL: cfg.DedupTTL, SignatureFailed: sigFailures.Add}, registry, events, rdb, reg, log)
		if err != nil {
			return err
		}
		background.Go(func() { ingestor.Run(bgCtx) })
		deps.Ingest = ingestor
		if deps.Admin, deps.Console, err = buildAdmin(cfg, deliveryCfg, svcs, events, tokens, session.NewStore(db.Pool, nil), log); err != nil {
			return err
		}
	}
	// Workers get their own context: they stop claiming when shutdown
	// begins and drain (in-flight attempts, within SHUTDOWN_TIMEOUT) while
	// the HTTP server drains.
	workerCtx, stopWorker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWorker()
	var workerDone chan struct{}
	if *role != "ingress" {
		worker, err := delivery.New(deliveryCfg, registry, events, rdb, reg, log)
		if err != nil {
			return err
		}
		workerDone = make(chan struct{})
		go func() {
			worker.Run(workerCtx)
			close(workerDone)
		}()
	}

	srv := api.New(api.Config{MaxBodyBytes: cfg.MaxBodyBytes, Version: version}, deps)
	metricsSrv := &http.Server{Handler: metricsMux(reg), ReadHeaderTimeout: 5 * time.Second}
	serveErr := make(chan error, 2)
	go func() { serveErr <- srv.Serve(httpLn) }()
	go func() {
		if err := metricsSrv.Serve(metricsLn); !errors.Is(err, http.ErrServerClosed) {
			serveErr <- fmt.Errorf("metrics server: %w", err)
		}
	}()
	log.Info("listening", "http", httpLn.Addr().String(), "metrics", metricsLn.Addr().String())

	if *dev {
		tok, _, err := tokens.Issue("dev-admin", tenant.RoleAdmin, "", 24*time.Hour)
		if err != nil {
			return err
		}
		link := ""
		if *role != "worker" {
			l, _, err := session.NewStore(db.Pool, nil).CreateLink(ctx, session.RoleAdmin, "", "dev-admin", time.Hour)
			if err != nil {
				return err
			}
			link = session.LinkURL(cfg.PublicURL, l)
		}
		printQuickStart(stdout, cfg, tok, link)
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "delay", cfg.ShutdownDelay)
	case runErr = <-serveErr:
		log.Error("server stopped", "err", runErr)
	}

	// Readiness off, a short delay for load balancers to notice, then stop
	// taking requests and wait for in-flight ones, then stop the rest.
	srv.Drain()
	stopWorker()
	if runErr == nil && cfg.ShutdownDelay > 0 {
		time.Sleep(cfg.ShutdownDelay)
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("http shutdown", "err", err)
	}
	if workerDone != nil {
		<-workerDone // bounded by SHUTDOWN_TIMEOUT inside Run
	}
	_ = metricsSrv.Shutdown(shutdownCtx)
	stopBackground()
	background.Wait()
	log.Info("stopped")
	return runErr
}

// metricsMux serves /metrics and, on the same internal port, the Go
// profiler (/debug/pprof/), so an operator can profile a live gateway
// without exposing it on the public HTTP_ADDR.
func metricsMux(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// waitFor retries check for a short while at start, so a gateway started
// together with its database (docker compose, a fresh pod) does not crash.
func waitFor(ctx context.Context, log *slog.Logger, name string, check func(context.Context) error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := check(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s is unreachable: %w", name, err)
		}
		log.Warn(name+" unreachable, retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
