// Package migrations holds the gateway's schema as goose SQL migrations,
// embedded into the binary. The files are the schema: no code path runs
// AutoMigrate. Each file makes one change and can be rolled back.
package migrations

import "embed"

// FS holds every *.sql migration, applied in the order of its number.
//
//go:embed *.sql
var FS embed.FS
