package webhook

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis dedup is a fast path only; the durable key is the events table's
// unique (tenant_id, page_id, dedup_key). It runs inside the group commit,
// so a whole batch of requests costs two pipelined round trips, not two
// per request:
//
//  1. before the insert, GET every row's key: a key that says "c" was
//     committed earlier, so that event is a duplicate and skips Postgres;
//  2. after the commit, SET every stored (or already present) row's key to
//     "c" with DEDUP_TTL.
//
// Nothing is written before the commit, so a failed insert or a crash can
// never leave a key that makes Meta's retry look like a duplicate; a
// flushed Redis only costs Postgres work; and with Redis down every event
// goes to Postgres, which still deduplicates.
const doneValue = "c"

// knownCommitted marks the rows whose keys Redis holds as committed.
func (in *Ingestor) knownCommitted(batch []*commitReq, n int) {
	if in.rdb == nil || in.redisDown() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	pipe := in.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, 0, n)
	for _, req := range batch {
		for i := range req.rows {
			cmds = append(cmds, pipe.Get(ctx, req.rows[i].redisKey))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		in.markRedisDown(err)
		return
	}
	k := 0
	for _, req := range batch {
		for i := range req.rows {
			if v, err := cmds[k].Result(); err == nil && v == doneValue {
				req.rows[i].known = true
			}
			k++
		}
	}
}

// markCommitted records a batch's keys as committed, in one round trip,
// so redeliveries stop at Redis.
func (in *Ingestor) markCommitted(batch []*commitReq) {
	if in.rdb == nil || in.redisDown() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	pipe := in.rdb.Pipeline()
	for _, req := range batch {
		for i := range req.rows {
			if !req.rows[i].known {
				pipe.Set(ctx, req.rows[i].redisKey, doneValue, in.cfg.DedupTTL)
			}
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		in.markRedisDown(err)
	}
}

func (in *Ingestor) redisDown() bool {
	return in.redisBackoff.Down(in.cfg.Now())
}

func (in *Ingestor) markRedisDown(err error) {
	in.m.redisErrors.Inc()
	if in.redisBackoff.Failed(in.cfg.Now()) {
		in.log.Warn("redis unavailable; deduplicating in postgres only", "err", err, "retry_in", in.cfg.RedisBackoff)
	}
}
