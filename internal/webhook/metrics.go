package webhook

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	requests    *prometheus.CounterVec
	events      *prometheus.CounterVec
	sigFailures *prometheus.CounterVec
	ack         prometheus.Histogram
	batchEvents prometheus.Histogram
	batchReqs   prometheus.Histogram
	commitTime  prometheus.Histogram
	redisErrors prometheus.Counter
	lastEvent   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postgate_webhook_requests_total",
			Help: "Webhook POSTs by outcome (accepted, bad_signature, not_json, unroutable, quarantined, unavailable).",
		}, []string{"outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postgate_webhook_events_total",
			Help: "Webhook events by outcome (accepted, duplicate, unroutable, inconsistent, filtered, invalid, quarantined, test).",
		}, []string{"outcome"}),
		sigFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postgate_webhook_signature_failures_total",
			Help: "Webhook POSTs whose signature matched none of an app's secrets, by registered app.",
		}, []string{"app_id"}),
		ack: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "postgate_webhook_ack_seconds",
			Help:    "Time from receiving a webhook POST to answering it.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		batchEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "postgate_webhook_commit_batch_events",
			Help:    "Events per group-committed transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		batchReqs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "postgate_webhook_commit_batch_requests",
			Help:    "Webhook requests sharing one group-committed transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "postgate_webhook_commit_seconds",
			Help:    "Duration of one group commit.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "postgate_webhook_redis_errors_total",
			Help: "Dedup round trips that failed; the Postgres unique key deduplicated alone.",
		}),
	}
	m.lastEvent = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "postgate_webhook_last_event_timestamp_seconds",
		Help: "Unix time of the last correctly signed webhook POST, by registered app (an app gone silent may have lost its subscription at Meta).",
	}, []string{"app_id"})
	reg.MustRegister(m.requests, m.events, m.sigFailures, m.ack, m.batchEvents, m.batchReqs, m.commitTime, m.redisErrors, m.lastEvent)
	return m
}

func (m *metrics) countEvents(r *Result, tests int) {
	add := func(outcome string, n int) {
		if n > 0 {
			m.events.WithLabelValues(outcome).Add(float64(n))
		}
	}
	add("accepted", r.Accepted)
	add("duplicate", r.Duplicates)
	add("unroutable", r.Unroutable)
	add("inconsistent", r.Inconsistent)
	add("filtered", r.Filtered)
	add("invalid", r.Invalid)
	add("test", tests)
}
