"""Celery entry point of a GPU worker: `celery -A corral.tasks.worker worker -Q corral.gpu.<node>.<i>`."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

from celery.signals import worker_process_init, worker_ready

from corral.base import transport
from corral.tasks import claims, registry
from corral.tasks.app import make_app
from corral.tasks.runner import register

app = make_app(worker=True)
register(app)
registry.load_plugins()
transport.on_delivery = partial(claims.at_delivery, app.corral_settings.cluster)  # type: ignore[attr-defined]


@worker_process_init.connect
def _child_started(**_: Any) -> None:
    """The pool's child: the process whose attempts the main process claims (tasks/claims.py)."""
    claims.register_child(os.getpid())


@worker_ready.connect
def _consuming(**_: Any) -> None:
    """Tell the node agent that this worker consumes from its queue (Celery sends
    worker_ready once its consumer has started): `corral up` waits for every GPU's."""
    path = os.environ.get("CORRAL_READY_FILE")
    if path:
        Path(path).write_text(str(os.getpid()))
