package delivery

import "context"

// listen wakes the claim loop whenever the ingress has committed new
// events, on any replica, until ctx ends. Without it new work waits for
// the next poll (PollInterval); with it, for the commit's notification.
// While the connection is lost, polling goes on.
func (w *Worker) listen(ctx context.Context) {
	w.events.Listen(ctx, w.log, w.poke)
}
