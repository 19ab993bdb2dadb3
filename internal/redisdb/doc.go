// Package redisdb opens the gateway's Redis client from REDIS_URL.
//
// It always returns a redis.UniversalClient, so the rest of the code works the
// same against one server, a Sentinel-managed primary or a Cluster:
//
//   - redis://[user:pass@]host:6379/0 (or rediss:// for TLS): one server.
//   - redis://host1:26379?master_name=mymaster&addr=host2:26379: Sentinel;
//     the hosts are the sentinels and master_name selects the primary.
//   - redis://host1:6379?addr=host2:6379&addr=host3:6379, or any URL with
//     REDIS_CLUSTER=true: Cluster (a single configuration endpoint needs the
//     flag, or go-redis would silently treat it as one server).
//
// Every key the gateway writes starts with a tenant or app, and no command
// touches keys of two tenants at once, so all of it is Cluster-safe.
package redisdb
