#!/usr/bin/env bash
# Make sure Postgres and Redis run on localhost, as the tests and `make run`
# expect. Starts them if stopped; installs them from Debian's packages if
# missing (needs root, as on CI machines).
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

if ! command -v pg_ctlcluster >/dev/null || ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "installing postgresql from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if ! command -v redis-server >/dev/null; then
  echo "installing redis-server from Debian's packages"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
fi

if ! pg_up; then
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  echo "starting postgresql $ver"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  # A fresh install answers only on the socket with peer auth: allow the
  # local, trusted access the tests use (postgres@127.0.0.1, no password).
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! psql -h 127.0.0.1 -U postgres -Atc 'select 1' postgres >/dev/null 2>&1; then
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  echo "allowing trusted local TCP connections in $hba"
  as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
  sleep 1
fi
if ! redis_up; then
  echo "starting redis"
  mkdir -p /tmp/postgate-redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /tmp/postgate-redis --logfile /tmp/postgate-redis/redis.log
  for _ in $(seq 1 30); do redis_up && break; sleep 0.2; done
fi
pg_up || { echo "postgres is not answering on 127.0.0.1:5432" >&2; exit 1; }
redis_up || { echo "redis is not answering on 127.0.0.1:6379" >&2; exit 1; }
echo "postgres and redis are up"
