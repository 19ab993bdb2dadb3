package redisdb

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
)

// Open builds the client for rawURL without connecting; Ping checks it.
func Open(rawURL string, cluster bool) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL: %w", err)
	}
	q := u.Query()
	switch {
	case q.Has("master_name"):
		opts, err := redis.ParseFailoverURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL as a Sentinel URL: %w", err)
		}
		tune(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout)
		return redis.NewFailoverClient(opts), nil
	case cluster || q.Has("addr"):
		opts, err := redis.ParseClusterURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL as a Cluster URL: %w", err)
		}
		tune(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout)
		return redis.NewClusterClient(opts), nil
	default:
		opts, err := redis.ParseURL(rawURL)
		if err != nil {
			return nil, fmt.Errorf("parse REDIS_URL: %w", err)
		}
		tune(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout)
		opts.PoolSize = 128
		return redis.NewClient(opts), nil
	}
}

// tune shortens the timeouts the URL left at their defaults: the ingress
// treats Redis as an optimisation and must not wait seconds for it while
// Meta waits for its 200.
func tune(dial, read, write *time.Duration) {
	if *dial == 0 {
		*dial = 2 * time.Second
	}
	if *read == 0 {
		*read = 500 * time.Millisecond
	}
	if *write == 0 {
		*write = 500 * time.Millisecond
	}
}

// Ping reports whether Redis answers within ctx.
func Ping(ctx context.Context, c redis.UniversalClient) error {
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}
