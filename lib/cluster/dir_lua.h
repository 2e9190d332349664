/* Private to lib/cluster/dir*.c: the directory's Lua scripts. Static so
 * that sizeof gives each script's length; a file that includes this header
 * emits only the scripts it uses. */
#ifndef ROOST_CLUSTER_DIR_LUA_H
#define ROOST_CLUSTER_DIR_LUA_H

/* ---------------------------------------------------------------- scripts
 *
 * docs/CLUSTER.md 1.3. Sent in full with EVAL each time: no script cache
 * to lose when Redis restarts. Lua numbers are doubles; generations stay
 * below 2^53 (microseconds since 1970 are about 2^50.6) and are formatted
 * with %.0f so they never turn into exponent notation. */

/* KEYS: room, gen. ARGV: relay id, lease ms, relay hash prefix. */
static const char CLAIM_LUA[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur then\n"
    "  local holder = string.match(cur, '^(.+):%d+$')\n"
    "  if holder ~= ARGV[1] then\n"
    "    local addr = false\n"
    "    if holder then addr = redis.call('HGET', ARGV[3] .. holder, 'addr') end\n"
    "    return {0, cur, addr, redis.call('PTTL', KEYS[1])}\n"
    "  end\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local g = tonumber(redis.call('GET', KEYS[2]) or '0') + 1\n"
    "if g < floor then g = floor end\n"
    "local gs = string.format('%.0f', g)\n"
    "redis.call('SET', KEYS[2], gs, 'PX', 86400000)\n"
    "redis.call('SET', KEYS[1], ARGV[1] .. ':' .. gs, 'PX', ARGV[2])\n"
    "return {1, gs}\n";

/* KEYS: room, gen. ARGV: value, lease ms, generation. 1 renewed, 2 restored
 * (the key was gone), 0 someone else holds it. */
static const char RENEW_LUA[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
    "if cur then return 0 end\n"
    "local g = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "if g < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3], 'PX', 86400000) end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])\n"
    "return 2\n";

/* KEYS: room. ARGV: value. Compare-and-delete. */
static const char RELEASE_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";

/* KEYS: relay hash, relay set. ARGV: id, ttl ms, field, value, ... */
static const char REGISTER_LUA[] = "redis.call('HSET', KEYS[1], unpack(ARGV, 3))\n"
                                   "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                   "redis.call('SADD', KEYS[2], ARGV[1])\n"
                                   "return 1\n";

/* KEYS: relay hash, relay set. ARGV: id. */
static const char UNREGISTER_LUA[] = "redis.call('DEL', KEYS[1])\n"
                                     "redis.call('SREM', KEYS[2], ARGV[1])\n"
                                     "return 1\n";

/* KEYS: room. ARGV: relay hash prefix. {} or {value, addr|nil, pttl}. */
static const char LOOKUP_LUA[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if not cur then return {} end\n"
    "local holder = string.match(cur, '^(.+):%d+$')\n"
    "local addr = false\n"
    "if holder then addr = redis.call('HGET', ARGV[1] .. holder, 'addr') end\n"
    "return {cur, addr, redis.call('PTTL', KEYS[1])}\n";

/* KEYS: relay set [, room]. ARGV: relay hash prefix.
 * {room value|nil, room pttl, then per live relay: id, addr, part, maxpart,
 * rooms, cpu, accept, pttl}. Ids whose hash expired leave the set. */
#define LIST_FIELDS 8
static const char LIST_LUA[] =
    "local out = {false, -1}\n"
    "if KEYS[2] then\n"
    "  local v = redis.call('GET', KEYS[2])\n"
    "  if v then out[1] = v out[2] = redis.call('PTTL', KEYS[2]) end\n"
    "end\n"
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do\n"
    "  local k = ARGV[1] .. id\n"
    "  local f = redis.call('HMGET', k, 'addr', 'part', 'maxpart', 'rooms', 'cpu', 'accept')\n"
    "  if f[1] then\n"
    "    out[#out + 1] = id\n"
    "    for i = 1, 6 do out[#out + 1] = f[i] end\n"
    "    out[#out + 1] = redis.call('PTTL', k)\n"
    "  else\n"
    "    redis.call('SREM', KEYS[1], id)\n"
    "  end\n"
    "end\n"
    "return out\n";

#endif
