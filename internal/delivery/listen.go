package delivery

import (
	"context"
	"time"

	"github.com/postgate/postgate/internal/database"
)

// listen wakes the claim loop whenever new deliveries are queued, on any
// replica, until ctx ends. Without it new work waits for the next poll
// (PollInterval); with it, for the commit's notification. A lost
// connection is retried every second; meanwhile polling goes on.
func (w *Worker) listen(ctx context.Context) {
	for ctx.Err() == nil {
		err := w.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("delivery listener lost; polling until it is back", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (w *Worker) listenOnce(ctx context.Context) error {
	pc, err := w.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Hijack() // a LISTEN connection must not go back to the pool
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+database.DeliveriesChannel); err != nil {
		return err
	}
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}
