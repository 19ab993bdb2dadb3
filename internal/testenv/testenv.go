package testenv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/migrations"
)

const (
	defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	defaultRedisURL    = "redis://127.0.0.1:6379/0"
	startPostgres      = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start (or `make services`), or set TEST_DATABASE_URL"
	startRedis         = "start it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no (or `make services`), or set TEST_REDIS_URL"
)

// DatabaseURL is the maintenance database tests create their databases from.
func DatabaseURL() string {
	if v := os.Getenv("TEST_DATABASE_URL"); v != "" {
		return v
	}
	return defaultDatabaseURL
}

// RedisURL is the Redis the tests use.
func RedisURL() string {
	if v := os.Getenv("TEST_REDIS_URL"); v != "" {
		return v
	}
	return defaultRedisURL
}

// PostgresURL creates a fresh, migrated database for t and returns its URL;
// the database is dropped when t ends.
func PostgresURL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	admin, err := pgx.Connect(ctx, DatabaseURL())
	if err != nil {
		t.Fatalf("testenv: Postgres at %s is unreachable (%v); %s", redactedURL(DatabaseURL()), err, startPostgres)
	}
	defer admin.Close(ctx)

	tpl, err := ensureTemplate(ctx, admin)
	if err != nil {
		t.Fatalf("testenv: build template database: %v", err)
	}
	name := "postgate_test_" + randomHex(6)
	for attempt := 0; ; attempt++ {
		_, err = admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tpl))
		// Another test may be cloning the same template this instant.
		if err == nil || attempt == 20 || !isCode(err, "55006") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, DatabaseURL())
		if err != nil {
			t.Logf("testenv: drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)); err != nil {
			t.Logf("testenv: drop %s: %v", name, err)
		}
	})
	return withDatabase(DatabaseURL(), name)
}

// Postgres opens a fresh, migrated database for t (see PostgresURL).
func Postgres(t testing.TB) *database.DB {
	t.Helper()
	db, err := database.Open(context.Background(), PostgresURL(t))
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// EmptyPostgresURL creates an empty database (no migrations) for tests of
// the migrations themselves.
func EmptyPostgresURL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, DatabaseURL())
	if err != nil {
		t.Fatalf("testenv: Postgres at %s is unreachable (%v); %s", redactedURL(DatabaseURL()), err, startPostgres)
	}
	defer admin.Close(ctx)
	name := "postgate_test_" + randomHex(6)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), DatabaseURL())
		if err == nil {
			_, _ = c.Exec(context.Background(), fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
			_ = c.Close(context.Background())
		}
	})
	return withDatabase(DatabaseURL(), name)
}

var tplOnce sync.Map // template name -> struct{}

// ensureTemplate builds the template database for the current migrations if
// no process has yet. It builds under another name and renames at the end,
// so a crash never leaves a half-migrated template behind.
func ensureTemplate(ctx context.Context, admin *pgx.Conn) (string, error) {
	sum, err := migrationsHash()
	if err != nil {
		return "", err
	}
	tpl := "postgate_tpl_" + sum
	if _, ok := tplOnce.Load(tpl); ok {
		return tpl, nil
	}
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(hashtext('postgate testenv template'))"); err != nil {
		return "", err
	}
	defer admin.Exec(context.Background(), "SELECT pg_advisory_unlock(hashtext('postgate testenv template'))") //nolint:errcheck

	var exists bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", tpl).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		building := tpl + "_building"
		if _, err := admin.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", building)); err != nil {
			return "", err
		}
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+building); err != nil {
			return "", err
		}
		if err := migrate(ctx, withDatabase(DatabaseURL(), building)); err != nil {
			return "", err
		}
		if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s RENAME TO %s", building, tpl)); err != nil {
			return "", err
		}
	}
	tplOnce.Store(tpl, struct{}{})
	return tpl, nil
}

func migrate(ctx context.Context, url string) error {
	db, err := database.Open(ctx, url)
	if err != nil {
		return err
	}
	defer db.Close()
	m, err := database.NewMigrator(db.SQL)
	if err != nil {
		return err
	}
	_, err = m.Up(ctx)
	return err
}

func migrationsHash() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12], err
}

// Redis returns a client for TEST_REDIS_URL and a key prefix private to t;
// every key under the prefix is deleted when t ends.
func Redis(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	opts, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatalf("testenv: TEST_REDIS_URL: %v", err)
	}
	opts.DialTimeout = 2 * time.Second
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		t.Fatalf("testenv: Redis at %s is unreachable (%v); %s", redactedURL(RedisURL()), err, startRedis)
	}
	prefix := "test:" + randomHex(6) + ":"
	t.Cleanup(func() {
		DeletePrefix(context.Background(), c, prefix)
		_ = c.Close()
	})
	return c, prefix
}

// DeletePrefix deletes every key under prefix: a Redis flush confined to
// one test.
func DeletePrefix(ctx context.Context, c redis.UniversalClient, prefix string) {
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 500 {
			c.Del(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		c.Del(ctx, keys...)
	}
}

func withDatabase(rawURL, name string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		panic(fmt.Sprintf("testenv: TEST_DATABASE_URL is not a URL: %v", err))
	}
	u.Path = "/" + name
	return u.String()
}

func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func redactedURL(s string) string {
	if i := strings.Index(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + "…" + s[i:]
		}
	}
	return s
}
