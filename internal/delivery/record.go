package delivery

import (
	"context"
	"slices"
	"time"

	"github.com/postgate/postgate/internal/event"
)

// Outcomes are written in groups: the loop takes one outcome, then every
// outcome that arrives within FlushWait (up to MaxFlush), and records them
// all in one transaction (event.Store.Record). While a write is in flight
// the next group gathers.

// drainFlushFor bounds the retries of an outcome write during shutdown.
const drainFlushFor = 5 * time.Second

func (w *Worker) flushLoop() {
	batch := make([]event.Outcome, 0, w.cfg.MaxFlush)
	timer := time.NewTimer(0)
	<-timer.C
	for {
		o, ok := <-w.outcomes
		if !ok {
			return
		}
		batch = append(batch[:0], o)
		closed := false
		timer.Reset(w.cfg.FlushWait)
	gather:
		for len(batch) < w.cfg.MaxFlush {
			select {
			case o, ok := <-w.outcomes:
				if !ok {
					closed = true
					break gather
				}
				batch = append(batch, o)
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		w.flushRetrying(batch)
		if closed {
			return
		}
	}
}

// flushRetrying writes a batch, retrying with backoff while Postgres is
// unavailable. Meanwhile outcomes queue up and, once the queue is full,
// attempts wait to report theirs, so claiming stops: backpressure, not
// loss. If the worker dies meanwhile, the leases expire and the events
// are delivered again (at least once).
//
// While Run drains, it gives up after drainFlushFor: the events' leases
// then expire and another worker delivers them again.
func (w *Worker) flushRetrying(batch []event.Outcome) {
	backoff := 50 * time.Millisecond
	start := time.Now()
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := w.events.Record(ctx, batch)
		cancel()
		if err == nil {
			// A settled head releases the next event of its conversation
			// (an ordered endpoint), claimable only now that the outcome
			// is committed: claim again rather than wait for the poll.
			if slices.ContainsFunc(batch, func(o event.Outcome) bool { return o.Ordered && o.Status.Settled() }) {
				w.poke()
			}
			return
		}
		w.m.flushErrors.Inc()
		if w.draining.Load() && time.Since(start) > drainFlushFor {
			w.log.Error("delivery outcomes not recorded at shutdown; their events will be delivered again after the lease",
				"outcomes", len(batch), "err", err)
			return
		}
		w.log.Error("record delivery outcomes; retrying", "outcomes", len(batch), "attempt", attempt, "err", err)
		time.Sleep(backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}
