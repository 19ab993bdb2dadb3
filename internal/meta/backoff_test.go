package meta

import (
	"testing"
	"time"
)

func TestDefaultBackoff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		attempt  int
		min, max time.Duration
	}{
		{1, 800 * time.Millisecond, 1200 * time.Millisecond},
		{2, 1600 * time.Millisecond, 2400 * time.Millisecond},
		{3, 3200 * time.Millisecond, 4800 * time.Millisecond},
		{5, 12800 * time.Millisecond, 19200 * time.Millisecond},
		{6, 24 * time.Second, 30 * time.Second},
		{100, 24 * time.Second, 30 * time.Second},
	} {
		for range 50 {
			if got := defaultBackoff(tc.attempt); got < tc.min || got > tc.max {
				t.Fatalf("defaultBackoff(%d) = %v, want within [%v, %v]", tc.attempt, got, tc.min, tc.max)
			}
		}
	}
}
