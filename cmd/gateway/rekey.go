package main

import (
	"context"
	"fmt"
	"io"

	"github.com/postgate/postgate/internal/config"
	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/tenant"
)

// runRekey re-encrypts every stored secret under the current key
// (SECRET_KEY), opening the old ones with SECRET_KEY or
// SECRET_KEY_PREVIOUS, in one transaction; it prints what it did per
// column. Afterwards SECRET_KEY_PREVIOUS can be removed.
func runRekey(ctx context.Context, _ config.Config, db *database.DB, keys *secrets.Keyring, stdout io.Writer) error {
	counts, err := tenant.NewStore(db).Rekey(ctx, keys)
	if err != nil {
		return err
	}
	total := 0
	for _, c := range counts {
		fmt.Fprintf(stdout, "%-32s re-encrypted %d, already current %d\n", c.Column, c.Rekeyed, c.Current)
		total += c.Rekeyed
	}
	fmt.Fprintf(stdout, "rekey done: %d secrets re-encrypted under the current key\n", total)
	return nil
}
