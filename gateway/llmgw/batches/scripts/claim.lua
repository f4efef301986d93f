-- Claim one line of batch work for a runner, or nothing.
--
-- First a line whose lease ran out (its runner died, or gave it back to be run later): it runs
-- again under the next attempt number. A leased line of a job no longer running (cancelled,
-- expired) is dropped instead. Then a new line: of the organisation with the fewest lines
-- leased (so one organisation's 50,000-line batch does not starve another's 10 lines), its
-- first job in `runnable` order: lowest priority value, then oldest.
--
-- KEYS: runnable, leases, orgload; then the key prefix (not a key: job keys are built from it,
--   all under the same hash tag).
-- ARGV: lease ms, JSON list of models to skip (their backends have no room now), how many due
--   leases to look at.
-- Returns {org, batch id, line, attempt} or an empty list.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local P, lease = KEYS[4], tonumber(ARGV[1])
local skip = {}
for _, m in ipairs(cjson.decode(ARGV[2])) do skip[m] = true end

local function paused(org) return redis.call('EXISTS', P .. 'pause:' .. org) == 1 end

local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  local org, id, line = string.match(member, '^([^:]+):([^:]+):(%d+)$')
  local job = P .. 'job:' .. org .. ':' .. id
  local f = redis.call('HMGET', job, 'status', 'model')
  if f[1] ~= 'in_progress' then
    redis.call('ZREM', KEYS[2], member)
    redis.call('HINCRBY', KEYS[3], org, -1)
    if f[1] then
      redis.call('HDEL', P .. 'att:' .. org .. ':' .. id, line)
      redis.call('HINCRBY', job, 'inflight', -1)
    end
  elseif not skip[f[2]] and not paused(org) then
    local attempt = redis.call('HINCRBY', P .. 'att:' .. org .. ':' .. id, line, 1)
    redis.call('ZADD', KEYS[2], now + lease, member)
    return {org, id, tonumber(line), attempt}
  end
end

local jobs = redis.call('ZRANGE', KEYS[1], 0, 999)
local best
for _, member in ipairs(jobs) do
  local org, id = string.match(member, '^([^:]+):(.+)$')
  if not paused(org) and not skip[redis.call('HGET', P .. 'job:' .. org .. ':' .. id, 'model')] then
    local load = tonumber(redis.call('HGET', KEYS[3], org)) or 0
    if best == nil or load < best.load then best = {org = org, id = id, member = member, load = load} end
  end
end
if best == nil then return {} end

local job = P .. 'job:' .. best.org .. ':' .. best.id
local f = redis.call('HMGET', job, 'status', 'total')
local total = tonumber(f[2]) or 0
if f[1] ~= 'in_progress' then
  redis.call('ZREM', KEYS[1], best.member)
  return {}
end
local line = redis.call('HINCRBY', job, 'next', 1) - 1
if line + 1 >= total then redis.call('ZREM', KEYS[1], best.member) end
if line >= total then return {} end
redis.call('HINCRBY', job, 'inflight', 1)
redis.call('HINCRBY', KEYS[3], best.org, 1)
redis.call('HSET', P .. 'att:' .. best.org .. ':' .. best.id, line, 1)
redis.call('ZADD', KEYS[2], now + lease, best.member .. ':' .. line)
return {best.org, best.id, line, 1}
