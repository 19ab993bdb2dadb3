package main

import (
	"log/slog"

	"github.com/postgate/postgate/internal/api"
	"github.com/postgate/postgate/internal/config"
	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/tenant"
)

// buildAdmin wires the admin API's services.
func buildAdmin(cfg config.Config, db *database.DB, keys *secrets.Keyring, tokens *tenant.Tokens, log *slog.Logger) (*api.Admin, error) {
	return &api.Admin{}, nil
}
