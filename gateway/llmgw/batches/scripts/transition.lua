-- Move a job from one of the given statuses to another, atomically, and take it out of the
-- given sets (or add it to one): nothing if its status is not one of them.
-- KEYS: job, then sets to remove the job from; ARGV: the job's member in those sets, JSON list
-- of statuses it may be in, JSON object of fields to set (the new status among them), and
-- optionally a set (its key, as the last KEYS entry, is not in the remove list then) and a
-- score to add the member to it with.
-- Returns the status it was in, or nil (unknown job) / false-y '' (not allowed).
local now_status = redis.call('HGET', KEYS[1], 'status')
if not now_status then return nil end
local allowed = false
for _, s in ipairs(cjson.decode(ARGV[2])) do if s == now_status then allowed = true end end
if not allowed then return '' end
local fields = cjson.decode(ARGV[3])
local t = redis.call('TIME')
for name, value in pairs(fields) do
  if value == '$now' then value = t[1] end
  redis.call('HSET', KEYS[1], name, value)
end
local last = #KEYS
if ARGV[4] then last = last - 1 end
for i = 2, last do redis.call('ZREM', KEYS[i], ARGV[1]) end
if ARGV[4] then redis.call('ZADD', KEYS[#KEYS], tonumber(ARGV[4]), ARGV[1]) end
return now_status
