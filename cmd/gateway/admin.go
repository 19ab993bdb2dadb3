package main

import (
	"log/slog"
	"net"

	"github.com/postgate/postgate/internal/api"
	"github.com/postgate/postgate/internal/config"
	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/tenant"
)

// buildAdmin wires the admin API's services: the tenant store and service
// on db, sealing with keys, minting and verifying with tokens.
func buildAdmin(cfg config.Config, db *database.DB, keys *secrets.Keyring, tokens *tenant.Tokens, log *slog.Logger) (*api.Admin, error) {
	svc, err := tenant.NewService(tenant.Config{
		PublicURL:             cfg.PublicURL,
		AllowPrivateCallbacks: cfg.CallbackAllowPrivate,
	}, tenant.NewStore(db), keys, tokens, net.DefaultResolver, nil)
	if err != nil {
		return nil, err
	}
	_ = log // the server's logger (api.Deps.Log) logs admin requests
	return &api.Admin{Tenants: svc, Tokens: tokens, PublicURL: cfg.PublicURL}, nil
}
