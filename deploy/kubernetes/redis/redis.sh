#!/bin/sh
# redis-server of pod llmgw-redis-N: the primary the sentinels name, or a replica of it.
# On the group's very first start no sentinel knows a primary yet: pod 0 is the primary and
# the others replicate it. After a failover the sentinels' answer wins, so a restarted
# former primary comes back as a replica instead of a second primary.
set -eu
SELF="${POD_NAME}.llmgw-redis.${POD_NAMESPACE}.svc"

primary=""
i=0
while [ "$i" -lt "$REPLICAS" ]; do
  primary=$(redis-cli -h "llmgw-redis-$i.llmgw-redis.${POD_NAMESPACE}.svc" -p 26379 --raw \
            sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | head -n 1) || primary=""
  [ -n "$primary" ] && break
  i=$((i + 1))
done
[ -n "$primary" ] || primary="llmgw-redis-0.llmgw-redis.${POD_NAMESPACE}.svc"

# The configuration goes to a file in an emptyDir, so the password is not on a command line.
{
  echo "port 6379"
  echo "dir /data"
  # Append-only file, fsync every second, as docker-compose.yml's Redis.
  echo "appendonly yes"
  echo "appendfsync everysec"
  echo 'save ""'
  echo "requirepass $REDIS_PASSWORD"
  echo "masterauth $REDIS_PASSWORD"
  echo "replica-announce-ip $SELF"
  if [ "$primary" != "$SELF" ]; then
    echo "replicaof $primary 6379"
  fi
} > /run/redis/redis.conf
echo "starting redis-server; primary: $primary"
exec redis-server /run/redis/redis.conf
