-- A line's result is durably spooled: record it, once. Only the attempt that holds the
-- line's lease may (a runner thought dead whose line ran again elsewhere is too late).
--
-- KEYS: job, leases, orgload, done bitmap, attempts, winners.
-- ARGV: lease member (org:id:line), org, line, attempt, 'completed' or 'failed', input tokens,
--   output tokens, cached input tokens, reasoning tokens.
-- Returns 0: not this attempt's (nothing changed); 1: recorded; 2: recorded, and the job is
-- ready to finalise (every line done, or a stopping job's last line in flight).
local line, attempt = ARGV[3], ARGV[4]
if redis.call('HGET', KEYS[5], line) ~= attempt then return 0 end
if redis.call('GETBIT', KEYS[4], tonumber(line)) == 1 then return 0 end
redis.call('SETBIT', KEYS[4], tonumber(line), 1)
redis.call('HDEL', KEYS[5], line)
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HINCRBY', KEYS[3], ARGV[2], -1)
if tonumber(attempt) > 1 then redis.call('HSET', KEYS[6], line, attempt) end
redis.call('HINCRBY', KEYS[1], ARGV[5], 1)
redis.call('HINCRBY', KEYS[1], 'in_tok', tonumber(ARGV[6]))
redis.call('HINCRBY', KEYS[1], 'out_tok', tonumber(ARGV[7]))
redis.call('HINCRBY', KEYS[1], 'cached_tok', tonumber(ARGV[8]))
redis.call('HINCRBY', KEYS[1], 'reasoning_tok', tonumber(ARGV[9]))
local inflight = redis.call('HINCRBY', KEYS[1], 'inflight', -1)
local f = redis.call('HMGET', KEYS[1], 'status', 'total', 'completed', 'failed')
if f[1] == 'in_progress' and (tonumber(f[3]) or 0) + (tonumber(f[4]) or 0) >= tonumber(f[2]) then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'status', 'finalizing', 'finalizing_at', t[1])
  return 2
end
if (f[1] == 'cancelling' or f[1] == 'finalizing') and inflight <= 0 then return 2 end
return 1
