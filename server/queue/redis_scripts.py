"""Lua scripts for the Redis queue backend.

Redis runs a script to completion before serving any other client, so each script is one
atomic step across every node: the reads that decide and the writes that follow cannot
interleave with another node's. Anything that reads and then writes lives here.

Conventions: times arrive as Python ``repr(float)`` strings and are stored as given, so
they round-trip exactly; a script never returns a Lua number for a time (Redis would
truncate it to an integer). Keys known up front come in ``KEYS``; keys found while running
(the witness holding an investor's offer, say) are built from the key prefix in
``ARGV[1]``, so the backend needs a single Redis server (or one Cluster hash slot).
Optional ids (``offered_to``, ``offer_id``, ``application_id``) are "" when absent.
"""

from __future__ import annotations

# Fields of a witness presence hash (wi:{staff_id}), in the order scripts return them.
WITNESS_FIELDS = (
    "state",
    "node_id",
    "since",
    "last_seen",
    "phone_hash",
    "id_hash",
    "skills",
    "offer_id",
    "application_id",
)
# Fields of a queue entry hash (qi:{application_id}) read back, in order.
ENTRY_FIELDS = ("enqueued_at", "last_seen", "phone_hash", "id_hash", "skills", "offered_to")
OFFER_FIELDS = ("application_id", "staff_id", "expires_at")
NODE_FIELDS = ("url", "load", "last_seen", "ttl", "internal_url", "machine")

# Withdraw an open offer from the witness holding it: the witness is no longer offered
# anyone and goes NOT_READY (not READY: an investor vanishing under an offer says nothing
# about whether the witness is at the desk). Shared by remove_investor.
_WITHDRAW_FROM_WITNESS = """
local function withdraw_from_witness(prefix, offer_id, now)
  local offer_key = prefix .. 'offer:' .. offer_id
  local staff_id = redis.call('HGET', offer_key, 'staff_id')
  redis.call('DEL', offer_key)
  redis.call('ZREM', prefix .. 'offers', offer_id)
  if not staff_id then return end
  local witness_key = prefix .. 'wi:' .. staff_id
  if redis.call('HGET', witness_key, 'offer_id') == offer_id then
    redis.call('HSET', witness_key, 'state', 'not_ready', 'since', now,
               'offer_id', '', 'application_id', '')
  end
end
"""

# KEYS: q, qi:{app}   ARGV: app, enqueued_at, now, phone_hash, id_hash, skills_json
ENQUEUE = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], 'enqueued_at', ARGV[2], 'last_seen', ARGV[3],
           'phone_hash', ARGV[4], 'id_hash', ARGV[5], 'skills', ARGV[6],
           'offered_to', '', 'offer_id', '')
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
"""

# KEYS: q, qi:{app}   ARGV: prefix, app, now
REMOVE_INVESTOR = (
    _WITHDRAW_FROM_WITNESS
    + """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local offer_id = redis.call('HGET', KEYS[2], 'offer_id')
if offer_id and offer_id ~= '' then withdraw_from_witness(ARGV[1], offer_id, ARGV[3]) end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[2])
return 1
"""
)

# KEYS: qi:{app}, wi:{staff}, offer:{id}, offers
# ARGV: app, staff_id, offer_id, expires_at, now
CLAIM = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
local entry = redis.call('HMGET', KEYS[1], 'enqueued_at', 'offer_id')
if not entry[1] or entry[2] ~= '' then return 0 end
if redis.call('HGET', KEYS[2], 'state') ~= 'ready' then return 0 end
redis.call('HSET', KEYS[2], 'state', 'offered', 'since', ARGV[5],
           'offer_id', ARGV[3], 'application_id', ARGV[1])
redis.call('HSET', KEYS[1], 'offered_to', ARGV[2], 'offer_id', ARGV[3])
redis.call('HSET', KEYS[3], 'application_id', ARGV[1], 'staff_id', ARGV[2],
           'expires_at', ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])
return 1
"""

