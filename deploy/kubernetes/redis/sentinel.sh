#!/bin/sh
# redis-sentinel of pod llmgw-redis-N. Its configuration is written afresh at each start into
# an emptyDir (Sentinel rewrites the file as it learns); the replicas and the other sentinels
# it learns again from the primary within seconds.
set -eu
SELF="${POD_NAME}.llmgw-redis.${POD_NAMESPACE}.svc"

primary=""
i=0
while [ "$i" -lt "$REPLICAS" ]; do
  host="llmgw-redis-$i.llmgw-redis.${POD_NAMESPACE}.svc"
  if [ "$host" != "$SELF" ]; then
    primary=$(redis-cli -h "$host" -p 26379 --raw \
              sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | head -n 1) || primary=""
    [ -n "$primary" ] && break
  fi
  i=$((i + 1))
done
[ -n "$primary" ] || primary="llmgw-redis-0.llmgw-redis.${POD_NAMESPACE}.svc"

# A majority of the three sentinels must agree that the primary is down.
cat > /sentinel/sentinel.conf <<CONF
port 26379
# No password of its own: only the gateways, the runners and the Redis pods reach this port
# (NetworkPolicy llmgw-redis).
protected-mode no
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $SELF
sentinel monitor $MASTER_NAME $primary 6379 $QUORUM
sentinel auth-pass $MASTER_NAME $REDIS_PASSWORD
sentinel down-after-milliseconds $MASTER_NAME 5000
sentinel failover-timeout $MASTER_NAME 60000
sentinel parallel-syncs $MASTER_NAME 1
CONF
echo "starting redis-sentinel; primary: $primary"
exec redis-sentinel /sentinel/sentinel.conf
