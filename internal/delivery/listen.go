package delivery

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/postgate/postgate/internal/database"
)

// listen wakes the claim loop whenever the ingress has committed new
// events, on any replica, until ctx ends. Without it new work waits for
// the next poll (PollInterval); with it, for the commit's notification.
// While the connection is lost, polling goes on.
func (w *Worker) listen(ctx context.Context) {
	l := database.Listener{Pool: w.pool, Channel: database.DeliveriesChannel, Serve: w.serveNotifications, Log: w.log}
	l.Run(ctx)
}

func (w *Worker) serveNotifications(ctx context.Context, conn *pgx.Conn) error {
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return err
		}
		w.poke()
	}
}
