"""What runs on a GPU worker: the Celery app, the attempt runner, the algorithm registry."""

from corral.tasks.registry import algorithm

__all__ = ["algorithm"]
