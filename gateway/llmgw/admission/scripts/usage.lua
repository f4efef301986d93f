-- Usage counting, shared by settle.lua and admit.lua (a final admission): the usage field /
-- increment pairs A[from], A[from + 1], ... are added to the organisation's hourly and daily
-- buckets (UTC, by Redis' clock: `now_secs`). A bucket's expiry is set once, when it is created:
-- an expiry written on every call would cost an AOF entry each time.
local function count_usage(prefix, now_secs, retention, A, from)
  local hour = math.floor(now_secs / 3600)
  local hourly, daily = prefix .. 'h:' .. hour, prefix .. 'd:' .. math.floor(hour / 24)
  for i = from, #A, 2 do
    local n = tonumber(A[i + 1])
    if n ~= 0 then
      redis.call('HINCRBY', hourly, A[i], n)
      redis.call('HINCRBY', daily, A[i], n)
    end
  end
  redis.call('EXPIRE', hourly, retention, 'NX')
  redis.call('EXPIRE', daily, retention, 'NX')
end

