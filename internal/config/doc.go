// Package config owns the gateway's settings: every environment variable of
// SPEC.md, the command-line flag that mirrors it, the defaults, and the
// validation that turns a bad value into an error a person can act on.
//
// It must never log or print a secret: Loader.LogAttrs returns the values
// with every secret masked (and passwords cut out of URLs), for the one log
// line at start. Nothing here opens a connection. The defaults of the
// delivery settings live in package delivery, which applies them too; this
// package shows and parses them.
package config
