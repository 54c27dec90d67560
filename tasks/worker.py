"""Celery entry point of a GPU worker: `celery -A corral.tasks.worker worker -Q corral.gpu.<node>.<i>`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery.signals import worker_ready

from corral.tasks import registry
from corral.tasks.app import make_app
from corral.tasks.runner import register

app = make_app(worker=True)
register(app)
registry.load_plugins()


@worker_ready.connect
def _consuming(**_: Any) -> None:
    """Tell the node agent that this worker consumes from its queue (Celery sends
    worker_ready once its consumer has started): `corral up` waits for every GPU's."""
    path = os.environ.get("CORRAL_READY_FILE")
    if path:
        Path(path).write_text(str(os.getpid()))
