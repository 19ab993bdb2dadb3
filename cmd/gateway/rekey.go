package main

import (
	"context"
	"errors"
	"io"

	"github.com/postgate/postgate/internal/config"
	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/secrets"
)

// runRekey re-encrypts every stored secret under the current key. It lands
// together with the tenant store (issue 3).
func runRekey(ctx context.Context, cfg config.Config, db *database.DB, keys *secrets.Keyring, stdout io.Writer) error {
	return errors.New("rekey is not available in this build")
}
