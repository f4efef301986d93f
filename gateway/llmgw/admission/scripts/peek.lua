-- Read-only: the organisation's requests and tokens in the last 60 s, for the x-ratelimit-*
-- headers of answers that take nothing (GET /v1/models). KEYS: rpm log, tpm log, tpm weights.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local since = now - 60000
local requests = redis.call('ZCOUNT', KEYS[1], since, '+inf')
local first_req = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local entries = redis.call('ZRANGEBYSCORE', KEYS[2], since, '+inf', 'WITHSCORES')
local tokens = 0
for i = 1, #entries, 2 do tokens = tokens + (tonumber(redis.call('HGET', KEYS[3], entries[i])) or 0) end
local function reset(first) return first and (tonumber(first) + 60000 - now) or 0 end
return {requests, reset(first_req[2]), tokens, reset(entries[2])}
