-- A bitmap as hex text (the clients decode replies as UTF-8, which raw bits are not).
-- KEYS: the bitmap.
local raw = redis.call('GET', KEYS[1])
if not raw then return '' end
return (string.gsub(raw, '.', function(c) return string.format('%02x', string.byte(c)) end))
