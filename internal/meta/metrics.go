package meta

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the health signals. The gauges are read from the stored
// checks, so every replica exports the same values whichever one checks;
// the error counter counts on the replica that made the check.
type metrics struct {
	checkErrors *prometheus.CounterVec
	active      *prometheus.GaugeVec
	silent      prometheus.Gauge
	unhealthy   prometheus.Gauge

	mu   sync.Mutex
	apps map[string]bool // the app_id series exported now
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		checkErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postgate_meta_check_errors_total",
			Help: "Health checks that could not be made (Meta unreachable, rate limiting, 5xx, a secret that cannot be opened), by check (app, page).",
		}, []string{"check"}),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "postgate_meta_subscription_active",
			Help: "1 when the app's Meta webhook subscription is active, points at the gateway and has every field it needs; 0 otherwise (apps checked at least once).",
		}, []string{"app_id"}),
		silent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postgate_meta_pages_silent",
			Help: "Pages that had events in the past 7 days and none for longer than SILENCE_AFTER and 20 times their median gap.",
		}),
		unhealthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postgate_meta_pages_unhealthy",
			Help: "Pages with a health problem (token refused, app not subscribed, fields missing, silent).",
		}),
		apps: map[string]bool{},
	}
	m.checkErrors.WithLabelValues("app")
	m.checkErrors.WithLabelValues("page")
	if reg != nil {
		reg.MustRegister(m.checkErrors, m.active, m.silent, m.unhealthy)
	}
	return m
}

// signalsRefresh is how often every replica rereads the stored checks.
const signalsRefresh = 15 * time.Second

func (m *metrics) refreshLoop(ctx context.Context, s *Service) {
	t := time.NewTicker(min(signalsRefresh, s.cfg.Interval))
	defer t.Stop()
	for {
		if err := m.refresh(ctx, s); err != nil && ctx.Err() == nil {
			s.log.Debug("refresh meta health gauges", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh rereads the gauges' values from the stored checks.
func (m *metrics) refresh(ctx context.Context, s *Service) error {
	active := map[string]bool{}
	rows, err := s.db.Pool.Query(ctx, `SELECT app_id, problem IS NULL FROM app_health WHERE checked_at IS NOT NULL`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var app string
		var ok bool
		if err := rows.Scan(&app, &ok); err != nil {
			rows.Close()
			return err
		}
		active[app] = ok
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var silent, unhealthy int
	if err := s.db.Pool.QueryRow(ctx, `SELECT count(DISTINCT (tenant_id, page_id)) FILTER (WHERE silent),
		count(DISTINCT (tenant_id, page_id)) FILTER (WHERE problem IS NOT NULL) FROM page_health`).Scan(&silent, &unhealthy); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for app, ok := range active {
		v := 0.0
		if ok {
			v = 1
		}
		m.active.WithLabelValues(app).Set(v)
	}
	for app := range m.apps {
		if _, ok := active[app]; !ok {
			m.active.DeleteLabelValues(app) // deleted since
		}
	}
	m.apps = active
	m.silent.Set(float64(silent))
	m.unhealthy.Set(float64(unhealthy))
	return nil
}

// Refresh rereads the health gauges now (Run does it every 15 s).
func (s *Service) Refresh(ctx context.Context) error { return s.m.refresh(ctx, s) }
