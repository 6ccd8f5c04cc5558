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
Few arguments, four Redis calls on most appends and a one-string reply keep both sides'
share of the work small.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["APPEND", "READ", "SHA"]

# KEYS: meta, stream. ARGV: frame, "<epoch suffix> <max messages> <max age ms> <meta ttl
# ms> <renewal period ms>" (one argument: the store's constants); to publish too: channel,
# packet head, stamped frame head. Returns "<epoch> <offset>".
APPEND: Final = """
local suffix, most, age, ttl, period = string.match(ARGV[2], '^(%S+) (%d+) (%d+) (%d+) (%d+)$')
local meta = redis.call('HMGET', KEYS[1], 'e', 'r')
local epoch, due = meta[1], tonumber(meta[2])
if not epoch then
  local now = redis.call('TIME')
  epoch = string.format('%013x', tonumber(now[1]) * 1000000 + tonumber(now[2])) .. suffix
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch)
  due = nil
end
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', most, '*', 'o', offset, 'f', ARGV[1])
redis.call('PEXPIRE', KEYS[2], age)
local ms = tonumber(string.match(id, '^(%d+)'))
if not due or ms >= due or due - ms > tonumber(period) then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('HSET', KEYS[1], 'r', string.format('%.0f', ms + tonumber(period)))
  redis.call('XTRIM', KEYS[2], 'MINID', '~', string.format('%.0f', ms - tonumber(age)))
end
local at = string.format('%d', offset)
if ARGV[3] then
  local stamp = ',"epoch":"' .. epoch .. '"}'
  local packet = ARGV[4] .. at .. ',"' .. epoch .. '"]}\\n' .. ARGV[5] .. at .. stamp
  redis.call('PUBLISH', ARGV[3], packet)
end
return epoch .. ' ' .. at
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
