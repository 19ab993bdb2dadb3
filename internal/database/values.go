package database

import (
	"strings"
	"unicode/utf8"
)

// Storable reports whether s can be a Postgres text value: valid UTF-8
// without NUL. Postgres refuses anything else, and one refused value fails
// the whole statement it is in, so every input that reaches a text column
// (an admin field, a cursor, an id from a signed body) is checked first.
func Storable(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// Value is what p points to, or T's zero value for a NULL column.
func Value[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// Null is a pointer to v, or nil (NULL) for T's zero value.
func Null[T comparable](v T) *T {
	var zero T
	if v == zero {
		return nil
	}
	return &v
}
