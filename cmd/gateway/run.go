package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/postgate/postgate/internal/config"
	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/session"
	"github.com/postgate/postgate/internal/tenant"
)

// Set at build time: -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

const usage = `gateway: Postgate, a multi-tenant gateway for Meta Messenger webhooks.

Commands:
  serve [--role all|ingress|worker] [--dev] [--migrate=false]
                        run the gateway (flags mirror every environment variable; serve --help)
  migrate up|down|status
                        apply, roll back one, or list the embedded migrations
  token --role admin | --role tenant --tenant ID [--ttl 24h]
                        print a signed admin-API token
  console-link --role admin | --role tenant --tenant ID [--ttl 15m]
                        print a one-time sign-in link to the web console
  rekey                 re-encrypt every stored secret under SECRET_KEY
  version               print version, commit and Go version
`

// run is the whole program: main turns signals into ctx and calls it, and
// so do the tests.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, usage)
		return errors.New("no command given")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		return runServe(ctx, rest, getenv, stdout)
	case "migrate":
		return runMigrate(ctx, rest, getenv, stdout)
	case "token":
		return runToken(rest, getenv, stdout)
	case "rekey":
		return runRekeyCommand(ctx, rest, getenv, stdout)
	case "console-link":
		return runConsoleLink(ctx, rest, getenv, stdout)
	case "version", "--version":
		fmt.Fprintf(stdout, "gateway %s (commit %s, %s)\n", version, commit, runtime.Version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stdout, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// newFlagSet makes a flag set that reports errors instead of exiting.
func newFlagSet(name string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	return fs
}

func runMigrate(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := newFlagSet("migrate", stdout)
	loader := config.Bind(fs, getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: gateway migrate up|down|status")
	}
	_, db, err := openDatabase(ctx, loader)
	if err != nil {
		return err
	}
	defer db.Close()
	m, err := database.NewMigrator(db.SQL)
	if err != nil {
		return err
	}
	switch fs.Arg(0) {
	case "up":
		res, err := m.Up(ctx)
		for _, r := range res {
			fmt.Fprintf(stdout, "applied %s (%s)\n", r.Source.Path, r.Duration.Round(time.Millisecond))
		}
		if err == nil && len(res) == 0 {
			fmt.Fprintln(stdout, "no pending migrations")
		}
		return err
	case "down":
		r, err := m.Down(ctx)
		if r != nil && r.Source != nil {
			fmt.Fprintf(stdout, "rolled back %s\n", r.Source.Path)
		}
		return err
	case "status":
		st, err := m.Status(ctx)
		if err != nil {
			return err
		}
		for _, s := range st {
			when := "pending"
			if s.State == "applied" {
				when = "applied " + s.AppliedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "%05d  %-40s %s\n", s.Source.Version, strings.TrimPrefix(s.Source.Path, "./"), when)
		}
		return nil
	default:
		return fmt.Errorf("unknown migrate action %q: want up, down or status", fs.Arg(0))
	}
}

func runToken(args []string, getenv func(string) string, stdout io.Writer) error {
	fs := newFlagSet("token", stdout)
	loader := config.Bind(fs, getenv)
	role := fs.String("role", "admin", "admin or tenant")
	tenantID := fs.String("tenant", "", "tenant id, the UUID the admin API shows (for --role tenant)")
	ttl := fs.Duration("ttl", 24*time.Hour, "lifetime of the token")
	sub := fs.String("sub", "", "subject (default: the role)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if loader.Get("ADMIN_JWT_SECRET") == "" {
		// After `make run`, the dev secrets live in the dev file.
		if dev, err := readDevFile(devFile); err == nil && dev["ADMIN_JWT_SECRET"] != "" {
			loader.Set("ADMIN_JWT_SECRET", dev["ADMIN_JWT_SECRET"])
		}
	}
	cfg, err := loader.Load()
	if err != nil {
		return err
	}
	if cfg.AdminJWTSecret == "" {
		return errors.New("ADMIN_JWT_SECRET is not set (and no " + devFile + " from `gateway serve --dev` was found)")
	}
	tokens, err := tenant.NewTokens(tenant.TokenConfig{
		Secret: []byte(cfg.AdminJWTSecret), Issuer: cfg.AdminJWTIssuer, Audience: cfg.AdminJWTAudience,
	}, nil)
	if err != nil {
		return err
	}
	subject := *sub
	if subject == "" {
		subject = *role
		if *tenantID != "" {
			subject = "tenant:" + *tenantID
		}
	}
	tok, _, err := tokens.Issue(subject, tenant.Role(*role), *tenantID, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// runConsoleLink prints a one-time console sign-in link: it is stored
// (hashed) in the gateway's database, so any replica honours it.
func runConsoleLink(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := newFlagSet("console-link", stdout)
	loader := config.Bind(fs, getenv)
	role := fs.String("role", "admin", "admin or tenant")
	tenantID := fs.String("tenant", "", "tenant id (for --role tenant)")
	ttl := fs.Duration("ttl", 15*time.Minute, "how long the link works (1m to 24h)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ttl < time.Minute || *ttl > 24*time.Hour {
		return fmt.Errorf("--ttl must be from 1m to 24h, got %s", *ttl)
	}
	switch {
	case *role != session.RoleAdmin && *role != session.RoleTenant:
		return fmt.Errorf("--role must be admin or tenant, got %q", *role)
	case *role == session.RoleTenant && *tenantID == "":
		return errors.New("--role tenant needs --tenant ID")
	case *role == session.RoleAdmin && *tenantID != "":
		return errors.New("--tenant is for --role tenant only")
	}
	cfg, db, err := openDatabase(ctx, loader)
	if err != nil {
		return err
	}
	defer db.Close()
	subject := "console-link:" + *role
	if *role == session.RoleTenant {
		if _, err := tenant.NewStore(db).GetTenant(ctx, *tenantID); err != nil {
			return fmt.Errorf("tenant %q: %w", *tenantID, err)
		}
		subject = "portal:" + *tenantID
	}
	token, exp, err := session.NewStore(db.Pool, nil).CreateLink(ctx, *role, *tenantID, subject, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, session.LinkURL(cfg.PublicURL, token))
	fmt.Fprintf(os.Stderr, "works once, until %s\n", exp.Format(time.RFC3339))
	return nil
}

// openDatabase loads the configuration and opens its database, for the
// commands that work on the database directly.
func openDatabase(ctx context.Context, loader *config.Loader) (config.Config, *database.DB, error) {
	cfg, err := loader.Load()
	if err != nil {
		return cfg, nil, err
	}
	db, err := database.Open(ctx, cfg.DatabaseURL)
	return cfg, db, err
}

func runRekeyCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := newFlagSet("rekey", stdout)
	loader := config.Bind(fs, getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loader.Load()
	if err != nil {
		return err
	}
	if len(cfg.SecretKey) == 0 {
		return errors.New("SECRET_KEY is required: the key to re-encrypt under (SECRET_KEY_PREVIOUS the one being retired)")
	}
	keys, err := secrets.NewKeyring(cfg.SecretKey, cfg.SecretKeyPrevious)
	if err != nil {
		return err
	}
	db, err := database.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	return runRekey(ctx, cfg, db, keys, stdout)
}
