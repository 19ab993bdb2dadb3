package database

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// CreateIfMissing creates the database url names when Postgres answers that
// it does not exist, through a maintenance database of the same server
// (postgres, else template1) with the same credentials, and reports whether
// it did. Any other connection failure is left to Open and Ping to report.
//
// It is for local development (`serve --dev`, `make run`): a production
// database is provisioned with its owner and grants, not made by the app.
func CreateIfMissing(ctx context.Context, url string) (bool, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return false, fmt.Errorf("parse DATABASE_URL: %w", redact(err))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 3 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return false, conn.Close(ctx)
	}
	if !isCode(err, "3D000") { // invalid_catalog_name: no such database
		return false, nil
	}
	name := cfg.Database
	var reachErr error
	for _, maintenance := range []string{"postgres", "template1"} {
		mc := cfg.Copy()
		mc.Database = maintenance
		c, err := pgx.ConnectConfig(ctx, mc)
		if err != nil {
			reachErr = errors.Join(reachErr, err)
			continue
		}
		_, err = c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
		_ = c.Close(ctx)
		switch {
		case err == nil:
			return true, nil
		case isCode(err, "42P04"): // duplicate_database: created meanwhile
			return false, nil
		default:
			return false, fmt.Errorf("create database %q: %w", name, err)
		}
	}
	return false, fmt.Errorf("create database %q: no maintenance database (postgres, template1) to connect to: %w", name, redact(reachErr))
}

func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}
