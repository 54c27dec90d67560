"""The scheduler core: one state machine, plain data in, typed effects out, no I/O.

Importing it loads no Celery, Redis or etcd client; `service.py` is the shell around it and
`simulate.py` runs it against a simulated cluster.
"""

from corral.scheduler.core.effects import Dispatch, Effects
from corral.scheduler.core.machine import Core
from corral.scheduler.core.state import Gpu, GpuKey, Policy

__all__ = ["Core", "Dispatch", "Effects", "Gpu", "GpuKey", "Policy"]
