"""Celery entry point of Flower: `celery -A corral.tasks.flower flower`. The workers' app on
kombu's own Redis transport: Flower tells the broker's kind by the transport's name."""

from __future__ import annotations

from corral.tasks.app import make_app

app = make_app()
