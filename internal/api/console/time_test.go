package console

import (
	"testing"
	"time"
)

// TestSearchTimes: a time typed in the search (a datetime-local value,
// no zone) is read in the viewer's zone the script reports; RFC 3339
// keeps its own; a missing or absurd zone is UTC.
func TestSearchTimes(t *testing.T) {
	for _, c := range []struct {
		in, tz string
		want   string
	}{
		{"2026-01-02T15:04", "120", "2026-01-02T13:04:00Z"},
		{"2026-01-02T15:04:05", "-300", "2026-01-02T20:04:05Z"},
		{"2026-01-02T15:04", "", "2026-01-02T15:04:00Z"},
		{"2026-01-02T15:04", "99999", "2026-01-02T15:04:00Z"},
		{"2026-01-02T15:04:00+01:00", "-300", "2026-01-02T14:04:00Z"},
		{"2026-01-02", "60", "2026-01-01T23:00:00Z"},
	} {
		got, err := parseTime(c.in, zoneOf(c.tz))
		if err != nil || got.Format(time.RFC3339) != c.want {
			t.Errorf("parseTime(%q, tz %q) = %v, %v; want %s", c.in, c.tz, got, err, c.want)
		}
	}
	if _, err := parseTime("yesterday", time.UTC); err == nil {
		t.Error("parseTime accepted yesterday")
	}
}
