package testenv

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/postgate/postgate/internal/database"
)

// RowsMatchSchema proves that each GORM row model in rows matches the
// migrated schema of db: each field has an explicit column tag, its column
// exists with a compatible type, a nullable column maps to a type that can
// hold NULL, and every column of the table has a field. extra adds the
// column types (information_schema udt names) of a package's own Go types.
func RowsMatchSchema(t *testing.T, db *database.DB, extra map[reflect.Type][]string, rows ...any) {
	t.Helper()
	compatible := map[reflect.Type][]string{
		reflect.TypeFor[uuid.UUID]():  {"uuid"},
		reflect.TypeFor[string]():     {"text", "varchar"},
		reflect.TypeFor[*string]():    {"text", "varchar"},
		reflect.TypeFor[bool]():       {"bool"},
		reflect.TypeFor[int32]():      {"int4"},
		reflect.TypeFor[int64]():      {"int8"},
		reflect.TypeFor[*int32]():     {"int4"},
		reflect.TypeFor[time.Time]():  {"timestamptz"},
		reflect.TypeFor[*time.Time](): {"timestamptz"},
		reflect.TypeFor[[]byte]():     {"bytea"},
	}
	for k, v := range extra {
		compatible[k] = v
	}
	nullable := func(t reflect.Type) bool {
		return t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice
	}
	for _, row := range rows {
		stmt := &gorm.Statement{DB: db.Gorm}
		if err := stmt.Parse(row); err != nil {
			t.Fatal(err)
		}
		table := stmt.Schema.Table
		t.Run(table, func(t *testing.T) {
			cols, err := db.Gorm.Migrator().ColumnTypes(row)
			if err != nil {
				t.Fatal(err)
			}
			if len(cols) == 0 {
				t.Fatalf("table %s has no columns (does it exist?)", table)
			}
			byName := map[string]gorm.ColumnType{}
			for _, c := range cols {
				byName[c.Name()] = c
			}
			seen := map[string]bool{}
			for _, f := range stmt.Schema.Fields {
				if f.DBName == "" {
					continue
				}
				if !strings.Contains(string(f.Tag), "column:"+f.DBName) {
					t.Errorf("%s.%s: no explicit gorm column tag", table, f.Name)
				}
				seen[f.DBName] = true
				c, ok := byName[f.DBName]
				if !ok {
					t.Errorf("%s: field %s maps to column %s, which does not exist", table, f.Name, f.DBName)
					continue
				}
				want, known := compatible[f.FieldType]
				if !known {
					t.Errorf("%s.%s: Go type %s has no known column types", table, f.DBName, f.FieldType)
					continue
				}
				if got := strings.ToLower(c.DatabaseTypeName()); !slices.Contains(want, got) {
					t.Errorf("%s.%s: got column type %s, want one of %v for %s", table, f.DBName, got, want, f.FieldType)
				}
				if null, ok := c.Nullable(); ok && null && !nullable(f.FieldType) {
					t.Errorf("%s.%s: column is nullable but field %s is %s", table, f.DBName, f.Name, f.FieldType)
				}
			}
			for name := range byName {
				if !seen[name] {
					t.Errorf("%s: column %s has no field in the row model", table, name)
				}
			}
		})
	}
}
