// Package config owns the gateway's settings: every environment variable of
// SPEC.md, the command-line flag that mirrors it, the defaults, and the
// validation that turns a bad value into an error a person can act on.
//
// It must never log or print a secret: Redacted returns the values that are
// safe to show. Nothing here opens a connection.
package config
