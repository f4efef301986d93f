-- Settlement: replace a request's token reservation by what it really used, release its
-- concurrency leases, and count its usage, in one round trip after the answer is sent.
--
-- KEYS, per scope (4 each): tpm log, tpm weights, concurrency leases, quota prefix;
--   then the global concurrency leases; then the usage prefix (hourly and daily buckets).
-- ARGV: request id, reserved tokens, used tokens, day, month, number of scopes,
--   usage retention secs, then usage field/increment pairs. Usage buckets are UTC hours and
--   days since the epoch, by Redis' clock.

local rid, reserved, used = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local day, month, nscopes = ARGV[4], ARGV[5], tonumber(ARGV[6])
local retention = tonumber(ARGV[7])
local t = redis.call('TIME')
local hour_bucket = math.floor(tonumber(t[1]) / 3600)
local day_bucket = math.floor(hour_bucket / 24)
local delta = used - reserved

for s = 0, nscopes - 1 do
  local k = s * 4
  -- Only while the entry is still in the window: an expired one has already left the sum.
  if redis.call('HEXISTS', KEYS[k + 2], rid) == 1 then
    redis.call('HSET', KEYS[k + 2], rid, used)
    redis.call('HINCRBY', KEYS[k + 2], '__sum', delta)
  end
  redis.call('ZREM', KEYS[k + 3], rid)
  if delta ~= 0 then
    local qd, qm = KEYS[k + 4] .. 'd:' .. day, KEYS[k + 4] .. 'm:' .. month
    if redis.call('EXISTS', qd) == 1 then redis.call('HINCRBY', qd, 'tok', delta) end
    if redis.call('EXISTS', qm) == 1 then redis.call('HINCRBY', qm, 'tok', delta) end
  end
end
redis.call('ZREM', KEYS[nscopes * 4 + 1], rid)

local usage = KEYS[nscopes * 4 + 2]
local hourly, daily = usage .. 'h:' .. hour_bucket, usage .. 'd:' .. day_bucket
for i = 8, #ARGV, 2 do
  local n = tonumber(ARGV[i + 1])
  if n ~= 0 then
    redis.call('HINCRBY', hourly, ARGV[i], n)
    redis.call('HINCRBY', daily, ARGV[i], n)
  end
end
redis.call('EXPIRE', hourly, retention)
redis.call('EXPIRE', daily, retention)
return 1
