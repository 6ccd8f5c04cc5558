"""The two Lua scripts of [`RedisHistory`][tempest_ws.history.redis.RedisHistory].

Each runs atomically on the shard owning the topic's two keys (``KEYS[1]`` the meta hash,
``KEYS[2]`` the stream). A missing hash means the topic's sequence was lost (or never
started): the script drops any stream left over and starts a new epoch, the Redis clock
in µs (13 hex digits) followed by the random suffix the store drew, so epochs of a topic
compare in creation order. Entries are ``o`` = offset, ``f`` = frame; stream ids are
Redis's clock, which the age bound uses.

The append refreshes the meta hash's expiry, and trims the stream by age, once per
renewal period (``r`` in the hash: the stream time from which the next renewal is due)
rather than on every append; the hash is given ``meta_ttl`` plus that period, so it still
outlives its last use by at least ``meta_ttl``. A missing or implausible ``r`` (the hash
was just made, or Redis's clock went back) renews at once. The stream's own expiry and
its ``MAXLEN ~`` bound are applied on every append.

An append may also publish the message (``RedisHistory.append_publish``): the packet is
built here because only here are its offset and epoch known. ``ARGV[4]`` is the packet
header cut before the position (``packet.positioned_head``) and ``ARGV[5]`` the frame cut
as ``wire.stamp_frame`` cuts it, followed by the stamp's middle (``stamp_parts``); the
script adds the offset, ``,"epoch":`` and the epoch (hex: no JSON escaping needed) to
each, joined by a newline. ``string.format('%d')`` keeps large offsets integral.
One call appends any number of messages of one topic (the store sends consecutive
appends of a batch to one topic together): besides each message's ``XADD`` (and
``PUBLISH``), a call mostly makes three Redis calls (the epoch, the offsets, the stream's
expiry), whatever the number of messages, and answers with one short string.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["APPEND", "READ", "SHA"]

# KEYS: meta, stream. ARGV: "<epoch suffix> <max messages> <max age ms> <meta ttl ms>
# <renewal period ms>" (one argument: the store's constants), the arguments per message
# (1: its frame; 4: to publish too, then its channel, packet head, stamped frame head),
# then each message's arguments, in order. Returns "<epoch> <offset of the first>".
APPEND: Final = """
local suffix, most, age, ttl, period = string.match(ARGV[1], '^(%S+) (%d+) (%d+) (%d+) (%d+)$')
local width = tonumber(ARGV[2])
local count = (#ARGV - 2) / width
local meta = redis.call('HMGET', KEYS[1], 'e', 'r')
local epoch, due = meta[1], tonumber(meta[2])
if not epoch then
  local now = redis.call('TIME')
  epoch = string.format('%013x', tonumber(now[1]) * 1000000 + tonumber(now[2])) .. suffix
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch)
  due = nil
end
local first = redis.call('HINCRBY', KEYS[1], 'o', count) - count + 1
local stamp = ',"epoch":"' .. epoch .. '"}'
local middle = ',"' .. epoch .. '"]}\\n'
local id
for i = 0, count - 1 do
  local at, n = string.format('%d', first + i), 2 + i * width
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', most, '*', 'o', at, 'f', ARGV[n + 1])
  if width == 4 then
    redis.call('PUBLISH', ARGV[n + 2], ARGV[n + 3] .. at .. middle .. ARGV[n + 4] .. at .. stamp)
  end
end
redis.call('PEXPIRE', KEYS[2], age)
local ms = tonumber(string.match(id, '^(%d+)'))
if not due or ms >= due or due - ms > tonumber(period) then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('HSET', KEYS[1], 'r', string.format('%.0f', ms + tonumber(period)))
  redis.call('XTRIM', KEYS[2], 'MINID', '~', string.format('%.0f', ms - tonumber(age)))
end
return epoch .. ' ' .. string.format('%d', first)
"""

# KEYS: meta, stream. ARGV: epoch suffix, meta ttl ms, max age ms, after offset (-1:
# the newest), limit (0: none), '1' all-or-nothing, expected epoch ('' any).
# Returns {epoch, latest, offset1, frame1, offset2, frame2, ...}, oldest first.
READ: Final = """
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  local now = redis.call('TIME')
  epoch = string.format('%013x', tonumber(now[1]) * 1000000 + tonumber(now[2])) .. ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local latest = tonumber(redis.call('HGET', KEYS[1], 'o') or '0')
local after, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {epoch, latest}
if ARGV[7] ~= '' and ARGV[7] ~= epoch then return out end
local want = limit
if after >= 0 then want = latest - after end
if want <= 0 or limit <= 0 or (ARGV[6] == '1' and want > limit) then return out end
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[3])
local rows = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', want)
local n = 0
for i = 1, #rows do
  if tonumber(string.match(rows[i][1], '^(%d+)')) < cutoff then break end
  n = i
end
for i = n, math.max(1, n - limit + 1), -1 do
  out[#out + 1] = rows[i][2][2]
  out[#out + 1] = rows[i][2][4]
end
return out
"""

SHA: Final = {script: hashlib.sha1(script.encode()).hexdigest() for script in (APPEND, READ)}
