package database_test

import (
	"context"
	"testing"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/testenv"
)

// TestMigrationsUpDownUp proves every migration applies to an empty
// database, rolls back cleanly, and applies again.
func TestMigrationsUpDownUp(t *testing.T) {
	ctx := context.Background()
	db, err := database.Open(ctx, testenv.EmptyPostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	m, err := database.NewMigrator(db.SQL)
	if err != nil {
		t.Fatal(err)
	}
	up, err := m.Up(ctx)
	if err != nil {
		t.Fatalf("first up: %v", err)
	}
	if len(up) == 0 {
		t.Fatal("first up applied no migrations")
	}
	down, err := m.DownAll(ctx)
	if err != nil {
		t.Fatalf("down: %v", err)
	}
	if len(down) != len(up) {
		t.Fatalf("down rolled back %d migrations, want %d", len(down), len(up))
	}
	var tables int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = 'public' AND table_name <> 'goose_db_version'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("after down, %d tables remain", tables)
	}
	again, err := m.Up(ctx)
	if err != nil {
		t.Fatalf("second up: %v", err)
	}
	if len(again) != len(up) {
		t.Fatalf("second up applied %d migrations, want %d", len(again), len(up))
	}
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.State != "applied" {
			t.Errorf("migration %d is %s after up", s.Source.Version, s.State)
		}
	}
}
