"""Results and large payloads kept in Redis, referenced from task records: a task's
result (by task and attempt), and args too large to keep in etcd (by task, as
`{"$blob": key}` in the record).

Results are keyed by task *and* attempt, so a late duplicate attempt can never
overwrite the outcome that the scheduler recorded.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from corral.base import broker
from corral.base.config import Settings


class BlobStore:
    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self._prefix = f"corral:{settings.cluster}:"
        self._ttl = settings.result_ttl
        self._redis = client or broker.client(settings.broker, settings.redis_master)

    @property
    def redis(self) -> redis.Redis:
        return self._redis

    def args_key(self, task_id: str) -> str:
        return f"{self._prefix}args:{task_id}"

    def is_args_key(self, ref: object) -> bool:
        return isinstance(ref, str) and ref.startswith(f"{self._prefix}args:")

    def result_key(self, task_id: str, attempt_id: str) -> str:
        return f"{self._prefix}result:{task_id}:{attempt_id}"

    def put_result(self, task_id: str, attempt_id: str, encoded: str,
                   pipe: redis.client.Pipeline | None = None) -> str:
        """Store a JSON-encoded result; returns its reference."""
        key = self.result_key(task_id, attempt_id)
        (pipe or self._redis).set(key, encoded, ex=self._ttl)
        return key

    def get(self, ref: str) -> Any:
        raw = self._redis.get(ref)
        if raw is None:
            raise KeyError(f"result {ref} is gone (expired after {self._ttl} s or never stored)")
        return json.loads(raw)

    def get_many(self, refs: list[str]) -> list[Any]:
        """Many results in one round trip, in order; a KeyError in the place of one gone."""
        out: list[Any] = []
        for i in range(0, len(refs), 1000):
            for ref, raw in zip(refs[i:i + 1000], self._redis.mget(refs[i:i + 1000]), strict=True):
                out.append(KeyError(f"result {ref} is gone (expired after {self._ttl} s or never stored)")
                           if raw is None else json.loads(raw))
        return out

    def close(self) -> None:
        self._redis.close()
