-- Settlement: replace a request's token reservation by what it really used, release its
-- concurrency leases, and count its usage, in one round trip after the answer is sent.
--
-- KEYS, per scope (4 each): tpm log, tpm weights, concurrency leases, quota prefix;
--   then the global concurrency leases; then the usage prefix (hourly and daily buckets);
--   then, for a batch line, its job's bill-once bitmap.
-- Arguments: request id, reserved tokens, used tokens, day, month, number of scopes,
--   usage retention secs, the batch line (-1: not one), the bitmap's lifetime ms, then usage
--   field/increment pairs. Usage buckets are UTC hours and days since the epoch, by Redis'
--   clock. A batch line already billed (it ran again: its runner died after the answer)
--   bills nothing and counts no usage: its reservation goes back whole.

-- The arguments arrive as one JSON array (ARGV[1]): one argument to encode instead of
-- dozens, which is most of a Python Redis client's cost per call.
local A = cjson.decode(ARGV[1])
local rid, reserved, used = A[1], tonumber(A[2]), tonumber(A[3])
local day, month, nscopes = A[4], A[5], tonumber(A[6])
local retention = tonumber(A[7])
-- Run twice (its reply was lost with its connection and the channel sent it again): the sums
-- must move once. The marker outlives any resend, which comes within the caller's time limit.
if redis.call('SET', KEYS[4] .. 'settled:' .. rid, 1, 'NX', 'PX', 60000) == false then
  return 0
end
local t = redis.call('TIME')
local line, billed_before = tonumber(A[8]), false
if line >= 0 and used > 0 then  -- an attempt that billed nothing leaves the line unbilled
  local bitmap = KEYS[nscopes * 4 + 3]
  billed_before = redis.call('SETBIT', bitmap, line, 1) == 1
  if redis.call('PTTL', bitmap) < 0 then redis.call('PEXPIRE', bitmap, tonumber(A[9])) end
  if billed_before then used = 0 end
end
if billed_before then  -- nor does its admission count as a request of the daily quota
  for s = 0, nscopes - 1 do
    local qd = KEYS[s * 4 + 4] .. 'd:' .. day
    if redis.call('EXISTS', qd) == 1 then redis.call('HINCRBY', qd, 'req', -1) end
  end
end
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

if not billed_before then
  count_usage(KEYS[nscopes * 4 + 2], tonumber(t[1]), retention, A, 10)  -- usage.lua
end
return 1
