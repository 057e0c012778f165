/**
 * The Lua scripts behind the Redis store. Each store operation is one script,
 * so it is atomic: Redis runs a script to its end before any other command,
 * which is what makes two nodes unable to both hold a key, and what lets a
 * renewal compare the fencing token and extend the lease in one step.
 *
 * Layout (every key shares the hash tag `{prefix}`, so the scripts would also
 * run on one slot of a Redis Cluster):
 * - `{p}:claims` hash, field `kind/key` -> claim as JSON
 * - `{p}:leases` sorted set, member `kind/key`, score = expiresAt (ms)
 * - `{p}:nodes` hash, field node name -> node record as JSON
 * - `{p}:node-leases` sorted set, member node name, score = expiresAt
 * - `{p}:token` the fencing counter (INCR); `{p}:epoch` the data's epoch
 * - channel `{p}:feed` carries every change as JSON
 *
 * The snapshot is no script but a MULTI of TIME, the epoch and two HGETALLs:
 * atomic as well, and without decoding every claim inside Redis, which made a
 * snapshot of 30,000 claims block Redis about five times as long.
 *
 * Times come from Redis' own clock (TIME), so nodes' clocks never matter for
 * leases. Every reply is one JSON string carrying the epoch: when it changes,
 * the store lost its data.
 *
 * @module
 */

/** Key names in the order every script receives them as KEYS. */
export function storeKeys(prefix: string): string[] {
  const p = `{${prefix}}`;
  return [
    `${p}:claims`,
    `${p}:leases`,
    `${p}:nodes`,
    `${p}:node-leases`,
    `${p}:token`,
    `${p}:epoch`,
  ];
}

/** The feed channel for a prefix. */
export function feedChannel(prefix: string): string {
  return `{${prefix}}:feed`;
}

const PRELUDE = `
local CLAIMS, LEASES, NODES, NODE_LEASES, COUNTER, EPOCH = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local CHANNEL = ARGV[1]
local clock = redis.call('TIME')
local NOW = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function epoch()
  local e = redis.call('GET', EPOCH)
  if not e then
    e = clock[1] .. '.' .. clock[2]
    redis.call('SET', EPOCH, e)
  end
  return e
end

local function publish(event)
  redis.call('PUBLISH', CHANNEL, cjson.encode(event))
end

local function field(kind, key)
  return kind .. '/' .. key
end

local function put(c)
  local f = field(c.kind, c.key)
  redis.call('HSET', CLAIMS, f, cjson.encode(c))
  redis.call('ZADD', LEASES, c.expiresAt, f)
end

local function drop(f)
  redis.call('HDEL', CLAIMS, f)
  redis.call('ZREM', LEASES, f)
end

-- The live claim on a field, or nil. An expired one is removed and announced
-- here, so that correctness never waits for a reaper.
local function live(f)
  local raw = redis.call('HGET', CLAIMS, f)
  if not raw then return nil end
  local c = cjson.decode(raw)
  if c.expiresAt > NOW then return c end
  drop(f)
  publish({type = 'expire', claim = c})
  return nil
end

local function liveNode(name)
  local raw = redis.call('HGET', NODES, name)
  if not raw then return nil end
  local n = cjson.decode(raw)
  if n.expiresAt > NOW then return n end
  redis.call('HDEL', NODES, name)
  redis.call('ZREM', NODE_LEASES, name)
  publish({type = 'node_expire', node = n})
  return nil
end

local function reap(limit)
  local claims, nodes = 0, 0
  for _, f in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', NOW, 'LIMIT', 0, limit)) do
    local c = live(f)
    if c == nil then
      redis.call('ZREM', LEASES, f)
      claims = claims + 1
    else
      redis.call('ZADD', LEASES, c.expiresAt, f)
    end
  end
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', NODE_LEASES, '-inf', NOW, 'LIMIT', 0, limit)) do
    local n = liveNode(name)
    if n == nil then
      redis.call('ZREM', NODE_LEASES, name)
      nodes = nodes + 1
    else
      redis.call('ZADD', NODE_LEASES, n.expiresAt, name)
    end
  end
  return claims, nodes
end
`;