# KEYS: offer:{id}, offers, q   ARGV: prefix, offer_id, accepted ('1'|'0'), now
# Returns the offer's fields (OFFER_FIELDS), or nil when it was already closed.
SETTLE = """
local offer = redis.call('HMGET', KEYS[1], 'application_id', 'staff_id', 'expires_at')
if not offer[1] then return false end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
local entry_key = ARGV[1] .. 'qi:' .. offer[1]
local witness_key = ARGV[1] .. 'wi:' .. offer[2]
local accepted = ARGV[3] == '1'
-- Each side is only touched while it still holds this very offer.
if redis.call('HGET', entry_key, 'offer_id') == ARGV[2] then
  if accepted then
    redis.call('DEL', entry_key)
    redis.call('ZREM', KEYS[3], offer[1])
  else
    redis.call('HSET', entry_key, 'offered_to', '', 'offer_id', '')
  end
end
if redis.call('HGET', witness_key, 'offer_id') == ARGV[2] then
  if accepted then
    redis.call('HSET', witness_key, 'state', 'busy', 'since', ARGV[4],
               'offer_id', '', 'application_id', offer[1])
  else
    redis.call('HSET', witness_key, 'state', 'not_ready', 'since', ARGV[4],
               'offer_id', '', 'application_id', '')
  end
end
return offer
"""

# KEYS: w, wi:{staff}   ARGV: staff_id, expected state ('' = any), field, value, ...
SET_WITNESS = """
if ARGV[2] ~= '' then
  local stored = redis.call('HGET', KEYS[2], 'state') or 'offline'
  if stored ~= ARGV[2] then return 0 end
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SADD', KEYS[1], ARGV[1])
return 1
"""

# KEYS: w, wi:{staff}   ARGV: prefix, staff_id, WITNESS_FIELDS...
# Returns the presence as it was (the fields' values), or nil.
REMOVE_WITNESS = """
local presence = redis.call('HMGET', KEYS[2], unpack(ARGV, 3))
if not presence[1] then return false end
local offer_id = redis.call('HGET', KEYS[2], 'offer_id')
if offer_id and offer_id ~= '' then
  local offer_key = ARGV[1] .. 'offer:' .. offer_id
  local app = redis.call('HGET', offer_key, 'application_id')
  redis.call('DEL', offer_key)
  redis.call('ZREM', ARGV[1] .. 'offers', offer_id)
  if app then
    local entry_key = ARGV[1] .. 'qi:' .. app
    if redis.call('HGET', entry_key, 'offer_id') == offer_id then
      -- The investor keeps their place: only the offer goes.
      redis.call('HSET', entry_key, 'offered_to', '', 'offer_id', '')
    end
  end
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[1], ARGV[2])
return presence
"""

# KEYS: a hash   ARGV: now.  A heartbeat must never recreate a hash removed meanwhile.
TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'last_seen', ARGV[1])
return 1
"""

# One consistent snapshot of the hashes an index points to, in one round trip.
# KEYS: the index (a ZSET, or a SET of witness ids)
# ARGV: item key prefix, 'zset'|'set', highest score ('+inf' for all), fields...
# Returns a JSON array, flat: id then the fields' values (false when missing), per item;
# ZSETs in (score, id) order. An id whose hash lacks the first field is skipped (the first
# field is always written). One JSON string rather than a RESP array of thousands of
# elements: redis-py's pure-Python RESP parser costs ~3 us per element, json.loads far less.
READ_INDEXED = """
local ids
if ARGV[2] == 'set' then
  ids = redis.call('SMEMBERS', KEYS[1])
else
  ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[3], 'BYSCORE')
end
local field_count = #ARGV - 3
local out = {}
for _, id in ipairs(ids) do
  local values = redis.call('HMGET', ARGV[1] .. id, unpack(ARGV, 4))
  if values[1] then
    table.insert(out, id)
    for i = 1, field_count do table.insert(out, values[i]) end
  end
end
if #out == 0 then return '[]' end  -- cjson would encode an empty table as {}
return cjson.encode(out)
"""

# KEYS: lock:{name}   ARGV: owner, lease (ms).  Takes a free lease or extends one's own.
ACQUIRE_LOCK = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: lock:{name}   ARGV: owner.  Only the holder may release.
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""
