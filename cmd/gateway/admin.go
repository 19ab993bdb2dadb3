package main

import (
	"net"

	"github.com/postgate/postgate/internal/api"
	"github.com/postgate/postgate/internal/config"
	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/delivery"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/tenant"
)

// buildAdmin wires the admin API's services: the tenant store and service
// on db, sealing with keys, minting and verifying with tokens; the event
// service on events; the endpoint tester with dcfg's HTTP settings.
func buildAdmin(cfg config.Config, dcfg delivery.Config, db *database.DB, events *event.Store, keys *secrets.Keyring, tokens *tenant.Tokens) (*api.Admin, error) {
	svc, err := tenant.NewService(tenant.Config{
		PublicURL:             cfg.PublicURL,
		AllowPrivateCallbacks: cfg.CallbackAllowPrivate,
	}, tenant.NewStore(db), keys, tokens, net.DefaultResolver, nil)
	if err != nil {
		return nil, err
	}
	tester, err := delivery.NewTester(dcfg, svc)
	if err != nil {
		return nil, err
	}
	return &api.Admin{Tenants: svc, Events: event.NewService(events, svc), Tokens: tokens, Tester: tester, PublicURL: cfg.PublicURL}, nil
}
