"""The node agent: GPU discovery, node lease, one supervised Celery worker per GPU."""
