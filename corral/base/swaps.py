"""Compare-and-set writes of Redis keys, in Lua: each key that holds its expected value is
set to a new one for a number of seconds, and the answer is what each key held before (nil:
nothing). An attempt's claim is one (corral/base/fence.py): its worker's main process sends
them with the record of the message's delivery (corral/base/transport.py), its child alone
(SCRIPT) when the main process made none."""

from __future__ import annotations


def lua(first_key: int, first_arg: int) -> bytes:
    """The swaps of KEYS[first_key:], each with (expected, new, ttl) from ARGV[first_arg:]."""
    return f"""
local out = {{}}
for i = {first_key}, #KEYS do
  local j = {first_arg} + (i - {first_key}) * 3
  local before = redis.call('GET', KEYS[i])
  if before == ARGV[j] then redis.call('SET', KEYS[i], ARGV[j + 1], 'EX', ARGV[j + 2]) end
  out[#out + 1] = before
end
return out
""".encode()


SCRIPT = lua(1, 1)  # swaps alone: KEYS the keys, ARGV (expected, new, ttl) for each


def argv(expected: list[bytes], new: list[bytes], ttl: int) -> list[bytes | int]:
    """The swaps' ARGV: (expected, new, ttl) for each key, in the keys' order."""
    out: list[bytes | int] = []
    for was, now in zip(expected, new, strict=True):
        out += [was, now, ttl]
    return out
