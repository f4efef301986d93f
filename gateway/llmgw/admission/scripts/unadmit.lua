-- Undo an admission whose verdict reached the gateway after its caller gave up: the caller
-- answered without it (refused, or admitted by its local limiter), so what the script took
-- must go back, or it would hold a lease nobody settles and count the request twice.
--
-- KEYS: exactly admit.lua's (per scope: rps bucket, rpm log, tpm log, tpm weights, leases,
--   quota prefix; then the global leases; then, for a final admission, the usage prefix).
-- Arguments (one JSON array): admission id, tokens reserved, day, month, number of scopes,
--   then, for a final admission only: usage retention secs and the usage field/increment
--   pairs, already negated. The rps bucket is left alone: it refills within a second.
-- Idempotent: a marker in the organisation's slot makes a second run do nothing.
-- (count_usage comes from usage.lua, loaded in front of this script.)
local A = cjson.decode(ARGV[1])
local rid, reserve, day, month, nscopes = A[1], tonumber(A[2]), A[3], A[4], tonumber(A[5])
if redis.call('SET', KEYS[6] .. 'undone:' .. rid, 1, 'NX', 'PX', 600000) == false then
  return 0
end
for s = 0, nscopes - 1 do
  local k = s * 6
  redis.call('ZREM', KEYS[k + 2], rid)
  local weight = redis.call('HGET', KEYS[k + 4], rid)
  if weight then
    redis.call('HDEL', KEYS[k + 4], rid)
    redis.call('HINCRBY', KEYS[k + 4], '__sum', -tonumber(weight))
    redis.call('ZREM', KEYS[k + 3], rid)
  end
  redis.call('ZREM', KEYS[k + 5], rid)
  local qd, qm = KEYS[k + 6] .. 'd:' .. day, KEYS[k + 6] .. 'm:' .. month
  if redis.call('EXISTS', qd) == 1 then
    redis.call('HINCRBY', qd, 'req', -1)
    if reserve ~= 0 then redis.call('HINCRBY', qd, 'tok', -reserve) end
  end
  if reserve ~= 0 and redis.call('EXISTS', qm) == 1 then
    redis.call('HINCRBY', qm, 'tok', -reserve)
  end
end
redis.call('ZREM', KEYS[nscopes * 6 + 1], rid)
if A[6] ~= nil then
  local t = redis.call('TIME')
  count_usage(KEYS[nscopes * 6 + 2], tonumber(t[1]), tonumber(A[6]), A, 7)
end
return 1
