"""Leases of a Redis region: a miss takes one before it computes, and its store is refused when
the key was deleted (an invalidation, in any process) or written since ("Scaling Memcache at
Facebook", NSDI 2013).

:data:`TAKE` sets a placeholder (:data:`~regions.backends.sealed.LEASE_MARK` + a random token,
a miss for every reader) where the key is absent, and returns what the lease is: the placeholder
itself, or the SHA-1 of what was there (an expired entry kept for the stale window, another
computation's placeholder). :data:`STORE` writes the entry only while the key still holds that
(compare-and-set): a delete meanwhile leaves nothing to compare, a write leaves other bytes.
Both are one key, one round trip (EVALSHA), so they work on Redis Cluster too.
"""

from __future__ import annotations

#: KEYS[1] the entry's key; ARGV[1] a placeholder, ARGV[2] its life in ms. Returns the lease.
TAKE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return ARGV[1]
end
local held = redis.call('GET', KEYS[1])
if not held then
    return false
end
return redis.sha1hex(held)
"""

#: KEYS[1] the entry's key; ARGV[1] the lease, ARGV[2] the sealed entry, ARGV[3] its life in ms
#: (0: none). Returns 1 when stored, 0 when refused.
STORE = """
local held = redis.call('GET', KEYS[1])
if not held or (held ~= ARGV[1] and redis.sha1hex(held) ~= ARGV[1]) then
    return 0
end
if ARGV[3] == '0' then
    redis.call('SET', KEYS[1], ARGV[2])
else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"""
