// Package database owns the connection to Postgres and the schema's
// lifecycle.
//
// One pgx pool serves everything: GORM runs over the pool's *sql.DB (for the
// admin API's CRUD), and hot or Postgres-specific code (the ingress's group
// commit, LISTEN/NOTIFY, the delivery claims) uses the pool directly. The
// schema is the goose migrations embedded from /migrations; nothing here
// calls AutoMigrate.
package database
