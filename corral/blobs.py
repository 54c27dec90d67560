"""Results and large payloads kept in Redis, referenced from task records.

Results are keyed by task *and* attempt, so a late duplicate attempt can never
overwrite the outcome that the scheduler recorded.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from corral.config import Settings


class BlobStore:
    def __init__(self, settings: Settings) -> None:
        self._prefix = f"corral:{settings.cluster}:"
        self._ttl = settings.result_ttl
        self._redis = redis.Redis.from_url(settings.broker)

    def result_key(self, task_id: str, attempt_id: str) -> str:
        return f"{self._prefix}result:{task_id}:{attempt_id}"

    def put_result(self, task_id: str, attempt_id: str, value: Any) -> str:
        key = self.result_key(task_id, attempt_id)
        self._redis.set(key, json.dumps(value), ex=self._ttl)
        return key

    def get(self, ref: str) -> Any:
        raw = self._redis.get(ref)
        if raw is None:
            raise KeyError(f"result {ref} is gone (expired after {self._ttl} s or never stored)")
        return json.loads(raw)

    def close(self) -> None:
        self._redis.close()
