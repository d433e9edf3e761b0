-- Streams on Redis (server/bus/redis.py). Two scripts, split at the marker line.
-- KEYS[1] the stream's meta hash (e: epoch, s: newest offset), KEYS[2] its history (a stream
-- whose entry ids are <offset>-0). A missing meta hash is a stream starting over: a new
-- epoch, and whatever history is left from the old one is dropped.
--
-- publish: ARGV payload, new epoch, history limit, history ttl, meta ttl, channel,
-- history bytes. Appends the event, trims the history to its limits (events and bytes,
-- the newest event always kept), publishes the event with its position, returns its offset.
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
  redis.call('DEL', KEYS[2])
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[1], 'b', 0)  -- the history expired: nothing held
end
local offset = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('XADD', KEYS[2], offset .. '-0', 'd', ARGV[1])
local size = redis.call('HINCRBY', KEYS[1], 'b', #ARGV[1])
local held = redis.call('XLEN', KEYS[2])
local limit, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[7])
while held > 1 and (held > limit or size > max_bytes) do
  local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  redis.call('XDEL', KEYS[2], oldest[1])
  size = redis.call('HINCRBY', KEYS[1], 'b', -#oldest[2][2])
  held = held - 1
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[6], '@' .. offset .. ' ' .. epoch .. '\n' .. ARGV[1])
return offset
-- @@
-- history: ARGV since offset, new epoch, meta ttl, max events, since epoch.
-- Returns {epoch, newest offset, entries after `since`} (entries only when the epochs match).
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
  redis.call('DEL', KEYS[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
local top = tonumber(redis.call('HGET', KEYS[1], 's'))
local since = tonumber(ARGV[1])
local entries = {}
if ARGV[5] == epoch and since < top then
  entries = redis.call('XRANGE', KEYS[2], '(' .. since .. '-0', '+', 'COUNT', ARGV[4])
end
return {epoch, top, entries}