/** ARGV: channel, owner JSON, ttl ms, requests JSON. All keys or none. */
const CLAIM = `
local owner = cjson.decode(ARGV[2])
local ttl = tonumber(ARGV[3])
local requests = cjson.decode(ARGV[4])
local plan, conflicts = {}, {}
for i, r in ipairs(requests) do
  local cur = live(field(r.kind, r.key))
  local action
  if cur == nil then
    action = 'take'
  elseif cur.session == owner.session and cur.node == owner.node then
    action = 'keep'
  elseif r.token == nil and cur.runId == owner.runId then
    action = 'takeover'
  else
    action = 'conflict'
    conflicts[#conflicts + 1] = cur
  end
  plan[i] = {r = r, cur = cur, action = action}
end
if #conflicts > 0 then
  return cjson.encode({ok = false, conflicts = conflicts, epoch = epoch()})
end
local claims, replaced = {}, {}
for i, p in ipairs(plan) do
  local c
  if p.action == 'keep' then
    c = p.cur
    c.expiresAt = NOW + ttl
    put(c)
  else
    local token = redis.call('INCR', COUNTER)
    -- A reassert after data loss: the counter may have started again at 1.
    if p.r.token ~= nil and p.r.token >= token then
      token = p.r.token + 1
      redis.call('SET', COUNTER, token)
    end
    c = {kind = p.r.kind, key = p.r.key, node = owner.node, session = owner.session,
      runId = owner.runId, token = token, since = NOW, expiresAt = NOW + ttl, meta = p.r.meta}
    put(c)
    if p.cur ~= nil then
      replaced[#replaced + 1] = p.cur
      publish({type = 'claim', claim = c, replaced = p.cur})
    else
      publish({type = 'claim', claim = c})
    end
  end
  claims[i] = c
end
return cjson.encode({ok = true, claims = claims, replaced = replaced, epoch = epoch()})
`;

/** ARGV: channel, ttl ms, held JSON. Extends what is still held by exactly that token and session. */
const RENEW = `
local ttl = tonumber(ARGV[2])
local held = cjson.decode(ARGV[3])
local kept, lost = {}, {}
for _, h in ipairs(held) do
  local cur = live(field(h.kind, h.key))
  if cur ~= nil and cur.token == h.token and cur.session == h.session then
    cur.expiresAt = NOW + ttl
    put(cur)
    kept[#kept + 1] = cur
  else
    lost[#lost + 1] = {kind = h.kind, key = h.key, token = h.token, session = h.session, holder = cur}
  end
end
return cjson.encode({ok = true, kept = kept, lost = lost, epoch = epoch()})
`;

/** ARGV: channel, held JSON. Releases what is still held by exactly that token and session. */
const RELEASE = `
local held = cjson.decode(ARGV[2])
local released, notHeld = {}, {}
for _, h in ipairs(held) do
  local f = field(h.kind, h.key)
  local cur = live(f)
  if cur ~= nil and cur.token == h.token and cur.session == h.session then
    drop(f)
    publish({type = 'release', claim = cur})
    released[#released + 1] = {kind = h.kind, key = h.key}
  else
    notHeld[#notHeld + 1] = {kind = h.kind, key = h.key}
  end
end
return cjson.encode({ok = true, released = released, notHeld = notHeld, epoch = epoch()})
`;

/** ARGV: channel, kind, key. */
const LOOKUP = `
return cjson.encode({ok = true, claim = live(field(ARGV[2], ARGV[3])), epoch = epoch()})
`;

/** ARGV: channel, node info JSON, ttl ms. Join and heartbeat; reaps a little. */
const JOIN = `
local info = cjson.decode(ARGV[2])
local ttl = tonumber(ARGV[3])
local cur = liveNode(info.name)
if cur ~= nil and cur.instance ~= info.instance then
  return cjson.encode({ok = false, reason = 'name_taken', holder = cur, epoch = epoch()})
end
local rec = {name = info.name, instance = info.instance, advertise = info.advertise,
  started = info.started, lastSeen = NOW, expiresAt = NOW + ttl}
redis.call('HSET', NODES, info.name, cjson.encode(rec))
redis.call('ZADD', NODE_LEASES, rec.expiresAt, info.name)
if cur == nil then publish({type = 'node_join', node = rec}) end
reap(1000)
return cjson.encode({ok = true, fresh = (cur == nil), epoch = epoch()})
`;

/** ARGV: channel, name, instance. */
const LEAVE = `
local cur = liveNode(ARGV[2])
if cur ~= nil and cur.instance == ARGV[3] then
  redis.call('HDEL', NODES, ARGV[2])
  redis.call('ZREM', NODE_LEASES, ARGV[2])
  publish({type = 'node_leave', node = cur})
end
return cjson.encode({ok = true, epoch = epoch()})
`;

/** ARGV: channel, limit. */
const REAP = `
local claims, nodes = reap(tonumber(ARGV[2]))
return cjson.encode({ok = true, claims = claims, nodes = nodes, epoch = epoch()})
`;

/** The scripts by operation, each with the shared prelude. */
export const SCRIPTS = {
  claim: PRELUDE + CLAIM,
  renew: PRELUDE + RENEW,
  release: PRELUDE + RELEASE,
  lookup: PRELUDE + LOOKUP,
  join: PRELUDE + JOIN,
  leave: PRELUDE + LEAVE,
  reap: PRELUDE + REAP,
} as const;

/** The name of one store script. */
export type ScriptName = keyof typeof SCRIPTS;
