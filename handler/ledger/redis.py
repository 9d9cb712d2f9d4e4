"""Redis store: a hash per record, a sorted set as the due index, one Lua script per commit.

Key layout under the URL's prefix (default `autoretry:`):
- `<prefix>rec:<key>`: hash `v` (version), `val` (JSON value), `exp` (expires_at, if any); the key
  itself expires at `exp` (PEXPIREAT), so retention costs nothing.
- `<prefix>due`: sorted set of the keys of queue records, scored by `due_at`.

For Redis Cluster (or a TencentDB proxy over several shards) put a hash tag in the prefix, e.g.
`prefix={autoretry}:`: every key of one ledger must live in one slot for the scripts to be atomic.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from handler.ledger import describe_store, split_store_url
from handler.ledger.store import Record, StoreUnavailable, Write

DEFAULT_PREFIX = "autoretry:"
TIMEOUT_S = 2.0
REPLICAS_REFRESH_S = 60.0  # how long a count of the server's replicas is trusted

# KEYS[1] = the due index, KEYS[2..] = record keys; ARGV: 7 per write
#   (expect, key, "put" | "del", value, expires_at or "", expires_at in ms or "", due_at or "")
# Every version is checked before anything is written: all or nothing.
_COMMIT = """
local n = #KEYS - 1
for i = 1, n do
  local v = tonumber(redis.call('HGET', KEYS[i + 1], 'v') or '0')
  if v ~= tonumber(ARGV[(i - 1) * 7 + 1]) then return 0 end
