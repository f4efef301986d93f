-- Lease the first member of a sorted set whose score (a lease deadline, ms) has passed, or a
-- named member if its lease has passed (or it has none): the member, or nil.
-- KEYS: the set. ARGV: lease ms, the member ('' for the first due one).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local member = ARGV[2]
if member == '' then
  member = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)[1]
  if not member then return nil end
else
  local score = redis.call('ZSCORE', KEYS[1], member)
  if score and tonumber(score) > now then return nil end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), member)
return member
