package delivery

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	attempts       *prometheus.CounterVec
	attemptSeconds prometheus.Histogram
	latency        prometheus.Histogram
	dead           prometheus.Counter
	deferred       *prometheus.CounterVec
	breaker        *prometheus.CounterVec
	inFlight       prometheus.Gauge
	backlog        prometheus.Gauge
	backlogAge     prometheus.Gauge
	heldBack       prometheus.Gauge
	heldBackAge    prometheus.Gauge
	claims         prometheus.Histogram
	flushErrors    prometheus.Counter
	redisErrors    prometheus.Counter
	purged         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postgate_delivery_attempts_total",
			Help: "Delivery attempts by outcome class (ok, http_4xx, http_5xx, http_410, http_429, http_3xx, timeout, dns, refused, tls, blocked, connection).",
		}, []string{"class"}),
		attemptSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "postgate_delivery_attempt_seconds",
			Help:    "Duration of one delivery attempt, dial to last byte read.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "postgate_delivery_latency_seconds",
			Help:    "From the event's acceptance to its successful delivery.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 4 * 3600, 24 * 3600},
		}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postgate_delivery_dead_total",
			Help: "Events that ran out of retries and are now dead (listed, replayable).",
		}),
		deferred: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postgate_delivery_deferred_total",
			Help: "Claimed deliveries put back without an attempt, by reason (rate_limited, paused, breaker_open, shutdown, no_endpoint, no_signing_key, no_app_secret, bad_body).",
		}, []string{"reason"}),
		breaker: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postgate_delivery_breaker_transitions_total",
			Help: "Circuit breaker state changes of endpoints, by new state.",
		}, []string{"to"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postgate_delivery_in_flight",
			Help: "Events this worker holds (sending or about to).",
		}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postgate_delivery_backlog_events",
			Help: "Events pending or failed (waiting for an attempt), all tenants.",
		}),
		backlogAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postgate_delivery_backlog_age_seconds",
			Help: "How long the oldest due event has been due (not counting events held back behind their conversation's head).",
		}),
		heldBack: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postgate_delivery_conversations_held_back",
			Help: "Conversations of endpoints with ordering conversation whose later events wait behind an undelivered head, all tenants.",
		}),
		heldBackAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "postgate_delivery_held_back_age_seconds",
			Help: "How long the oldest event held back behind its conversation's head has waited since it was queued.",
		}),
		claims: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "postgate_delivery_claim_events",
			Help:    "Events taken by one claim statement.",
			Buckets: []float64{0, 1, 2, 5, 10, 25, 50, 100, 250, 500},
		}),
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postgate_delivery_flush_errors_total",
			Help: "Failed writes of delivery outcomes (retried).",
		}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postgate_delivery_redis_errors_total",
			Help: "Rate-limit checks that failed; the limit then fails open.",
		}),
		purged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postgate_delivery_purged_total",
			Help: "Events deleted by retention, by status.",
		}, []string{"status"}),
	}
	reg.MustRegister(m.attempts, m.attemptSeconds, m.latency, m.dead, m.deferred, m.breaker, m.inFlight,
		m.backlog, m.backlogAge, m.heldBack, m.heldBackAge, m.claims, m.flushErrors, m.redisErrors, m.purged)
	return m
}
