package cluster

import "github.com/redis/go-redis/v9"

// The Lua scripts below keep each step atomic in Redis. Keys are named by
// Node.key; a call's keys are "seen:<id>", "lease:<id>", "hangup:<id>"
// and "swept:<id>", and the live calls are fields of the "calls" hash.

// claimScript takes a call for a node, once per call id.
//
// KEYS: seen, lease, calls. ARGV: node, lease ms, dedupe ms, call id, call
// JSON. Returns {1, node} when claimed, else {0, holder of the seen key}.
var claimScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
  return {1, ARGV[1]}
end
return {0, redis.call('GET', KEYS[1])}
`)

// refreshScript extends the leases of a node's calls and reports, per call,
// what it found: 0 refreshed, 1 recorded again (the lease was gone, after a
// Redis outage or restart), 2 held by another node, 3 swept by a peer. The
// second item of each reply is a pending hang-up message, or "", and the
// third the events queued for the call, which it takes off the queue.
//
// KEYS: calls, then per call seen, lease, hangup, swept, events. ARGV:
// node, lease ms, dedupe ms, then per call id and call JSON.
var refreshScript = redis.NewScript(`
local out = {}
local n = (#KEYS - 1) / 5
for i = 1, n do
  local b = 5*(i-1) + 1
  local seen, lease, hangup, swept, events = KEYS[b+1], KEYS[b+2], KEYS[b+3], KEYS[b+4], KEYS[b+5]
  local st = 0
  if redis.call('EXISTS', swept) == 1 then
    st = 3
  else
    local cur = redis.call('GET', lease)
    if cur == ARGV[1] then
      redis.call('PEXPIRE', lease, ARGV[2])
    elseif not cur then
      redis.call('SET', seen, ARGV[1], 'NX', 'PX', ARGV[3])
      redis.call('SET', lease, ARGV[1], 'PX', ARGV[2])
      redis.call('HSET', KEYS[1], ARGV[2+2*i], ARGV[3+2*i])
      st = 1
    else
      st = 2
    end
  end
  local queued = redis.call('LRANGE', events, 0, -1)
  if #queued > 0 then
    redis.call('DEL', events)
  end
  out[i] = {st, redis.call('GET', hangup) or '', queued}
end
return out
`)

// releaseScript forgets a call that ended on its owner. The seen key stays
// for the dedupe window.
//
// KEYS: lease, calls, hangup, events. ARGV: node, call id.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
local v = redis.call('HGET', KEYS[2], ARGV[2])
if v and cjson.decode(v)['node'] == ARGV[1] then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
redis.call('DEL', KEYS[3], KEYS[4])
return 1
`)

// forwardScript hands a hang-up to a call's owner: a marker key, read by the
// owner's refresh, and a message on the owner's channel. A call nobody owns
// is marked seen, so that a connect arriving after its terminate does
// nothing.
//
// KEYS: lease, seen, hangup. ARGV: marker (the message), marker ms, dedupe
// ms, channel prefix, message, sender node. Returns {owner or "",
// receivers}.
var forwardScript = redis.NewScript(`
local owner = redis.call('GET', KEYS[1])
if not owner then
  redis.call('SET', KEYS[2], '~ended', 'NX', 'PX', ARGV[3])
  return {'', 0}
end
if owner == ARGV[6] then
  return {owner, 0}
end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
return {owner, redis.call('PUBLISH', ARGV[4] .. owner, ARGV[5])}
`)

// sweepScript takes an orphaned call (a calls entry without a lease) for
// one peer, which then ends it. Returns the call JSON, or false when the
// call is alive or another peer took it.
//
// KEYS: lease, swept, calls. ARGV: call id, sweeper node, swept ms.
var sweepScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local v = redis.call('HGET', KEYS[3], ARGV[1])
if not v then
  return false
end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return false
end
redis.call('HDEL', KEYS[3], ARGV[1])
return v
`)

// eventScript hands an event for a call to its owner: queued in the call's
// events list (read by the owner's refresh) and published on the owner's
// channel. A call nobody owns yet is left alone: the event may be early.
//
// KEYS: lease, events. ARGV: message, queue ms, channel prefix, sender
// node. Returns {owner or "", receivers}.
var eventScript = redis.NewScript(`
local owner = redis.call('GET', KEYS[1])
if not owner then
  return {'', 0}
end
if owner == ARGV[4] then
  return {owner, 0}
end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {owner, redis.call('PUBLISH', ARGV[3] .. owner, ARGV[1])}
`)
