package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/postgate/postgate/migrations"
)

// DB is the shared Postgres handle: one pool, seen three ways.
type DB struct {
	Pool *pgxpool.Pool
	SQL  *sql.DB
	Gorm *gorm.DB
}

// Open creates the pool for url and checks nothing: Ping does.
func Open(ctx context.Context, url string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse DATABASE_URL: %w", redact(err))
	}
	if cfg.MaxConns < 16 {
		cfg.MaxConns = 16
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.HealthCheckPeriod = 15 * time.Second
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 3 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres pool: %w", redact(err))
	}
	sqlDB := stdlib.OpenDBFromPool(pool)
	gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		TranslateError:         true,
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open gorm: %w", err)
	}
	return &DB{Pool: pool, SQL: sqlDB, Gorm: gdb}, nil
}

// Ping reports whether Postgres answers within ctx.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.Pool.Ping(ctx); err != nil {
		return fmt.Errorf("ping postgres: %w", redact(err))
	}
	return nil
}

// Close closes the *sql.DB view and the pool.
func (db *DB) Close() {
	_ = db.SQL.Close()
	db.Pool.Close()
}

// redact keeps connection errors from printing a DSN with its password;
// pgx errors carry the config only in a few wrapped forms.
func redact(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("invalid connection string (check DATABASE_URL)")
	}
	return err
}

// Migrator applies the embedded migrations. A Postgres session advisory
// lock serialises replicas that start together.
type Migrator struct {
	p *goose.Provider
}

// NewMigrator prepares goose on db's *sql.DB.
func NewMigrator(db *sql.DB) (*Migrator, error) {
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithSessionLocker(locker))
	if err != nil {
		return nil, fmt.Errorf("load migrations: %w", err)
	}
	return &Migrator{p: p}, nil
}

// Up applies every pending migration and returns what it applied.
func (m *Migrator) Up(ctx context.Context) ([]*goose.MigrationResult, error) {
	res, err := m.p.Up(ctx)
	if err != nil {
		return res, fmt.Errorf("migrate up: %w", err)
	}
	return res, nil
}

// UpTo applies the pending migrations up to version.
func (m *Migrator) UpTo(ctx context.Context, version int64) ([]*goose.MigrationResult, error) {
	res, err := m.p.UpTo(ctx, version)
	if err != nil {
		return res, fmt.Errorf("migrate up to %d: %w", version, err)
	}
	return res, nil
}

// DownTo rolls back every migration after version.
func (m *Migrator) DownTo(ctx context.Context, version int64) ([]*goose.MigrationResult, error) {
	res, err := m.p.DownTo(ctx, version)
	if err != nil {
		return res, fmt.Errorf("migrate down to %d: %w", version, err)
	}
	return res, nil
}

// DownAll rolls back every migration (tests and `migrate down --all`).
func (m *Migrator) DownAll(ctx context.Context) ([]*goose.MigrationResult, error) {
	res, err := m.p.DownTo(ctx, 0)
	if err != nil {
		return res, fmt.Errorf("migrate down: %w", err)
	}
	return res, nil
}

// Down rolls back the most recent migration.
func (m *Migrator) Down(ctx context.Context) (*goose.MigrationResult, error) {
	res, err := m.p.Down(ctx)
	if err != nil {
		return res, fmt.Errorf("migrate down: %w", err)
	}
	return res, nil
}

// Status lists every migration and whether it is applied.
func (m *Migrator) Status(ctx context.Context) ([]*goose.MigrationStatus, error) {
	st, err := m.p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate status: %w", err)
	}
	return st, nil
}

// DeliveriesChannel is the channel the ingress notifies after committing
// new events, and the delivery workers LISTEN on to claim them at once
// rather than at their next poll. A notification is only a hint: it
// carries nothing, and a lost one costs one poll interval.
const DeliveriesChannel = "postgate_deliveries"

// RetryDeadlock runs f again, up to twice, when Postgres ended it to break
// a deadlock (SQLSTATE 40P01): the other transaction has gone through by
// then.
func RetryDeadlock(f func() error) error {
	var err error
	for range 3 {
		if err = f(); !isCode(err, "40P01") {
			return err
		}
	}
	return err
}
