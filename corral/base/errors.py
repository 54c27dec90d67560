"""Telling device faults from task faults, for retry and quarantine decisions.

A CUDA, Xid or ECC error means the GPU is the suspect: such a failure is not retried on
the same GPU and counts as evidence against it at once.
"""

from __future__ import annotations

import traceback
from typing import Any

DEVICE_ERROR_TYPES = frozenset({"SimulatedGpuFault", "CudaError", "XidError"})
DEVICE_ERROR_MARKERS = ("CUDA error", "cudaError", "Xid ", "uncorrectable ECC", "GPU has fallen off")


def is_device_error(error: dict[str, Any] | None) -> bool:
    if not error:
        return False
    if error.get("type") in DEVICE_ERROR_TYPES:
        return True
    message = str(error.get("message", ""))
    return any(marker in message for marker in DEVICE_ERROR_MARKERS)


def error_info(exc: BaseException) -> dict[str, str]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": tb[-4000:]}
