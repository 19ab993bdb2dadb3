package database

import (
	"encoding/base64"
	"encoding/json"
	"errors"
)

// Results is one page of a keyset-paginated list. NextCursor is empty on
// the last page; passing it back continues after the last item, and stays
// correct while rows are added.
type Results[T any] struct {
	Items      []T
	NextCursor string
}

// ListOptions bounds a list: at most Limit items after Cursor.
type ListOptions struct {
	Limit  int // 0 means DefaultLimit; capped at MaxLimit
	Cursor string
}

// List limits.
const (
	DefaultLimit = 50
	MaxLimit     = 200
)

// PageSize is the number of items a page holds.
func (o ListOptions) PageSize() int {
	switch {
	case o.Limit <= 0:
		return DefaultLimit
	case o.Limit > MaxLimit:
		return MaxLimit
	}
	return o.Limit
}

// ErrBadCursor is a cursor this list did not hand out. Stores turn it into
// their own invalid-input error on the cursor field.
var ErrBadCursor = errors.New("is not a cursor of this list")

// PageOf turns the rows of a query for PageSize()+1 rows into one page of
// results: the extra row only says that there is a next page, whose cursor
// is the sort key of the last item.
func PageOf[R, T any](rows []R, limit int, domain func(*R) T, key func(*R) []string) Results[T] {
	out := Results[T]{Items: make([]T, 0, min(len(rows), limit))}
	for i := range rows {
		if i == limit {
			out.NextCursor = EncodeCursor(key(&rows[limit-1]))
			break
		}
		out.Items = append(out.Items, domain(&rows[i]))
	}
	return out
}

// EncodeCursor makes the opaque cursor of a row's sort key: base64url of a
// JSON array of strings.
func EncodeCursor(key []string) string {
	b, _ := json.Marshal(key)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DecodeCursor reverses EncodeCursor for a key of n strings, or answers
// ErrBadCursor.
func DecodeCursor(c string, n int) ([]string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return nil, ErrBadCursor
	}
	var key []string
	if err := json.Unmarshal(b, &key); err != nil || len(key) != n {
		return nil, ErrBadCursor
	}
	for _, k := range key {
		// A forged cursor could carry what Postgres refuses to compare.
		if !Storable(k) {
			return nil, ErrBadCursor
		}
	}
	return key, nil
}
