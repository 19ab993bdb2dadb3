package webhook

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis dedup is a fast path only; the durable key is the events table's
// unique (tenant_id, page_id, dedup_key). A key goes through two states:
//
//	"p" (pending): set with SET NX by the request that is storing the event,
//	    with a short TTL. Another request that finds "p" does not trust it
//	    (the first one may yet fail or crash) and lets Postgres decide.
//	"c" (committed): set after the commit, with DEDUP_TTL. A request that
//	    finds "c" drops the event as a duplicate without touching Postgres.
//
// So a key set for an event whose insert then failed can never make Meta's
// retry look like a duplicate, and a flushed Redis only costs Postgres work.
const (
	pendingValue = "p"
	doneValue    = "c"
	pendingTTL   = 30 * time.Second
)

// dedupFast drops events Redis knows are committed and claims the rest, in
// one pipelined round trip. If Redis fails, every event goes to Postgres.
func (in *Ingestor) dedupFast(ctx context.Context, rows []row, res *Result) []row {
	if in.rdb == nil || in.redisDown() {
		return rows
	}
	ctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	pipe := in.rdb.Pipeline()
	cmds := make([]*redis.StatusCmd, len(rows))
	for i := range rows {
		cmds[i] = pipe.SetArgs(ctx, rows[i].redisKey, pendingValue, redis.SetArgs{Mode: "NX", Get: true, TTL: pendingTTL})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		in.markRedisDown(err)
		return rows
	}
	kept := rows[:0]
	for i, cmd := range cmds {
		v, err := cmd.Result()
		switch {
		case errors.Is(err, redis.Nil):
			rows[i].claimed = true // the key was ours to set
			kept = append(kept, rows[i])
		case err != nil:
			kept = append(kept, rows[i])
		case v == doneValue:
			res.Duplicates++
		default:
			kept = append(kept, rows[i]) // pending elsewhere: Postgres decides
		}
	}
	return kept
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
			pipe.Set(ctx, req.rows[i].redisKey, doneValue, in.cfg.DedupTTL)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		in.markRedisDown(err)
	}
}

// release deletes the pending keys this request set, so Meta's retry of a
// request we answered 503 is stored, not dropped. Best effort: a key that
// survives is only "pending", which is never trusted.
func (in *Ingestor) release(rows []row) {
	if in.rdb == nil || in.redisDown() {
		return
	}
	var keys []string
	for i := range rows {
		if rows[i].claimed {
			keys = append(keys, rows[i].redisKey)
		}
	}
	if len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	pipe := in.rdb.Pipeline()
	for _, k := range keys {
		pipe.Del(ctx, k)
	}
	_, _ = pipe.Exec(ctx)
}

func (in *Ingestor) redisDown() bool {
	return in.cfg.Now().UnixNano() < in.redisDownUntil.Load()
}

func (in *Ingestor) markRedisDown(err error) {
	in.m.redisErrors.Inc()
	until := in.cfg.Now().Add(in.cfg.RedisBackoff).UnixNano()
	if prev := in.redisDownUntil.Swap(until); prev < in.cfg.Now().UnixNano() {
		in.log.Warn("redis unavailable; deduplicating in postgres only", "err", err, "retry_in", in.cfg.RedisBackoff)
	}
}
