"""Results and large payloads kept in Redis, referenced from task records.

Results are keyed by task *and* attempt, so a late duplicate attempt can never
overwrite the outcome that the scheduler recorded.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from corral.base.config import Settings


class BlobStore:
    def __init__(self, settings: Settings, client: redis.Redis | None = None) -> None:
        self._prefix = f"corral:{settings.cluster}:"
        self._ttl = settings.result_ttl
        self._redis = client or redis.Redis.from_url(settings.broker)

    @property
    def redis(self) -> redis.Redis:
        return self._redis

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

    def close(self) -> None:
        self._redis.close()
