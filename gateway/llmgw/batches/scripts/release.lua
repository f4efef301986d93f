-- Give a leased line back, to be claimed again after `delay` ms (no room on the backends, a
-- quota spent, a transient failure). Only the attempt that holds it may.
-- KEYS: leases, attempts. ARGV: lease member, line, attempt, delay ms.
if redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[3] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[4]), ARGV[1])
return 1
