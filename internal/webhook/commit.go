package webhook

import (
	"context"
	"errors"
	"time"

	"github.com/postgate/postgate/internal/event"
)

// Group commit: every request hands its rows to one of CommitWorkers
// loops and waits. A loop takes one request, then every request queued
// behind it (up to MaxBatchEvents), checks them all against Redis in one
// pipeline (dedup.go), and stores the rest in one INSERT, one transaction
// and one WAL flush. While a commit is in flight the next batch gathers,
// so the batch grows with the load without a fixed wait.

var errStopped = errors.New("ingest is shutting down")

type commitReq struct {
	rows []row
	done chan commitResult
}

type commitResult struct {
	inserted int
	err      error
}

// commit stores rows and returns how many were new (the rest were
// duplicates by the durable key).
func (in *Ingestor) commit(ctx context.Context, rows []row) (int, error) {
	req := &commitReq{rows: rows, done: make(chan commitResult, 1)}
	select {
	case in.commits <- req:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	select {
	case r := <-req.done:
		return r.inserted, r.err
	case <-ctx.Done():
		// The batch may still commit; Meta's retry is then a duplicate.
		return 0, ctx.Err()
	}
}

// Run runs the group-commit loops until ctx ends; requests still queued
// then fail (the HTTP server has drained by then).
func (in *Ingestor) Run(ctx context.Context) {
	done := make(chan struct{})
	for range in.cfg.CommitWorkers {
		go func() {
			in.commitLoop(ctx)
			done <- struct{}{}
		}()
	}
	go func() {
		in.markLoop(ctx)
		done <- struct{}{}
	}()
	go func() {
		in.wakeLoop(ctx)
		done <- struct{}{}
	}()
	for range in.cfg.CommitWorkers + 2 {
		<-done
	}
	for {
		select {
		case req := <-in.commits:
			req.done <- commitResult{err: errStopped}
		default:
			return
		}
	}
}

func (in *Ingestor) commitLoop(ctx context.Context) {
	var batch []*commitReq
	for {
		select {
		case <-ctx.Done():
			return
		case first := <-in.commits:
			batch = append(batch[:0], first)
			n := len(first.rows)
		gather:
			for n < in.cfg.MaxBatchEvents {
				select {
				case next := <-in.commits:
					batch = append(batch, next)
					n += len(next.rows)
				default:
					break gather
				}
			}
			in.flush(batch, n)
		}
	}
}

func (in *Ingestor) flush(batch []*commitReq, n int) {
	start := time.Now()
	in.knownCommitted(batch, n)
	// Not a request's context: one request giving up must not abort the
	// batch it shares with others.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inserted, err := in.insert(ctx, batch, n)
	in.m.commitTime.Observe(time.Since(start).Seconds())
	in.m.batchEvents.Observe(float64(n))
	in.m.batchReqs.Observe(float64(len(batch)))
	// The marker reads the rows after the requests are answered, so the
	// batch slice must be its own, not the loop's reused one.
	batch = append([]*commitReq(nil), batch...)
	if err != nil && len(batch) > 1 && event.IsDataError(err) {
		// Postgres refused a value, not the connection: one request's
		// data failed the shared insert. Store each request alone, so
		// only the one that carries it fails.
		in.log.Warn("group commit refused a value; retrying request by request", "requests", len(batch), "err", err)
		stored := batch[:0:0]
		for _, req := range batch {
			one := []*commitReq{req}
			ins, err := in.insert(ctx, one, len(req.rows))
			in.answer(one, ins, err)
			if err == nil {
				stored = append(stored, req)
			}
		}
		in.mark(stored)
		if len(stored) > 0 {
			in.wakeWorkers()
		}
		return
	}
	in.answer(batch, inserted, err)
	if err == nil {
		in.mark(batch)
		if len(inserted) > 0 {
			in.wakeWorkers()
		}
	}
}

// insert stores the rows of reqs (not those Redis knows are committed) in
// one statement and returns the ids that were new.
func (in *Ingestor) insert(ctx context.Context, reqs []*commitReq, n int) (map[[16]byte]struct{}, error) {
	var b event.Batch
	b.Grow(n)
	for _, req := range reqs {
		for i := range req.rows {
			if !req.rows[i].known {
				b.Add(&req.rows[i].New)
			}
		}
	}
	inserted := make(map[[16]byte]struct{}, b.Len())
	err := in.events.Insert(ctx, &b, func(id [16]byte) { inserted[id] = struct{}{} })
	if err != nil {
		return nil, err
	}
	return inserted, nil
}

// answer tells each request how many of its events were new, or the error.
func (in *Ingestor) answer(reqs []*commitReq, inserted map[[16]byte]struct{}, err error) {
	for _, req := range reqs {
		if err != nil {
			req.done <- commitResult{err: err}
			continue
		}
		c := 0
		for i := range req.rows {
			if _, ok := inserted[req.rows[i].ID]; ok {
				c++
			}
		}
		req.done <- commitResult{inserted: c}
	}
}

// mark hands committed requests to the Redis marker, off the commit loop:
// the next batch must not wait for Redis.
func (in *Ingestor) mark(reqs []*commitReq) {
	if len(reqs) == 0 {
		return
	}
	select {
	case in.marks <- reqs:
	default:
		in.m.redisErrors.Inc() // marker behind: these keys stay Postgres-only
	}
}

// markLoop writes committed marks to Redis in the background. Losing one
// costs nothing but a Postgres round trip for a later redelivery.
func (in *Ingestor) markLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case batch := <-in.marks:
			in.markCommitted(batch)
		}
	}
}

// wakeWorkers asks wakeLoop to tell the delivery workers there is new
// work. Requests coalesce: one notification may cover many commits.
func (in *Ingestor) wakeWorkers() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}

// wakeEvery spaces the notifications: the first after a quiet spell goes
// at once, later ones gather what was committed meanwhile. The workers do
// not claim more often than this anyway (their MinClaimInterval).
const wakeEvery = 5 * time.Millisecond

// wakeLoop sends the notifications wakeWorkers asks for, one at a time,
// until ctx ends. A failed one is only logged: the workers also poll.
func (in *Ingestor) wakeLoop(ctx context.Context) {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-in.wake:
		}
		if wait := time.Until(last.Add(wakeEvery)); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := in.events.Wake(wctx); err != nil && ctx.Err() == nil {
			in.log.Warn("notify delivery workers", "err", err)
		}
		cancel()
	}
}
