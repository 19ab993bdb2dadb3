package database

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Listener keeps a LISTEN on one channel through lost connections.
type Listener struct {
	Pool    *pgxpool.Pool
	Channel string
	// Serve runs on each new connection once LISTEN has taken effect,
	// and waits for notifications until it fails or ctx ends.
	Serve func(ctx context.Context, conn *pgx.Conn) error
	// Lost, if set, runs after a lost connection, before the next try:
	// notifications sent meanwhile are gone.
	Lost func(ctx context.Context)
	// RetryEvery is the wait before reconnecting. Default 1s.
	RetryEvery time.Duration
	// Log says when a listener is lost; nil discards.
	Log *slog.Logger
}

// Run listens until ctx ends.
func (l *Listener) Run(ctx context.Context) {
	retry := l.RetryEvery
	if retry <= 0 {
		retry = time.Second
	}
	log := l.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for ctx.Err() == nil {
		err := l.listen(ctx)
		if ctx.Err() != nil {
			return
		}
		log.Warn("LISTEN connection lost; reconnecting", "channel", l.Channel, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry):
		}
		if l.Lost != nil {
			l.Lost(ctx)
		}
	}
}

func (l *Listener) listen(ctx context.Context) error {
	pc, err := l.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	conn := pc.Hijack() // a LISTEN connection must not go back to the pool
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.Channel}.Sanitize()); err != nil {
		return err
	}
	return l.Serve(ctx, conn)
}
