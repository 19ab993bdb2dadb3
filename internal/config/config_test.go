package config

import (
	"flag"
	"io"
	"testing"
	"time"

	"github.com/postgate/postgate/internal/delivery"
)

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Second: "10s", 2 * time.Minute: "2m", time.Hour: "1h", 168 * time.Hour: "168h",
		90 * time.Minute: "1h30m", 1500 * time.Millisecond: "1.5s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%s): got %q, want %q", d, got, want)
		}
	}
}

// TestDefaultsAreDeliverys: the delivery settings' defaults shown and
// applied here are package delivery's, which has them once.
func TestDefaultsAreDeliverys(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	l := Bind(fs, func(string) string { return "" })
	c, err := l.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := formatSchedule(c.RetrySchedule), formatSchedule(delivery.DefaultRetrySchedule); got != want {
		t.Errorf("RETRY_SCHEDULE: got %s, want %s", got, want)
	}
	if got, want := formatSchedule(c.RetrySchedule), "5s,30s,2m,10m,30m,1h,2h,4h,8h,12h,24h"; got != want {
		t.Errorf("RETRY_SCHEDULE: got %s, want SPEC's %s", got, want)
	}
	for name, pair := range map[string][2]any{
		"CALLBACK_TIMEOUT":     {c.CallbackTimeout, delivery.DefaultTimeout},
		"DELIVERY_CONCURRENCY": {c.DeliveryConcurrency, delivery.DefaultConcurrency},
		"TENANT_RATE":          {c.TenantRate, delivery.DefaultTenantRate},
		"TENANT_BURST":         {c.TenantBurst, delivery.DefaultTenantBurst},
		"TENANT_CONCURRENCY":   {c.TenantConcurrency, delivery.DefaultTenantConcurrency},
		"BREAKER_FAILURES":     {c.BreakerFailures, delivery.DefaultBreakerFailures},
		"BREAKER_OPEN_FOR":     {c.BreakerOpenFor, delivery.DefaultBreakerOpenFor},
		"BREAKER_PROBES":       {c.BreakerProbes, delivery.DefaultBreakerProbes},
		"RETENTION_DELIVERED":  {c.RetentionDelivered, delivery.DefaultRetainDelivered},
		"RETENTION_DEAD":       {c.RetentionDead, delivery.DefaultRetainDead},
		"SHUTDOWN_TIMEOUT":     {c.ShutdownTimeout, delivery.DefaultShutdownTimeout},
	} {
		if pair[0] != pair[1] {
			t.Errorf("%s: got %v, want %v", name, pair[0], pair[1])
		}
	}
}
