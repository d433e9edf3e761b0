-- Streams on Redis (server/bus/redis.py). Three scripts, split at the marker lines.
-- KEYS[1] the stream's meta hash (e: epoch, s: newest offset, t: Unix time of the newest
-- event), KEYS[2] its history (a stream whose entry ids are <offset>-0, fields d: the
-- envelope, t: its Unix time), KEYS[3] the last outbox id published per conversation (the
-- publish-time dedupe). A missing meta hash is a stream starting over: a new epoch, and
-- whatever history is left from the old one is dropped.
--
-- publish: ARGV payload, new epoch, history limit, history ttl, meta ttl, channel,
-- history bytes. Appends the event, trims the history to its limits (events and bytes,
-- the newest event always kept), publishes the event with its position, returns its
-- offset; returns 0 and does nothing for an outbox row this stream already carries (an
-- at-least-once relay publishing a row twice), so that the history never holds an event
-- twice.
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
  redis.call('DEL', KEYS[2], KEYS[3])
end
local head = string.sub(ARGV[1], 1, 64)
local outbox = string.match(head, '^{"o":(%d+)')
if outbox then
  local conversation = string.match(head, '^{"o":%d+,"c":(%d+)') or '0'
  local last = redis.call('HGET', KEYS[3], conversation)
  if last and tonumber(last) >= tonumber(outbox) then
    return 0
  end
  if redis.call('HLEN', KEYS[3]) >= 50000 then
    redis.call('DEL', KEYS[3]) -- bounded: forgetting only weakens the dedupe, the hub has its own
  end
  redis.call('HSET', KEYS[3], conversation, outbox)
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
local now = redis.call('TIME')[1]
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[1], 'b', 0)  -- the history expired: nothing held
end
local offset = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('HSET', KEYS[1], 't', now)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('XADD', KEYS[2], offset .. '-0', 'd', ARGV[1], 't', now)
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
  redis.call('DEL', KEYS[2], KEYS[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
local top = tonumber(redis.call('HGET', KEYS[1], 's'))
local since = tonumber(ARGV[1])
local entries = {}
if ARGV[5] == epoch and since < top then
  entries = redis.call('XRANGE', KEYS[2], '(' .. since .. '-0', '+', 'COUNT', ARGV[4])
end
return {epoch, top, entries}
-- @@
-- history since a time: ARGV Unix seconds, new epoch, meta ttl, max events.
-- Returns {epoch, newest offset, entries whose time is at least ARGV[1] (oldest first),
-- complete}: complete (1) when those are all the stream's events since then: the walk back
-- reached an older event, or the stream's first, or nothing was published since then.
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[2]
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
  redis.call('DEL', KEYS[2], KEYS[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
local top = tonumber(redis.call('HGET', KEYS[1], 's'))
local last = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local since = tonumber(ARGV[1])
local limit = tonumber(ARGV[4])
if top == 0 or last < since then
  return {epoch, top, {}, 1}
end
local found = {}
local complete = 0
local cursor = '+'
while #found < limit do
  local batch = redis.call('XREVRANGE', KEYS[2], cursor, '-', 'COUNT', 32)
  if #batch == 0 then
    break
  end
  for _, entry in ipairs(batch) do
    if tonumber(entry[2][4]) < since then
      complete = 1
      break
    end
    found[#found + 1] = entry
  end
  if complete == 1 then
    break
  end
  cursor = '(' .. batch[#batch][1]
end
local entries = {}
for i = #found, 1, -1 do
  entries[#entries + 1] = found[i]
end
if complete == 0 and #entries > 0 and entries[1][1] == '1-0' then
  complete = 1
end
return {epoch, top, entries, complete}
