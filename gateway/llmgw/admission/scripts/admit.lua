-- Admission: check every limit of every scope (organisation, then key) and take them all, or
-- take nothing. One round trip; Redis' own clock (TIME), never a worker's.
--
-- KEYS, per scope (6 each): rps bucket, rpm log, tpm log, tpm weights, concurrency leases,
--   quota prefix (not a key itself: "<prefix>d:<day>" and "<prefix>m:<month>" are built here,
--   sharing the scope's hash tag, so they live in the same cluster slot);
--   then the global concurrency leases; then, for a final admission, the usage prefix.
-- Idempotent per admission id: a second run returns the first one's verdict (see the marker).
-- Arguments: admission id (made by the gateway, unique: never a client's value), lease ms,
--   tokens to reserve, time-zone offset secs, number of scopes, deadline (ms, Redis time),
--   then per scope 8 limits (0 = not limited here): rps, burst, rpm, tpm, max_concurrent,
--   daily_tokens, daily_requests, monthly_tokens; then the global max concurrent (0 = none);
--   then, only for a final admission: usage retention secs and usage field/increment pairs.
-- A final admission is a request answered without a backend (a cache hit): it takes no lease,
-- what it reserves is exactly what it bills, and its usage is counted here, so it has nothing
-- to settle afterwards. (count_usage comes from usage.lua, loaded in front of this script.)
-- Returns {admitted 1|0, code, retry_ms, rpm_limit, rpm_remaining, rpm_reset_ms,
--          tpm_limit, tpm_remaining, tpm_reset_ms, day, month,
--          the organisation's daily tokens, daily requests and monthly tokens used (if admitted),
--          room: how many more requests of this size every limit would still let in (if admitted),
--          Redis's time in ms (the gateway learns the clocks' offset from it)}

-- The arguments arrive as one JSON array (ARGV[1]): one argument to encode instead of
-- dozens, which is most of a Python Redis client's cost per call.
local A = cjson.decode(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rid, lease_ms, reserve = A[1], tonumber(A[2]), tonumber(A[3])
local tz, nscopes = tonumber(A[4]), tonumber(A[5])
local final = A[8 + nscopes * 8] ~= nil
local WINDOW = 60000
local MARKER_MS = 10000  -- how long past its deadline an admitted id's verdict is kept

-- Run twice: the first run's reply was lost with its connection and the channel sent the
-- script again. That run's verdict is the answer; taking everything a second time would count
-- the request twice, drift the tpm sum, and meet its own lease under max_concurrent. (A send
-- whose caller had given up comes only to learn this verdict, so the gateway can undo it.)
local marker = KEYS[6] .. 'admitted:' .. rid
local before = redis.call('GET', marker)
if before then
  local verdict = cjson.decode(before)
  verdict[16] = now
  return verdict
end

-- Past its deadline, the caller has given up (a stalled Redis, a command resent on a new
-- connection) and answered without this verdict, perhaps admitted by its local limiter: taking
-- anything now would hold a lease nobody settles and count the request twice.
if now > tonumber(A[6]) then
  return {0, 'expired', 0, 0, -1, 0, 0, -1, 0, 0, 0, 0, 0, 0, 0, now}
end

-- Civil date from days since 1970-01-01 (Howard Hinnant's algorithm): the month key.
local function year_month(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return y * 100 + m
end

local local_secs = math.floor(now / 1000) + tz
local day = math.floor(local_secs / 86400)
local month = year_month(day)
local next_day_ms = ((day + 1) * 86400 - tz) * 1000 - now
local function next_month_ms()
  local d = day + 1
  while year_month(d) == month do d = d + 1 end
  return (d * 86400 - tz) * 1000 - now
end

-- Keep a key for at least `ms` more. Expiry writes are most of what a write costs here (each
-- one is propagated to the AOF); reading the expiry is not. So it is written only when it would
-- fall short, and then for twice as long: a busy key has its expiry written once per `ms`.
local function keep(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms * 2) end
end

local function refuse(code, retry, info)
  return {0, code, math.max(1, math.ceil(retry)), info[1], info[2], info[3], info[4], info[5], info[6], day, month, 0, 0, 0, 0, now}
end

-- Drop tpm entries older than the window, keeping the running sum exact.
local function purge_tpm(log, weights)
  local old = redis.call('ZRANGEBYSCORE', log, '-inf', now - WINDOW)
  if #old > 0 then
    local freed = 0
    for _, id in ipairs(old) do freed = freed + (tonumber(redis.call('HGET', weights, id)) or 0) end
    redis.call('HDEL', weights, unpack(old))
    redis.call('ZREM', log, unpack(old))
    redis.call('HINCRBY', weights, '__sum', -freed)
  end
  return tonumber(redis.call('HGET', weights, '__sum')) or 0
end

-- Milliseconds until enough tpm weight leaves the window for `need` more tokens.
local function tpm_wait(log, weights, need)
  local freed, entries = 0, redis.call('ZRANGE', log, 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    freed = freed + (tonumber(redis.call('HGET', weights, entries[i])) or 0)
    if freed >= need then return tonumber(entries[i + 1]) + WINDOW - now end
  end
  return WINDOW
end

local function oldest_plus_window(zset)
  local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  return first[2] and (tonumber(first[2]) + WINDOW - now) or WINDOW
end

local info = {0, -1, 0, 0, -1, 0}  -- rpm limit/remaining/reset, tpm limit/remaining/reset (org scope)
local state = {}
-- The tightest limit's spare capacity after this admission, in requests like this one. The
-- gateway uses it only to decide whether the next request may start its backend call before
-- its own verdict arrives (a hint: every request is still admitted here, exactly).
local ROOM_CAP = 1000000000
local room = ROOM_CAP
local function fits(limit, used, each)
  if limit > 0 then room = math.min(room, math.floor((limit - used) / math.max(each, 1)) - 1) end
end

for s = 0, nscopes - 1 do
  local k, a = s * 6, 7 + s * 8
  local rps, burst, rpm, tpm = tonumber(A[a]), tonumber(A[a + 1]), tonumber(A[a + 2]), tonumber(A[a + 3])
  local conc, dtok, dreq, mtok = tonumber(A[a + 4]), tonumber(A[a + 5]), tonumber(A[a + 6]), tonumber(A[a + 7])
  local st = {}
  state[s] = st

  if conc > 0 and not final then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 5], '-inf', now)
    local running = redis.call('ZCARD', KEYS[k + 5])
    if running >= conc then
      local soonest = redis.call('ZRANGE', KEYS[k + 5], 0, 0, 'WITHSCORES')
      return refuse('limit_concurrent', tonumber(soonest[2]) - now, info)
    end
    fits(conc, running, 1)
  end

  if rpm > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 2], '-inf', now - WINDOW)
    local used = redis.call('ZCARD', KEYS[k + 2])
    local reset = used > 0 and oldest_plus_window(KEYS[k + 2]) or 0
    if s == 0 then info[1], info[2], info[3] = rpm, rpm - used - 1, reset end
    if used >= rpm then
      if s == 0 then info[2] = 0 end
      return refuse('limit_rpm', reset, info)
    end
    fits(rpm, used, 1)
  end

  if tpm > 0 then
    local sum = purge_tpm(KEYS[k + 3], KEYS[k + 4])
    if s == 0 then info[4], info[5], info[6] = tpm, math.max(0, tpm - sum - reserve), sum > 0 and oldest_plus_window(KEYS[k + 3]) or 0 end
    if reserve > 0 and sum + reserve > tpm then  -- a hit billing no tokens is not held back
      if s == 0 then info[5] = math.max(0, tpm - sum) end
      return refuse('limit_tpm', tpm_wait(KEYS[k + 3], KEYS[k + 4], sum + reserve - tpm), info)
    end
    fits(tpm, sum, reserve)
  end

  if rps > 0 then
    local b = redis.call('HMGET', KEYS[k + 1], 'tokens', 'ts')
    local tokens = tonumber(b[1]) or burst
    local ts = tonumber(b[2]) or now
    tokens = math.min(burst, tokens + (now - ts) * rps / 1000)
    if tokens < 1 then return refuse('limit_rps', (1 - tokens) * 1000 / rps, info) end
    st.tokens = tokens - 1
    fits(tokens, 0, 1)
  end

  local qd, qm = KEYS[k + 6] .. 'd:' .. day, KEYS[k + 6] .. 'm:' .. month
  if dreq > 0 or dtok > 0 then
    local q = redis.call('HMGET', qd, 'req', 'tok')
    local req_used, tok_used = tonumber(q[1]) or 0, tonumber(q[2]) or 0
    if dreq > 0 and req_used + 1 > dreq then
      return refuse('quota_daily_requests', next_day_ms, info)
    end
    if dtok > 0 and reserve > 0 and tok_used + reserve > dtok then
      return refuse('quota_daily_tokens', next_day_ms, info)
    end
    fits(dreq, req_used, 1)
    fits(dtok, tok_used, reserve)
  end
  if mtok > 0 then
    local tok_used = tonumber(redis.call('HGET', qm, 'tok')) or 0
    if reserve > 0 and tok_used + reserve > mtok then
      return refuse('quota_monthly_tokens', next_month_ms(), info)
    end
    fits(mtok, tok_used, reserve)
  end
  st.qd, st.qm, st.rps, st.burst, st.rpm, st.tpm, st.conc = qd, qm, rps, burst, rpm, tpm, conc
end

local gkey, gmax = KEYS[nscopes * 6 + 1], tonumber(A[7 + nscopes * 8])
if gmax > 0 and not final then
  redis.call('ZREMRANGEBYSCORE', gkey, '-inf', now)
  local running = redis.call('ZCARD', gkey)
  if running >= gmax then
    local soonest = redis.call('ZRANGE', gkey, 0, 0, 'WITHSCORES')
    return refuse('limit_global_concurrent', tonumber(soonest[2]) - now, info)
  end
  fits(gmax, running, 1)
end

-- Every check passed: take everything. Nothing above wrote anything but expired entries.
local used = {0, 0, 0}
for s = 0, nscopes - 1 do
  local k, st = s * 6, state[s]
  if st.conc > 0 and not final then
    redis.call('ZADD', KEYS[k + 5], now + lease_ms, rid)
    keep(KEYS[k + 5], lease_ms * 2)
  end
  if st.rps > 0 then
    redis.call('HSET', KEYS[k + 1], 'tokens', st.tokens, 'ts', now)
    keep(KEYS[k + 1], math.ceil(st.burst / st.rps * 1000) + 1000)
  end
  if st.rpm > 0 then
    redis.call('ZADD', KEYS[k + 2], now, rid)
    keep(KEYS[k + 2], WINDOW + 1000)
  end
  if st.tpm > 0 and (reserve > 0 or not final) then
    redis.call('ZADD', KEYS[k + 3], now, rid)
    redis.call('HSET', KEYS[k + 4], rid, reserve)
    redis.call('HINCRBY', KEYS[k + 4], '__sum', reserve)
    keep(KEYS[k + 3], WINDOW + 1000)
    keep(KEYS[k + 4], WINDOW + 1000)
  end
  local dreq_used = redis.call('HINCRBY', st.qd, 'req', 1)
  local dtok_used = redis.call('HINCRBY', st.qd, 'tok', reserve)
  redis.call('EXPIRE', st.qd, 3 * 86400, 'NX')  -- a calendar bucket: set once, when created
  local mtok_used = redis.call('HINCRBY', st.qm, 'tok', reserve)
  if s == 0 then used = {dtok_used, dreq_used, mtok_used} end
  redis.call('EXPIRE', st.qm, 62 * 86400, 'NX')
end
if gmax > 0 and not final then
  redis.call('ZADD', gkey, now + lease_ms, rid)
  keep(gkey, lease_ms * 2)
end
if final then
  count_usage(KEYS[nscopes * 6 + 2], math.floor(now / 1000), tonumber(A[8 + nscopes * 8]), A, 9 + nscopes * 8)
end
local verdict = {1, '', 0, info[1], info[2], info[3], info[4], info[5], info[6], day, month,
                 used[1], used[2], used[3], math.max(0, room), now}
redis.call('SET', marker, cjson.encode(verdict), 'PX', math.max(0, tonumber(A[6]) - now) + MARKER_MS)
return verdict
