package main

import (
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postgate/postgate/internal/api"
	"github.com/postgate/postgate/internal/api/console"
	"github.com/postgate/postgate/internal/config"
	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/delivery"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/meta"
	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/session"
	"github.com/postgate/postgate/internal/tenant"
)

// services are the domain services every role shares: the tenant service
// (sealing with keys, minting with tokens) and the Meta set-up and health
// service (calling the Graph API unless GRAPH_API_URL is off), which
// proves app ownership for the tenant service.
type services struct {
	tenants *tenant.Service
	meta    *meta.Service
}

func buildServices(cfg config.Config, db *database.DB, events *event.Store, keys *secrets.Keyring, tokens *tenant.Tokens,
	log *slog.Logger, reg prometheus.Registerer) (services, error) {
	store := tenant.NewStore(db)
	svc, err := tenant.NewService(tenant.Config{
		PublicURL:             cfg.PublicURL,
		AllowPrivateCallbacks: cfg.CallbackAllowPrivate,
	}, store, keys, tokens, net.DefaultResolver, nil)
	if err != nil {
		return services{}, err
	}
	var client *meta.Client
	if cfg.GraphAPIURL != "" {
		if client, err = meta.NewClient(meta.ClientConfig{BaseURL: cfg.GraphAPIURL, Version: cfg.GraphAPIVersion}); err != nil {
			return services{}, err
		}
	}
	m := meta.NewService(meta.Config{
		PublicURL: cfg.PublicURL, Interval: cfg.HealthInterval, SilenceAfter: cfg.SilenceAfter,
	}, client, svc, store, events, db, log, reg)
	if client != nil {
		svc.SetProver(m)
	}
	return services{tenants: svc, meta: m}, nil
}

// buildAdmin wires the admin API: the services, the event service on
// events, the endpoint tester with dcfg's HTTP settings.
func buildAdmin(cfg config.Config, dcfg delivery.Config, s services, events *event.Store, tokens *tenant.Tokens,
	sessions *session.Store, log *slog.Logger) (*api.Admin, *console.Deps, error) {
	tester, err := delivery.NewTester(dcfg, s.tenants)
	if err != nil {
		return nil, nil, err
	}
	evs := event.NewService(events, s.tenants)
	admin := &api.Admin{Tenants: s.tenants, Meta: s.meta, Events: evs, Tokens: tokens, Tester: tester, Sessions: sessions, PublicURL: cfg.PublicURL}
	con := &console.Deps{Tenants: s.tenants, Events: evs, Meta: s.meta, Tester: tester, Tokens: tokens, Sessions: sessions,
		PublicURL: cfg.PublicURL, SessionTTL: cfg.ConsoleSessionTTL, Log: log}
	return admin, con, nil
}