end
for i = 1, n do
  local k, b = KEYS[i + 1], (i - 1) * 7
  local member = ARGV[b + 2]
  redis.call('DEL', k)
  if ARGV[b + 3] == 'put' then
    redis.call('HSET', k, 'v', tonumber(ARGV[b + 1]) + 1, 'val', ARGV[b + 4])
    if ARGV[b + 5] ~= '' then
      redis.call('HSET', k, 'exp', ARGV[b + 5])
      redis.call('PEXPIREAT', k, ARGV[b + 6])
    end
  end
  if ARGV[b + 3] == 'put' and ARGV[b + 7] ~= '' then
    redis.call('ZADD', KEYS[1], ARGV[b + 7], member)
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return 1
"""

# KEYS[1] = the due index; ARGV = now, limit, record key prefix. A member whose record expired
# (Redis dropped the hash, not the index entry) is removed here, atomically with the check, so it
# never hides live entries behind it.
_DUE = """
local out, offset, limit = {}, 0, tonumber(ARGV[2])
while #out < limit do
  local batch = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', offset, limit - #out)
  if #batch == 0 then break end
  for _, m in ipairs(batch) do
    if redis.call('EXISTS', ARGV[3] .. m) == 1 then
      out[#out + 1] = m
      offset = offset + 1
    else
      redis.call('ZREM', KEYS[1], m)
    end
  end
end
return out
"""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisStore:
    def __init__(self, url: str) -> None:
        # Every message below names the URL without its credentials: a password may hold any
        # character, and a parser's complaint about it would quote it.
        parts = split_store_url(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"not a Redis URL: {describe_store(url)}")
        parsed = urlsplit(f"{parts.scheme}://{parts.rest}")
        try:
            port = parsed.port or 6379
        except ValueError:
            raise ValueError(f"redis URL {describe_store(url)}: the port must be a number from 1 "
                             "to 65535") from None
        host = parsed.hostname or "127.0.0.1"
        path = parsed.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"redis URL {describe_store(url)}: the path must be a database number")
        db = int(path or 0)
        query = parse_qs(parsed.query)
        self.prefix = query.get("prefix", [DEFAULT_PREFIX])[0]
        self.name = f"{parts.scheme}://{host}:{port}/{db}"
        username, _, password = (parts.userinfo or "").partition(":")
        self._password = unquote(password) if password else None
        self._rec = f"{self.prefix}rec:"
        self._due = f"{self.prefix}due"
        self._client = redis.Redis(
            host=host,
            port=port,
            db=db,
            username=unquote(username) if username else None,
            password=self._password,
            ssl=parts.scheme == "rediss",
            socket_connect_timeout=TIMEOUT_S,
            socket_timeout=TIMEOUT_S,
            # One quick retry covers a pooled connection the server closed while the function
            # slept; more would only delay failing closed. A commit retried after a lost answer
            # finds its versions moved and reports a conflict: the ledger then re-reads.
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        self._commit = self._client.register_script(_COMMIT)
        self._due_script = self._client.register_script(_DUE)

    def _unavailable(self, e: Exception) -> StoreUnavailable:
        message = f"{self.name}: {type(e).__name__}: {e}"
        if self._password:
            message = message.replace(self._password, "***")
        return StoreUnavailable(message)

    def get(self, keys: Sequence[str]) -> dict[str, Record]:
        if not keys:
            return {}
        try:
            pipe = self._client.pipeline(transaction=False)
            for k in keys:
                pipe.hmget(self._rec + k, ["v", "val", "exp"])
            rows: list[list[Any]] = pipe.execute()
        except (redis.RedisError, OSError) as e:
            raise self._unavailable(e) from None
        return {k: _record(row) for k, row in zip(keys, rows, strict=True) if row[0] is not None}

    def commit(self, writes: Sequence[Write]) -> bool:
        if not writes:
            return True
        keys = [self._due] + [self._rec + w.key for w in writes]
        args: list[str | int] = []
        for w in writes:
            exp = "" if w.expires_at is None or w.value is None else repr(float(w.expires_at))
            exp_ms = "" if not exp else str(math.ceil(float(exp) * 1000))
            due = "" if w.due_at is None else repr(float(w.due_at))
            value = "" if w.value is None else json.dumps(w.value, separators=(",", ":"))
            args += [w.expect, w.key, "del" if w.value is None else "put", value, exp, exp_ms, due]
        try:
            return bool(self._commit(keys=keys, args=args))
        except (redis.RedisError, OSError) as e:
            raise self._unavailable(e) from None

    def due(self, now: float, limit: int) -> list[str]:
        if limit <= 0:
            return []
        try:
            members = self._due_script(keys=[self._due], args=[repr(float(now)), limit, self._rec])
        except (redis.RedisError, OSError) as e:
            raise self._unavailable(e) from None
        return [m.decode() for m in members]

    def scan(self, prefix: str) -> Iterator[tuple[str, Record]]:
        try:
            found = sorted(
                k.decode()[len(self._rec):]
                for k in self._client.scan_iter(match=self._rec + _glob_escape(prefix) + "*", count=1000)
            )
        except (redis.RedisError, OSError) as e:
            raise self._unavailable(e) from None
        for start in range(0, len(found), 500):
            yield from self.get(found[start:start + 500]).items()

    # The server's replicas, counted on first use and again now and then (see wait_durable).
    _replicas: int = 0
    _replicas_counted_at: float = float("-inf")

    def wait_durable(self, timeout_s: float) -> None:
        """Return once every replica of the server has acknowledged the writes this store made
        before the call (Redis `WAIT`); raise StoreUnavailable if they do not within `timeout_s`.
        A server without replicas has nothing to wait for: its persistence settings decide."""
        replicas = self._count_replicas()
        if replicas == 0:
            return
        # Below the socket timeout, so that a slow replica reads as a timeout, not a lost server.
        timeout_ms = max(1, int(min(timeout_s, TIMEOUT_S - 0.5) * 1000))
        try:
            pipe = self._client.pipeline(transaction=False)
            # WAIT covers the writes of its own connection only, and the commit may have used
            # another of the pool's: one write here first moves this connection's replication
            # offset past every write acknowledged before it, from any connection.
            pipe.set(self._durable_mark(), "1", px=60_000)
            pipe.wait(replicas, timeout_ms)
            acked = int(pipe.execute()[1])
        except (redis.RedisError, OSError) as e:
            raise self._unavailable(e) from None
        if acked < replicas:
            self._replicas_counted_at = float("-inf")  # a replica may have left: count them again
            raise StoreUnavailable(
                f"{self.name}: {acked} of {replicas} replicas acknowledged the claims within "
                f"{timeout_ms} ms; RetryJobs is not called, and the claims are held until their "
                "lease ends")

    def _count_replicas(self) -> int:
        now = time.monotonic()
        if now - self._replicas_counted_at < REPLICAS_REFRESH_S:
            return self._replicas
        try:
            info = self._client.info("replication")
        except (redis.RedisError, OSError) as e:
            raise self._unavailable(e) from None
        # Replicas still loading their first copy are listed but cannot acknowledge yet, and
        # hold nothing a failover could keep: only those online count.
        self._replicas = sum(1 for name, value in info.items()
                             if name.startswith("slave") and name[5:].isdigit()
                             and isinstance(value, dict) and value.get("state") == "online")
        self._replicas_counted_at = now
        return self._replicas

    def _durable_mark(self) -> str:
        return f"{self.prefix}durable"

    def close(self) -> None:
        self._client.close()


def _record(row: list[Any]) -> Record:
    version, value, exp = row
    return Record(json.loads(value), int(version), float(exp) if exp is not None else None)
