"""Celery entry point of a GPU worker: `celery -A corral.tasks.worker worker -Q corral.gpu.<node>.<i>`."""

from __future__ import annotations

from corral.tasks import registry
from corral.tasks.app import make_app
from corral.tasks.runner import register

app = make_app()
register(app)
registry.load_plugins()
