"""Celery entry point of a GPU worker: `celery -A tasks.worker worker -Q corral.gpu.<node>.<i>`."""

from __future__ import annotations

from tasks import registry
from tasks.app import make_app
from tasks.runner import register

app = make_app()
register(app)
registry.load_plugins()
